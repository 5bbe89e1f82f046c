//! Uploaded plugins are compiled by a child process of the host (`host/src/plugin/compiler.rs`),
//! not on one of its threads. A compile past `[plugin] compile_timeout_ms` is refused with
//! `compile_timeout`, and the compiler process is killed, not left running; the host stays up.
//! Every other test that uploads a plugin to the `pipeline` binary compiles it in such a child.

use std::time::Duration;

use pipeline_tests::plugins::example_plugin;
use pipeline_tests::{Anvil, DbKind, Host, HostOptions, wait_until};

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

#[tokio::test(flavor = "multi_thread")]
async fn a_compile_past_its_time_limit_is_refused_and_its_compiler_process_killed() {
    let anvil = Anvil::start().await;
    let mut host = Host::start(HostOptions {
        // Far below what starting a process and compiling any module takes.
        config_extra: "[plugin]\ncompile_timeout_ms = 1\n".into(),
        ..HostOptions::new(DbKind::Sqlite, &anvil.ws_url())
    })
    .await;
    let pid = host.pid().expect("the host runs");
    let wasm = example_plugin("erc20-transfers");

    let refused = host.admin().try_upload_plugin(&wasm, "slow").await;
    assert_eq!(refused.expect_error(400), "compile_timeout");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 ms")),
        "the message names the limit: {}",
        refused.body
    );
    wait_until(
        "the timed-out compiler process to be gone",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let left = live_compiler_children(pid);
            async move {
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("compiler processes still running: {left:?}"))
                }
            }
        },
    )
    .await;
    assert!(host.is_running(), "the host stays up");
    assert_eq!(host.healthz().await, Ok(200));
}
