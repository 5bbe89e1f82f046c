//! Uploaded plugins are compiled by a child process of the host (`host/src/plugin/compiler.rs`),
//! not on one of its threads: the child is there while a module compiles and gone once the upload
//! is answered. (How the host judges each way a child can end, the time limit killing it, and the
//! cleared environment are unit tests in `host/src/plugin/compiler/tests.rs`.) Every other test
//! that uploads a plugin to the `pipeline` binary compiles it in such a child too.

use std::time::{Duration, Instant};

use pipeline_tests::{Anvil, DbKind, Host, HostOptions};

/// Compiler children (`pipeline plugin compile-child`) of process `parent` that have not exited.
fn live_compiler_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid …: comm may hold spaces, so read after its closing paren.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            fields.get(1) == Some(&parent.to_string().as_str())
                && fields.first() != Some(&"Z")
                && String::from_utf8_lossy(&cmdline).contains("compile-child")
        })
        .collect()
}

/// An ABI v1 module with `functions` functions of `adds` additions each: enough Cranelift work
/// for its compiler child to be seen.
fn slow_to_compile(functions: usize, adds: usize) -> Vec<u8> {
    let body = "(local.set 0 (i32.add (local.get 0) (i32.const 7)))".repeat(adds);
    let mut wat = String::from(
        r#"(module (memory (export "memory") 1) (func (export "pipeline_abi_v1"))
           (func (export "pipeline_input") (param i32) (result i32) (i32.const 0))
           (func (export "pipeline_process") (param i32) (result i64) (i64.const 0))"#,
    );
    for _ in 0..functions {
        wat.push_str(&format!(
            "(func (param i32) (result i32) {body} (local.get 0))"
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("a valid module")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_is_compiled_in_a_child_process_that_ends_with_it() {
    let anvil = Anvil::start().await;
    let mut host = Host::start(HostOptions::new(DbKind::Sqlite, &anvil.ws_url())).await;
    let pid = host.pid().expect("the host runs");
    let wasm = slow_to_compile(100, 1_000);

    let admin = host.admin().clone();
    let upload = admin.try_upload_plugin(&wasm, "slow");
    tokio::pin!(upload);
    let mut seen = Vec::new();
    let stored = loop {
        tokio::select! {
            response = &mut upload => break response,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                seen.extend(live_compiler_children(pid));
            }
        }
    };
    let id = stored.expect_status(&[201])["id"]
        .as_str()
        .map(str::to_string);
    assert_eq!(
        id.map(|id| id.len()),
        Some(64),
        "a sha256 id: {}",
        stored.body
    );
    assert!(
        !seen.is_empty(),
        "no compiler child of the host was seen during the upload"
    );
    let answered = Instant::now();
    while !live_compiler_children(pid).is_empty() {
        assert!(
            answered.elapsed() < Duration::from_secs(2),
            "the compiler child outlived the upload: {:?}",
            live_compiler_children(pid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(host.is_running(), "the host stays up");
    assert_eq!(host.healthz().await, Ok(200));
}
