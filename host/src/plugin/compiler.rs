//! Where an uploaded plugin is compiled: in a short-lived child process of this same binary
//! (`pipeline plugin compile-child`), not in the host.
//!
//! Why a child: compiling is the one step that runs Cranelift on bytes a user sent. In the host
//! it would (a) fault several MB of compiler code into the host's resident memory and leave the
//! compiler's freed heap in the host's allocator arenas for the rest of the process' life
//! (+16.7 MB RSS for one upload against +3.6 MB; BENCHMARKS.md, "Session of 2026-12-03"); (b) keep
//! running after its time limit, because a blocking thread cannot be cancelled; (c) share the
//! host's memory, so a module built to make the compiler allocate would grow the host, or get it
//! killed. The child has its own heap and CPU limits (`RLIMIT_DATA`, `RLIMIT_CPU`), is the first
//! the kernel's OOM killer picks, is killed when `[plugin] compile_timeout_ms` passes, and returns
//! its memory to the system when it exits. It is a resource boundary, not a security boundary:
//! it runs as the same user; it gets an empty environment (no database URL, token or key).
//!
//! Exit status: 0 with the compiled code on stdout; [`REJECTED_EXIT`] when the module does not
//! compile (`rejected: <why>` on stderr); anything else, or a signal, is the compiler's failure.
//! A child killed by a signal (its heap or CPU limit, the OOM killer) is blamed on the module —
//! compiling it needed more than a plugin may take; a child that cannot be started at all is the
//! host's problem, and the caller compiles in process instead.
//!
//! The child is `/proc/self/exe` (the host's own executable, even if the file was replaced since
//! the host started), so its engine configuration is the host's ([`engine_config`]); wasmtime
//! checks that again when the host deserializes. Only the `pipeline` binary registers itself
//! ([`use_child_process`]); a library user (tests, the in-process benchmark) compiles in process,
//! as does the host when `[plugin] compile_in_child = false`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wasmtime::{Engine, Module};

use super::ValidationError;

/// The hidden subcommand the child runs as.
pub const CHILD_SUBCOMMAND: [&str; 2] = ["plugin", "compile-child"];

/// The child's exit status when the module itself does not compile.
pub const REJECTED_EXIT: u8 = 2;

/// The least heap a compiler child may use (`RLIMIT_DATA`); more for larger module limits
/// ([`heap_limit`]).
pub const MIN_CHILD_HEAP_BYTES: u64 = 1 << 30;

/// Heap per byte of the module size limit: Cranelift's working memory grows with the code.
const HEAP_PER_MODULE_BYTE: u64 = 256;

/// Compiled code is at most this many times the module size limit (it is typically 2–4×).
const ARTIFACT_PER_MODULE_BYTE: u64 = 32;

/// Stderr kept from a child.
const MAX_STDERR_BYTES: u64 = 64 * 1024;

/// Longest error text kept from a failed child.
const MAX_ERROR_CHARS: usize = 2_000;

/// Environment variables the child keeps: an operator's allocator settings (jemalloc's
/// `MALLOC_CONF`, glibc's tunables). Nothing else (secrets, `WASMTIME_*` switches that would
/// change its engine) reaches it.
const KEPT_ENV: [&str; 2] = ["MALLOC_CONF", "GLIBC_TUNABLES"];

static CHILD_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Called by the `pipeline` binary before it builds the host: plugins are then compiled by a child
/// process of this executable (unless the configuration says otherwise).
pub fn use_child_process() {
    let exe = if cfg!(target_os = "linux") && Path::new("/proc/self/exe").exists() {
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
/// usable by an engine configured the same way). Nothing here is read from the environment.
pub fn engine_config(stack_bytes: usize, metered: bool) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(metered);
    config.epoch_interruption(true);
    config.max_wasm_stack(stack_bytes);
    config.wasm_multi_memory(false);
    config.wasm_memory64(false);
    // `Config::new` reads WASMTIME_BACKTRACE_DETAILS; pinned so that parent and child agree.
    config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
    // Replays must decide the same way: no nondeterministic floats.
    config.cranelift_nan_canonicalization(true);
    config.relaxed_simd_deterministic(true);
    config
}

/// The heap limit of a child compiling modules of at most `max_module_bytes`.
pub fn heap_limit(max_module_bytes: usize) -> u64 {
    (max_module_bytes as u64)
        .saturating_mul(HEAP_PER_MODULE_BYTE)
        .max(MIN_CHILD_HEAP_BYTES)
}

/// What the child is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChildArgs {
    pub stack_bytes: usize,
    pub metered: bool,
    /// The most bytes it reads from stdin.
    pub max_module_bytes: usize,
    /// CPU seconds it may use (all its threads together) before the kernel stops it.
    pub cpu_seconds: u64,
}

impl ChildArgs {
    fn to_args(self) -> Vec<String> {
        let mut args: Vec<String> = CHILD_SUBCOMMAND.iter().map(|s| s.to_string()).collect();
        args.push(format!("--stack-bytes={}", self.stack_bytes));
        args.push(format!("--max-module-bytes={}", self.max_module_bytes));
        args.push(format!("--cpu-seconds={}", self.cpu_seconds));
        if !self.metered {
            args.push("--unmetered".into());
        }
        args
    }
}

/// CPU seconds for a compile with `limit` of wall clock on `cores` cores (Cranelift compiles
/// functions in parallel), rounded up, plus one.
pub fn cpu_seconds(limit: Duration, cores: usize) -> u64 {
    limit
        .as_secs()
        .saturating_add(u64::from(limit.subsec_nanos() > 0))
        .saturating_mul(cores.max(1) as u64)
        .saturating_add(1)
}

/// The child's side: the module on stdin, the compiled code on stdout. Returns the exit status.
pub fn run_child(args: ChildArgs) -> u8 {
    limit_self(&args);
    let mut bytes = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(args.max_module_bytes as u64 + 1)
        .read_to_end(&mut bytes);
    if let Err(error) = read {
        eprintln!("error: reading the module from stdin: {error}");
        return 1;
    }
    if bytes.len() > args.max_module_bytes {
        eprintln!(
            "rejected: module larger than {} bytes",
            args.max_module_bytes
        );
        return REJECTED_EXIT;
    }
    let engine = match Engine::new(&engine_config(args.stack_bytes, args.metered)) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: wasm engine: {error:#}");
            return 1;
        }
    };
    let module = match Module::new(&engine, &bytes) {
        Ok(module) => module,
        Err(error) => {
            eprintln!("rejected: {error:#}");
            return REJECTED_EXIT;
        }
    };
    let written = module
        .serialize()
        .map_err(|e| format!("serializing the compiled code: {e:#}"))
        .and_then(|artifact| {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&artifact)
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("writing the compiled code: {e}"))
        });
    match written {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    }
}

/// Best effort: where a limit cannot be set, the parent's time limit still applies.
fn limit_self(args: &ChildArgs) {
    let heap = heap_limit(args.max_module_bytes);
    if let Err(error) = rlimit::setrlimit(rlimit::Resource::DATA, heap, heap) {
        eprintln!("warning: cannot limit the compiler's heap: {error}");
    }
    let cpu = args.cpu_seconds;
    if let Err(error) = rlimit::setrlimit(rlimit::Resource::CPU, cpu, cpu) {
        eprintln!("warning: cannot limit the compiler's CPU time: {error}");
    }
    // The first process the OOM killer picks, before the host.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
}

/// Why a compile in a child did not produce code.
#[derive(Debug)]
pub enum ChildError {
    /// No child could be started (no verdict on the module): compile elsewhere.
    NotStarted(String),
    /// The child ran: its verdict, or its failure.
    Failed(ValidationError),
}

/// Compiles `bytes` in a child process of `exe`, within `limit`; the child is killed if the
/// limit passes (or if this future is dropped).
pub async fn compile_in_child(
    exe: &Path,
    args: ChildArgs,
    bytes: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, ChildError> {
    let mut command = tokio::process::Command::new(exe);
    command
        .args(args.to_args())
        .env_clear()
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C meant for the host does not reach it.
        .process_group(0)
        .kill_on_drop(true);
    for name in KEPT_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command.spawn().map_err(|e| {
        ChildError::NotStarted(format!(
            "cannot start the compiler process {}: {e}",
            exe.display()
        ))
    })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ChildError::NotStarted(
            "the compiler process has no pipes".into(),
        ));
    };
    let artifact_cap = (args.max_module_bytes as u64).saturating_mul(ARTIFACT_PER_MODULE_BYTE);
    let talk = async {
        let write = async move {
            // A child that fails early closes its stdin; its stderr then says why.
            let _ = stdin.write_all(bytes).await;
            drop(stdin);
        };
        let (_, artifact, errors) = tokio::join!(
            write,
            read_capped(stdout, artifact_cap),
            read_capped(stderr, MAX_STDERR_BYTES)
        );
        let status = child.wait().await;
        (artifact, errors, status)
    };
    // On timeout `talk` is dropped, then `child` as this function returns: `kill_on_drop`.
    let Ok((artifact, errors, status)) = tokio::time::timeout(limit, talk).await else {
        return Err(ChildError::Failed(ValidationError::CompileTimeout(
            limit.as_millis() as u64,
        )));
    };
    let unavailable = |why: String| ChildError::Failed(ValidationError::CompilerUnavailable(why));
    let status = status.map_err(|e| unavailable(format!("waiting for the compiler: {e}")))?;
    let artifact = artifact.map_err(|e| unavailable(format!("reading the compiled code: {e}")))?;
    let errors = String::from_utf8_lossy(&errors.unwrap_or_default()).into_owned();
    judge(status, artifact, &errors, artifact_cap, args)
}

/// Reads `from` to its end, keeping at most `cap` bytes.
async fn read_capped(from: impl AsyncRead + Unpin, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut reader = from.take(cap.saturating_add(1));
    reader.read_to_end(&mut kept).await?;
    // Drain the rest so the child is not blocked on a full pipe.
    let mut rest = reader.into_inner();
    tokio::io::copy(&mut rest, &mut tokio::io::sink()).await?;
    Ok(kept)
}

/// What a finished child's status, output and stderr mean.
fn judge(
    status: std::process::ExitStatus,
    artifact: Vec<u8>,
    stderr: &str,
    artifact_cap: u64,
    args: ChildArgs,
) -> Result<Vec<u8>, ChildError> {
    use std::os::unix::process::ExitStatusExt;
    let failed = |e| Err(ChildError::Failed(e));
    match (status.code(), status.signal()) {
        (Some(0), _) if artifact.len() as u64 > artifact_cap => {
            failed(ValidationError::CompileFailed(format!(
                "the compiled code is larger than {artifact_cap} bytes"
            )))
        }
        (Some(0), _) => Ok(artifact),
        (Some(code), _) if code == i32::from(REJECTED_EXIT) => failed(
            ValidationError::CompileFailed(last_line(stderr, "rejected: ")),
        ),
        (Some(code), _) => failed(ValidationError::CompilerUnavailable(format!(
            "the compiler process failed (exit status {code}): {}",
            last_line(stderr, "error: ")
        ))),
        (None, signal) => failed(ValidationError::CompileFailed(format!(
            "the compiler process was stopped by signal {}: compiling this module needs more than \
             a plugin may use ({} MiB of heap, {} s of CPU)",
            signal.unwrap_or_default(),
            heap_limit(args.max_module_bytes) >> 20,
            args.cpu_seconds
        ))),
    }
}

/// The last stderr line starting with `prefix`, without it (or the last line, or a note).
fn last_line(stderr: &str, prefix: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .or_else(|| lines.last().copied())
        .unwrap_or("no message");
    let mut message = line.to_string();
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
mod tests;
