//! Test module: compiled only under #[cfg(test)], from its parent module.
//! The parent's side of the protocol against stand-in children (shell scripts): what each way of
//! ending means, the time limit killing the child, the pipes under a large module, the cleared
//! environment. The real child (`pipeline plugin compile-child`) is exercised by every upload in
//! the end-to-end tests (`tests/tests/compiler.rs`).
#![allow(clippy::unwrap_used, clippy::panic)] // Tests may panic (DESIGN §6).

use std::os::unix::fs::PermissionsExt;

use super::*;

const ARGS: ChildArgs = ChildArgs {
    stack_bytes: 4096,
    metered: true,
    max_module_bytes: 4 << 20,
    cpu_seconds: 5,
};

/// An executable script in a fresh temporary folder (kept until the test ends).
fn script(body: &str) -> (PathBuf, Dir) {
    let dir = Dir::new();
    let path = dir.0.join("child.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, dir)
}

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let path = std::env::temp_dir().join(format!(
            "pipeline-compiler-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(body: &str, input: &[u8]) -> Result<Vec<u8>, ChildError> {
    let (exe, _dir) = script(body);
    compile_in_child(&exe, ARGS, input, Duration::from_secs(10)).await
}

fn verdict(result: Result<Vec<u8>, ChildError>) -> ValidationError {
    match result {
        Err(ChildError::Failed(error)) => error,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

#[test]
fn the_childs_arguments_carry_the_engine_settings_and_limits() {
    let args = ChildArgs {
        metered: false,
        ..ARGS
    };
    assert_eq!(
        args.to_args(),
        [
            "plugin",
            "compile-child",
            "--stack-bytes=4096",
            "--max-module-bytes=4194304",
            "--cpu-seconds=5",
            "--unmetered"
        ]
    );
}

#[test]
fn limits_follow_the_module_limit_and_the_time_limit() {
    assert_eq!(heap_limit(1 << 20), MIN_CHILD_HEAP_BYTES);
    assert_eq!(heap_limit(10 << 20), 2_684_354_560);
    assert_eq!(cpu_seconds(Duration::from_millis(30_000), 2), 61);
    assert_eq!(cpu_seconds(Duration::from_millis(1), 2), 3);
    assert_eq!(cpu_seconds(Duration::ZERO, 0), 1);
}

#[test]
fn the_message_is_the_last_line_with_its_prefix() {
    let stderr = "warning: x\nrejected: bad section\nnote: run with RUST_BACKTRACE=1\n";
    assert_eq!(last_line(stderr, "rejected: "), "bad section");
    assert_eq!(last_line("just this\n", "error: "), "just this");
    assert_eq!(last_line("", "error: "), "no message");
    let long = format!("error: {}", "é".repeat(3_000));
    assert!(last_line(&long, "error: ").len() <= MAX_ERROR_CHARS);
}

#[tokio::test]
async fn the_compiled_code_comes_back_through_the_pipes_whole() {
    // 3 MiB each way: stdin written while stdout is read, or both would block on full pipes.
    let module: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let artifact = run("exec /bin/cat", &module).await.unwrap();
    assert!(artifact == module, "the bytes came back unchanged");
}

#[tokio::test]
async fn a_module_the_child_rejects_is_the_modules_fault() {
    let error = verdict(run("echo 'rejected: bad section at 0x1' >&2; exit 2", b"x").await);
    assert_eq!(
        error,
        ValidationError::CompileFailed("bad section at 0x1".into())
    );
}

#[tokio::test]
async fn a_child_that_fails_otherwise_is_the_compilers_fault() {
    let error = verdict(run("echo 'error: wasm engine: no' >&2; exit 1", b"x").await);
    assert_eq!(error.code(), "compiler_unavailable");
    assert!(error.to_string().contains("wasm engine: no"), "{error}");
}

#[tokio::test]
async fn a_child_stopped_by_a_signal_needed_more_than_a_plugin_may_use() {
    let error = verdict(run("kill -9 $$", b"x").await);
    assert_eq!(error.code(), "compile_failed");
    assert!(error.to_string().contains("signal 9"), "{error}");
}

#[tokio::test]
async fn code_larger_than_its_cap_is_refused() {
    let args = ChildArgs {
        max_module_bytes: 1024,
        ..ARGS
    };
    // 1024 × 32 bytes is the cap; the stand-in writes 64 KiB.
    let (exe, _dir) =
        script("/bin/cat >/dev/null; /bin/dd if=/dev/zero bs=1024 count=64 2>/dev/null");
    let error = verdict(compile_in_child(&exe, args, b"x", Duration::from_secs(10)).await);
    assert!(error.to_string().contains("larger than 32768"), "{error}");
}

#[tokio::test]
async fn a_child_past_the_time_limit_is_killed() {
    let (exe, dir) = script("echo $$ > \"$(dirname \"$0\")/pid\"; exec /bin/sleep 30");
    let started = std::time::Instant::now();
    let error = verdict(compile_in_child(&exe, ARGS, b"x", Duration::from_millis(300)).await);
    assert_eq!(error, ValidationError::CompileTimeout(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = std::fs::read_to_string(dir.0.join("pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Gone, or a zombie waiting to be reaped: either way no longer running.
    while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(std::time::Instant::now() < deadline, "the child still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_child_gets_none_of_the_hosts_environment() {
    // (`sh` gives itself a default PATH, so that one cannot tell.)
    assert!(std::env::var_os("HOME").is_some() || std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let result = run(
        "if [ -n \"$HOME$CARGO_MANIFEST_DIR$DATABASE_URL\" ]; then echo 'error: environment leaked' >&2; exit 1; fi; exec /bin/cat",
        b"module",
    )
    .await;
    assert_eq!(result.unwrap(), b"module");
}

#[tokio::test]
async fn an_executable_that_cannot_start_gives_no_verdict() {
    let missing = Path::new("/nonexistent/pipeline");
    match compile_in_child(missing, ARGS, b"x", Duration::from_secs(1)).await {
        Err(ChildError::NotStarted(why)) => assert!(why.contains("/nonexistent/pipeline"), "{why}"),
        other => panic!("expected NotStarted, got {other:?}"),
    }
}
