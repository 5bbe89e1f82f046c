//! Where an uploaded plugin is compiled: in a short-lived child process of this same binary
//! (`pipeline plugin compile-child`), not in the host.
//!
//! Why a child: compiling is the one step that runs Cranelift on bytes a user sent. In the host
//! it would (a) fault ~5.5 MB of compiler code into the host's resident memory and leave the
//! compiler's freed heap in the host's allocator arenas, for the rest of the process' life
//! (BENCHMARKS.md, "Memory — session of 2026-12-03"); (b) keep running after its time limit ran
//! out, because a blocking thread cannot be cancelled; (c) share the host's memory, so a module
//! built to make the compiler allocate would grow the host. The child gets its own heap limit
//! (`RLIMIT_DATA`), is killed when the limit of `[plugin] compile_timeout_ms` passes, and its
//! memory is returned to the system when it exits. The host only deserializes the compiled code
//! (`Module::deserialize`), checks its interface and instantiates it, as for the code it stores.
//!
//! The child is `/proc/self/exe` (the host's own executable, even if the file was replaced since
//! the host started), so its engine configuration is the host's; wasmtime checks that anyway when
//! the host deserializes. Only the `pipeline` binary registers itself ([`use_child_process`]);
//! a library user (tests, the in-process benchmark) compiles in process, as does the host when
//! `[plugin] compile_in_child = false`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::{Engine, Module};

use super::ValidationError;

/// The hidden subcommand the child runs as.
pub const CHILD_SUBCOMMAND: [&str; 2] = ["plugin", "compile-child"];

/// Heap the compiler child may use (`RLIMIT_DATA`): Cranelift needs a few hundred bytes per wasm
/// byte at worst, and a module is at most `[plugin] max_module_bytes` (10 MiB by default).
pub const CHILD_HEAP_BYTES: u64 = 2 << 30;

/// Longest error text kept from a failed child (its stderr).
const MAX_ERROR_CHARS: usize = 2_000;

static CHILD_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Called by the `pipeline` binary before it builds the host: plugins are then compiled by a child
/// process of this executable (unless the configuration says otherwise).
pub fn use_child_process() {
    let exe = if cfg!(target_os = "linux") && std::path::Path::new("/proc/self/exe").exists() {
        Some(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe().ok()
    };
    if let Some(exe) = exe {
        let _ = CHILD_EXE.set(exe);
    }
}

/// The executable to compile in, if [`use_child_process`] was called.
pub fn child_exe() -> Option<PathBuf> {
    CHILD_EXE.get().cloned()
}

/// The engine settings, shared by the host and its compiler child (the compiled code is only
/// usable by an engine configured the same way).
pub fn engine_config(stack_bytes: usize, metered: bool) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(metered);
    config.epoch_interruption(true);
    config.max_wasm_stack(stack_bytes);
    config.wasm_multi_memory(false);
    config.wasm_memory64(false);
    // Replays must decide the same way: no nondeterministic floats.
    config.cranelift_nan_canonicalization(true);
    config.relaxed_simd_deterministic(true);
    config
}

/// What the child is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct ChildArgs {
    pub stack_bytes: usize,
    pub metered: bool,
    /// The most bytes it reads from stdin.
    pub max_module_bytes: usize,
}

impl ChildArgs {
    fn to_args(self) -> Vec<String> {
        let mut args: Vec<String> = CHILD_SUBCOMMAND.iter().map(|s| s.to_string()).collect();
        args.push(format!("--stack-bytes={}", self.stack_bytes));
        args.push(format!("--max-module-bytes={}", self.max_module_bytes));
        if !self.metered {
            args.push("--unmetered".into());
        }
        args
    }
}

/// The child's side: the module on stdin, the compiled code on stdout; an error exits non-zero
/// with its reason on stderr.
pub fn run_child(args: ChildArgs) -> anyhow::Result<()> {
    // Best effort: where the limit cannot be set the time limit still applies.
    if let Err(error) =
        rlimit::setrlimit(rlimit::Resource::DATA, CHILD_HEAP_BYTES, CHILD_HEAP_BYTES)
    {
        eprintln!("warning: cannot limit the compiler's heap: {error}");
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(args.max_module_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .context("reading the module from stdin")?;
    if bytes.len() > args.max_module_bytes {
        anyhow::bail!("module larger than {} bytes", args.max_module_bytes);
    }
    let engine = Engine::new(&engine_config(args.stack_bytes, args.metered))
        .map_err(|e| anyhow::anyhow!("wasm engine: {e:#}"))?;
    let module = Module::new(&engine, &bytes).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let artifact = module
        .serialize()
        .map_err(|e| anyhow::anyhow!("serializing the compiled code: {e:#}"))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&artifact)
        .and_then(|()| stdout.flush())
        .context("writing the compiled code")
}

/// Compiles `bytes` in a child process of `exe`, within `limit`; the child is killed if the
/// limit passes (or if this future is dropped).
pub async fn compile_in_child(
    exe: &std::path::Path,
    args: ChildArgs,
    bytes: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, ValidationError> {
    let mut child = tokio::process::Command::new(exe)
        .args(args.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ValidationError::CompilerUnavailable(format!(
                "cannot start the compiler process {}: {e}",
                exe.display()
            ))
        })?;
    let talk = async {
        let (mut stdin, mut stdout, mut stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    return Err(ValidationError::CompilerUnavailable(
                        "the compiler process has no pipes".into(),
                    ));
                }
            };
        let write = async move {
            // A child that fails early closes its stdin; its stderr then says why.
            let _ = stdin.write_all(bytes).await;
            drop(stdin);
        };
        let mut artifact = Vec::new();
        let mut errors = Vec::new();
        let (_, out, _) = tokio::join!(
            write,
            stdout.read_to_end(&mut artifact),
            stderr.read_to_end(&mut errors)
        );
        out.map_err(|e| failed(&format!("reading the compiled code: {e}")))?;
        let status = child
            .wait()
            .await
            .map_err(|e| failed(&format!("waiting for the compiler process: {e}")))?;
        if status.success() {
            Ok(artifact)
        } else {
            Err(failed(&child_error(&errors, status)))
        }
    };
    match tokio::time::timeout(limit, talk).await {
        Ok(result) => result,
        // Dropping `talk` dropped the child: `kill_on_drop` ends it.
        Err(_) => Err(ValidationError::CompileTimeout(limit.as_millis() as u64)),
    }
}

fn failed(reason: &str) -> ValidationError {
    ValidationError::CompileFailed(reason.to_string())
}

/// The child's own message (`error: …` on stderr), or how it ended.
fn child_error(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let message = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().trim_start_matches("error: ").to_string());
    let mut message = match message {
        Some(message) => message,
        None => format!("the compiler process ended with {status}"),
    };
    if message.len() > MAX_ERROR_CHARS {
        let mut cut = MAX_ERROR_CHARS;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_childs_arguments_carry_the_engine_settings() {
        let args = ChildArgs {
            stack_bytes: 4096,
            metered: false,
            max_module_bytes: 10,
        }
        .to_args();
        assert_eq!(
            args,
            [
                "plugin",
                "compile-child",
                "--stack-bytes=4096",
                "--max-module-bytes=10",
                "--unmetered"
            ]
        );
    }

    #[test]
    fn a_childs_error_is_its_last_stderr_line_without_the_prefix() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(256);
        assert_eq!(
            child_error(b"warning: x\nerror: bad section\n\n", status),
            "bad section"
        );
        assert!(child_error(b"", status).contains("exit status: 1"));
        let long = format!("error: {}", "é".repeat(3_000));
        assert!(child_error(long.as_bytes(), status).len() <= MAX_ERROR_CHARS);
    }
}
