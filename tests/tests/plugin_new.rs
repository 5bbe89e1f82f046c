//! The plugin author's path as a process would walk it: `pipeline plugin new` → `cargo test` →
//! `cargo build --target wasm32-unknown-unknown` → `pipeline plugin test` on the recorded logs →
//! upload → live webhooks from a host fed by `pipeline dev-node`, timed. Then the same crate with a
//! bug: the panic's message, `file:line` and event index show in `plugin test`, the subscription's
//! `last_error` and its logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pipeline_tests::command::Running;
use pipeline_tests::host::pipeline_binary;
use pipeline_tests::{DbKind, Host, HostOptions, Receiver, free_port, target_dir, wait_until};
use serde_json::{Value, json};

const APPROVAL_TOPIC0: &str = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925";

/// Its own target folder: the outer `cargo test` holds the workspace's build lock.
fn scaffold_target() -> PathBuf {
    target_dir().join("plugin-new-e2e")
}

fn cargo(dir: &Path, args: &[&str]) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_wasm(crate_dir: &Path) {
    let args = [
        "build",
        "--release",
        "--quiet",
        "--target",
        "wasm32-unknown-unknown",
    ];
    cargo(crate_dir, &args);
}

fn plugin_test(wasm: &Path, extra: &[&str]) -> (bool, Value) {
    let out = Command::new(pipeline_binary())
        .args(["plugin", "test", wasm.to_str().unwrap(), "--only-kept"])
        .args(extra)
        .output()
        .expect("run pipeline plugin test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value =
        serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    (out.status.success(), summary["summary"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_plugin_builds_tests_and_delivers_live() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(pipeline_binary())
        .args([
            "plugin",
            "new",
            "my-approvals",
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = dir.path().join("my-approvals");
    let first_build = Instant::now();
    cargo(&crate_dir, &["test", "--quiet"]);
    build_wasm(&crate_dir);
    let build_seconds = first_build.elapsed().as_secs_f64();
    let wasm = scaffold_target().join("wasm32-unknown-unknown/release/my_approvals.wasm");

    // From here on is the author's loop after the first build.
    let loop_started = Instant::now();
    let (ok, summary) = plugin_test(&wasm, &["--config", r#"{"min_value": 0}"#]);
    assert!(ok && summary["error"].is_null(), "{summary}");
    assert_eq!(summary["events"], 21_786);
    assert!(
        summary["kept"].as_u64().unwrap() > 100,
        "recorded approvals kept: {summary}"
    );

    let node_addr = format!("127.0.0.1:{}", free_port());
    let _node = Running::spawn(&[
        "dev-node",
        "--listen",
        &node_addr,
        "--chain-id",
        "31337",
        "--rate",
        "400",
        "--block-ms",
        "250",
    ]);
    let host = Host::start(HostOptions::new(
        DbKind::Sqlite,
        &format!("ws://{node_addr}"),
    ))
    .await;
    let admin = host.admin();
    let plugin = admin
        .upload_plugin(&std::fs::read(&wasm).unwrap(), "my-approvals")
        .await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = admin.create_endpoint(&receiver.url()).await;
    admin
        .create_subscription(
            json!({"endpoint_id": endpoint, "chain_id": 31337, "topics": [[APPROVAL_TOPIC0]],
            "plugin_id": plugin, "plugin_config": {"min_value": 0}}),
        )
        .await;
    let webhooks = receiver.wait_for(3, Duration::from_secs(60)).await;
    for webhook in &webhooks {
        let data = &webhook.json()["data"];
        assert!(
            data["owner"].is_string() && data["spender"].is_string(),
            "{data}"
        );
    }
    println!(
        "plugin new → first build and tests {build_seconds:.1} s; then plugin test → upload → {} live webhooks in {:.1} s",
        webhooks.len(),
        loop_started.elapsed().as_secs_f64()
    );

    // The same plugin with a bug: it decodes every log as an Approval and unwraps.
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let buggy = source.replace(
        "    let Some(approval) = log.decode::<Approval>() else {\n        return Ok(Decision::Drop);\n    };",
        "    let approval = log.decode::<Approval>().unwrap();",
    ).replace("log.topics().len() != 3 || !log.is::<Approval>()", "false");
    assert_ne!(
        buggy, source,
        "the template changed: update this test's edit"
    );
    std::fs::write(&lib, buggy).unwrap();
    let line = source
        .lines()
        .position(|l| l.contains("let Some(approval)"))
        .unwrap();
    let location = format!("src/lib.rs:{}:", line + 1);
    build_wasm(&crate_dir);
    let recorded = crate_dir.join("tests/recorded.jsonl");
    let (ok, summary) = plugin_test(&wasm, &["--events", recorded.to_str().unwrap()]);
    let error = summary["error"].as_str().unwrap_or_default().to_string();
    assert!(!ok, "{summary}");
    assert!(
        error.contains("unwrap")
            && error.contains(&location)
            && error.contains("(event 4 of the batch)"),
        "{error} (expected {location})"
    );

    let buggy_plugin = admin
        .upload_plugin(&std::fs::read(&wasm).unwrap(), "my-approvals-buggy")
        .await;
    let sub = admin
        .create_subscription(
            json!({"endpoint_id": endpoint, "chain_id": 31337, "plugin_id": buggy_plugin}),
        )
        .await;
    let last_error = wait_until(
        "the buggy plugin's last_error",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let body = admin.get(&format!("/v1/subscriptions/{sub}")).await.body;
            match body["last_error"].as_str() {
                Some(e) if e.contains("panic") => Ok(e.to_string()),
                _ => Err(body.to_string()),
            }
        },
    )
    .await;
    assert!(
        last_error.contains(&location) && last_error.contains("of the batch)"),
        "{last_error}"
    );
    let logs = admin
        .get(&format!("/v1/subscriptions/{sub}/logs"))
        .await
        .body;
    assert!(
        logs.to_string().contains(&location),
        "the panic is in the subscription's logs: {logs}"
    );
    println!("a panicking plugin reports: {last_error}");
}
