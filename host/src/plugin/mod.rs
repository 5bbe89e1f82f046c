//! The WebAssembly sandbox: one `Engine` for the process, validated and compiled modules cached by
//! sha256, `InstancePre` resolved once per module, fuel + memory + stack + wall-clock limits on
//! every call. The only module that touches wasmtime.

pub mod abi;
mod compile_async;
pub mod compiler;
pub mod dry_run;
mod host_state;
mod instance;
pub mod payload;
pub mod priority;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, InstancePre, Linker, Module};

pub use abi::{Decision, DecisionRef, Decisions, Output};
pub use instance::{CallReport, PluginInstance};
pub use payload::Payload;
pub use validate::ValidationError;

use crate::config::PluginLimits;
use host_state::HostState;

/// The epoch ticks every this often; the wall-clock limit is counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One line a plugin logged through `pipeline.log`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PluginLog {
    /// 0 error, 1 warn, 2 info, 3 debug, 4 trace.
    pub level: u8,
    pub message: String,
}

impl PluginLog {
    pub fn level_name(&self) -> &'static str {
        ["error", "warn", "info", "debug", "trace"]
            .get(self.level as usize)
            .copied()
            .unwrap_or("info")
    }
}

/// Why a plugin call failed. Each fails only the calling subscription's batch.
#[derive(Debug, thiserror::Error, Clone)]
pub enum PluginError {
    #[error("out of fuel")]
    OutOfFuel,
    #[error("memory limit of {0} bytes reached")]
    MemoryLimit(usize),
    #[error("wall-clock limit reached")]
    Timeout,
    #[error("wasm stack overflow")]
    StackOverflow,
    #[error("trap: {0}")]
    Trap(String),
    #[error("panic: {0}")]
    Panic(String),
    #[error("malformed output: {0}")]
    BadOutput(String),
    #[error("pipeline_process returned error code {0}")]
    ErrorCode(i64),
    #[error("config rejected: {0}")]
    ConfigRejected(String),
    #[error("instantiation failed: {0}")]
    Instantiate(String),
}

impl PluginError {
    /// A low-cardinality label for metrics.
    pub fn cause(&self) -> &'static str {
        match self {
            PluginError::OutOfFuel => "out_of_fuel",
            PluginError::MemoryLimit(_) => "memory_limit",
            PluginError::Timeout => "timeout",
            PluginError::StackOverflow => "stack_overflow",
            PluginError::Trap(_) => "trap",
            PluginError::Panic(_) => "panic",
            PluginError::BadOutput(_) => "bad_output",
            PluginError::ErrorCode(_) => "error_code",
            PluginError::ConfigRejected(_) => "config_rejected",
            PluginError::Instantiate(_) => "instantiate",
        }
    }
}

/// A validated, compiled plugin, ready to instantiate.
pub struct CompiledPlugin {
    /// Hex sha256 of the module bytes.
    pub id: String,
    instance_pre: InstancePre<HostState>,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("id", &self.id)
            .finish()
    }
}

impl CompiledPlugin {
    /// The compiled code, for storing and loading on a later start.
    pub fn serialize(&self) -> Option<Vec<u8>> {
        self.instance_pre.module().serialize().ok()
    }
}

/// The process-wide plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    limits: PluginLimits,
    metered: bool,
    /// The executable that compiles uploaded modules, when not this process (`compiler.rs`).
    compiler_child: Option<std::path::PathBuf>,
    /// Compiler children that may run at once.
    compile_slots: Arc<tokio::sync::Semaphore>,
    cache: Arc<Mutex<HashMap<String, Arc<CompiledPlugin>>>>,
}

/// The plugin id: hex sha256 of the bytes, so the same bytes always get the same id.
pub fn plugin_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PluginRuntime {
    pub fn new(limits: PluginLimits) -> anyhow::Result<PluginRuntime> {
        Self::build(limits, true)
    }

    /// A runtime without fuel metering (the wall clock still applies). Only for measuring what
    /// metering costs (`cargo bench`); never used to run subscriptions.
    pub fn new_unmetered_for_benchmarks(limits: PluginLimits) -> anyhow::Result<PluginRuntime> {
        Self::build(limits, false)
    }

    fn build(limits: PluginLimits, metered: bool) -> anyhow::Result<PluginRuntime> {
        let config = compiler::engine_config(limits.stack_bytes, metered);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("wasm engine: {e:#}"))?;
        spawn_epoch_ticker(&engine)?;
        let mut linker = Linker::new(&engine);
        host_state::define_imports(&mut linker)
            .map_err(|e| anyhow::anyhow!("wasm linker: {e:#}"))?;
        let compiler_child = limits.compile_in_child.then(compiler::child_exe).flatten();
        Ok(PluginRuntime {
            engine,
            linker: Arc::new(linker),
            limits,
            metered,
            compiler_child,
            compile_slots: Arc::new(tokio::sync::Semaphore::new(
                compile_async::MAX_COMPILER_CHILDREN,
            )),
            cache: Arc::default(),
        })
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Validates and compiles `bytes` (CPU-heavy: call from a blocking thread), caching by id.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledPlugin>, ValidationError> {
        let id = plugin_id(bytes);
        if let Some(hit) = self.cached(&id) {
            return Ok(hit);
        }
        self.check_before_compiling(bytes)?;
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| ValidationError::CompileFailed(format!("{e:#}")))?;
        self.adopt(&id, &module)
    }

    /// A compiled module whose interface is checked, resolved against the imports, instantiated
    /// once on trial and cached.
    fn adopt(&self, id: &str, module: &Module) -> Result<Arc<CompiledPlugin>, ValidationError> {
        let compiled = self.resolve(id, module)?;
        self.try_instantiate(&compiled)?;
        Ok(self.remember(compiled))
    }

    /// A module whose interface is checked, resolved against the imports.
    fn resolve(&self, id: &str, module: &Module) -> Result<Arc<CompiledPlugin>, ValidationError> {
        validate::check_interface(module)?;
        let instance_pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| ValidationError::CompileFailed(format!("{e:#}")))?;
        Ok(Arc::new(CompiledPlugin {
            id: id.to_string(),
            instance_pre,
        }))
    }

    /// Caches `compiled` under its id.
    fn remember(&self, compiled: Arc<CompiledPlugin>) -> Arc<CompiledPlugin> {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(compiled.id.clone(), compiled.clone());
        }
        compiled
    }

    /// Compiled code back into a module. wasmtime checks the engine and format compatibility,
    /// not the code itself.
    ///
    /// # Safety
    /// `artifact` must be code wasmtime serialized (`Module::serialize`) in a build of this
    /// host: its compiler child's output, or `CompiledPlugin::serialize` stored in the host's
    /// own database (`plugin_artifacts`, which only hosts write). Never bytes from a user.
    unsafe fn deserialize(&self, artifact: &[u8]) -> wasmtime::Result<Module> {
        // SAFETY: the caller's obligation above.
        unsafe { Module::deserialize(&self.engine, artifact) }
    }

    /// Identifies this engine's configuration: precompiled code is only reused by an identical one.
    pub fn engine_fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!(
            "wasmtime-{}-{:016x}",
            env!("CARGO_PKG_VERSION"),
            hasher.finish()
        )
    }

    /// Loads code this host precompiled earlier (read back from its own store), checking the
    /// interface again; `None` (and a log line) if it cannot be used, so the caller recompiles.
    pub fn load_precompiled(&self, id: &str, artifact: &[u8]) -> Option<Arc<CompiledPlugin>> {
        // SAFETY: `artifact` comes from `plugin_artifacts`, which only hosts write, with the
        // output of `CompiledPlugin::serialize`; uploads are stored as wasm, never there.
        let module = match unsafe { self.deserialize(artifact) } {
            Ok(module) => module,
            Err(error) => {
                tracing::warn!(plugin = id, error = %format!("{error:#}"), "stored precompiled plugin unusable; recompiling");
                return None;
            }
        };
        let compiled = self.resolve(id, &module).ok()?;
        Some(self.remember(compiled))
    }

    pub fn cached(&self, id: &str) -> Option<Arc<CompiledPlugin>> {
        self.cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(id).cloned())
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(id);
        }
    }

    /// A fresh instance with `config_json` passed to `pipeline_init`.
    pub fn instantiate(
        &self,
        plugin: Arc<CompiledPlugin>,
        config_json: &str,
    ) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(
            plugin,
            &self.limits,
            self.epoch_ticks(),
            self.metered,
            Some(config_json),
        )
    }

    /// Instantiates once under the call limits, without a config: a module whose data, tables
    /// or `start` function cannot be set up within them could never run, so it is refused now.
    fn try_instantiate(&self, plugin: &Arc<CompiledPlugin>) -> Result<(), ValidationError> {
        let trial = PluginInstance::new(
            plugin.clone(),
            &self.limits,
            self.epoch_ticks(),
            self.metered,
            None,
        );
        match trial {
            Ok(_) => Ok(()),
            Err(error @ (PluginError::OutOfFuel | PluginError::Timeout)) => {
                Err(ValidationError::StartDidNotFinish(format!(
                    "{error} (fuel {}, wall clock {} ms)",
                    self.limits.fuel_base, self.limits.call_timeout_ms
                )))
            }
            Err(error) => Err(ValidationError::InstantiationFailed(error.to_string())),
        }
    }

    fn epoch_ticks(&self) -> u64 {
        (self.limits.call_timeout_ms / EPOCH_TICK.as_millis() as u64).max(1)
    }
}

/// Advances the engine's epoch so a call that outlives its deadline is interrupted. The thread
/// ends when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests;
