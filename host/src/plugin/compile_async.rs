//! `PluginRuntime::compile_async`: an upload (or a start-up recompile) compiled within the
//! compile time limit — by the compiler child (`compiler.rs`) when the binary registered one, else
//! on a blocking thread — then loaded, checked and cached as an in-process compile is.

use std::sync::Arc;
use std::time::Duration;

use super::{CompiledPlugin, PluginRuntime, ValidationError, compiler, plugin_id, validate};

/// Compiler children at once: each may use both cores and `compiler::heap_limit` of memory.
pub(super) const MAX_COMPILER_CHILDREN: usize = 2;

impl PluginRuntime {
    /// Validates and compiles `bytes` within the compile time limit, caching by id: in the
    /// compiler child process when there is one (`compiler.rs`), else on a blocking thread.
    pub async fn compile_async(
        &self,
        bytes: Vec<u8>,
    ) -> Result<Arc<CompiledPlugin>, ValidationError> {
        let limit = Duration::from_millis(self.limits.compile_timeout_ms);
        let Some(exe) = self.compiler_child.clone() else {
            return self.compile_on_blocking_thread(bytes, limit).await;
        };
        let id = plugin_id(&bytes);
        if let Some(hit) = self.cached(&id) {
            return Ok(hit);
        }
        let deadline = tokio::time::Instant::now() + limit;
        let timed_out = || ValidationError::CompileTimeout(self.limits.compile_timeout_ms);
        let runtime = self.clone();
        let bytes =
            blocking(move || runtime.check_before_compiling(&bytes).map(|()| bytes)).await?;
        // At most `MAX_COMPILER_CHILDREN` at once, each with its own heap and CPU limits.
        let slot = tokio::time::timeout_at(deadline, self.compile_slots.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| ValidationError::CompilerUnavailable("compile slots closed".into()))?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(timed_out());
        }
        let args = compiler::ChildArgs {
            stack_bytes: self.limits.stack_bytes,
            metered: self.metered,
            max_module_bytes: self.limits.max_module_bytes,
            cpu_seconds: compiler::cpu_seconds(limit, cores()),
        };
        let compiled = compiler::compile_in_child(&exe, args, &bytes, remaining).await;
        drop(slot);
        let artifact = match compiled {
            Ok(artifact) => artifact,
            Err(compiler::ChildError::Failed(ValidationError::CompileTimeout(_))) => {
                return Err(timed_out());
            }
            Err(compiler::ChildError::Failed(error)) => return Err(error),
            // Nothing ran: no verdict on the module. The host compiles it itself rather than
            // refuse a plugin (or park a subscription's events at start-up) for its own fault.
            Err(compiler::ChildError::NotStarted(why)) => {
                tracing::warn!(plugin = %id, %why, "compiler process unavailable; compiling in the host");
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                return self.compile_on_blocking_thread(bytes, remaining).await;
            }
        };
        let runtime = self.clone();
        blocking(move || runtime.adopt_compiled(&id, &artifact)).await
    }

    async fn compile_on_blocking_thread(
        &self,
        bytes: Vec<u8>,
        limit: Duration,
    ) -> Result<Arc<CompiledPlugin>, ValidationError> {
        let runtime = self.clone();
        let task = blocking(move || runtime.compile(&bytes));
        match tokio::time::timeout(limit, task).await {
            Ok(result) => result,
            Err(_) => Err(ValidationError::CompileTimeout(
                self.limits.compile_timeout_ms,
            )),
        }
    }

    /// The checks that need no compiler: size, well-formedness, declared resources.
    pub(super) fn check_before_compiling(&self, bytes: &[u8]) -> Result<(), ValidationError> {
        validate::check_bytes(&self.engine, bytes, self.limits.max_module_bytes)?;
        validate::check_resources(bytes, self.limits.memory_bytes)
    }

    /// Takes code compiled by the child, checked here as an in-process compile is.
    fn adopt_compiled(
        &self,
        id: &str,
        artifact: &[u8],
    ) -> Result<Arc<CompiledPlugin>, ValidationError> {
        // SAFETY: `artifact` is what this host's own executable, run as its compiler child
        // through `/proc/self/exe`, wrote to the pipe for this compile; never bytes from a user.
        let module = unsafe { self.deserialize(artifact) }.map_err(|e| {
            ValidationError::CompilerUnavailable(format!(
                "the compiler's output cannot be loaded: {e:#}"
            ))
        })?;
        self.adopt(id, &module)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `work` on a blocking thread; a lost thread is a compile failure.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ValidationError> + Send + 'static,
) -> Result<T, ValidationError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(ValidationError::CompileFailed(format!(
                "compiler task failed: {join}"
            )))
        })
}
