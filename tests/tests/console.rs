//! The web console in a real browser (issue 11): Playwright (`playwright-core` from npm) drives
//! Debian's `chromium` headless against the real `pipeline` binary following anvil, with real
//! receivers. The Rust side builds the situation through the chain and the admin API — a delivered
//! transfer, a dead delivery whose receiver then recovers, a quarantined subscription with parked
//! events, a read-only token — and `tests/console/console.mjs` does in the browser what an
//! operator would: sign in, find the webhook, retry the dead delivery, release the quarantine by
//! attaching a fixed plugin and reprocess, upload and dry-run a plugin, and checks that a
//! read-only session and a POST without the CSRF token change nothing. The Rust side then checks
//! the effects on the receivers and through the API. Screenshots of every page go to
//! `<target>/console-screenshots/`. `scripts/test.sh` installs chromium and playwright-core.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline_tests::anvil::address_topic;
use pipeline_tests::plugins::{example_plugin, trap_plugin, wasm_path};
use pipeline_tests::postgres::server_url_or_skip;
use pipeline_tests::{
    DbKind, Fixture, Receiver, TRANSFER_TOPIC0, target_dir, tools_dir, wait_until, workspace_root,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
/// The whole browser script; it waits on the page for at most 30 s per step.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// At most this many transfers through the trapping plugin (5 failed batches quarantine a
/// subscription; a batch may hold more than one block).
const MAX_TRAPPED: usize = 15;

#[tokio::test(flavor = "multi_thread")]
async fn console_operator_tasks_sqlite() {
    operator_tasks(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_operator_tasks_postgres() {
    if let Some(url) = server_url_or_skip("console_operator_tasks_postgres") {
        operator_tasks(DbKind::Postgres(url)).await;
    }
}

async fn operator_tasks(db: DbKind) {
    let store = match &db {
        DbKind::Sqlite => "sqlite",
        DbKind::Postgres(_) => "postgres",
    };
    let fx = Fixture::start(db).await;
    let admin = fx.admin();
    let erc20 = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers")
        .await;
    let to = fx.anvil.account(3);

    // A webhook delivered from a real transfer.
    let (good_ep, _) = fx.endpoint_for(&fx.receiver).await;
    let good_sub = fx
        .subscribe_transfers(&good_ep, &erc20, json!({"min_value": "0"}))
        .await;
    fx.anvil.transfer(&fx.token, &to, 11).await;
    let delivered = fx.receiver.wait_for(1, TIMEOUT).await;
    let delivered_id = delivered[0].required_header("webhook-id").to_string();

    // A dead delivery: its receiver answers 503 to the first attempt and every retry.
    let failing = Receiver::start().await;
    failing.set_status(503);
    let (failing_ep, _) = fx.endpoint_for(&failing).await;
    let dead_token = fx.anvil.deploy_token().await;
    admin
        .create_subscription(transfers_to(
            &failing_ep,
            &dead_token,
            &to,
            &erc20,
            json!({"min_value": "0"}),
        ))
        .await;
    fx.anvil.transfer(&dead_token, &to, 12).await;
    let dead_id = wait_for_delivery(&fx, &failing_ep, "dead").await;
    failing.set_status(200);

    // A quarantined subscription with parked events.
    let parked_receiver = Receiver::start().await;
    let (parked_ep, _) = fx.endpoint_for(&parked_receiver).await;
    let trap = admin.upload_plugin(&trap_plugin(), "trap").await;
    let trap_token = fx.anvil.deploy_token().await;
    let trapped_sub = admin
        .create_subscription(transfers_to(
            &parked_ep,
            &trap_token,
            &to,
            &trap,
            json!(null),
        ))
        .await;
    let mut trapped = 0;
    while trapped < MAX_TRAPPED
        && subscription(&fx, &trapped_sub).await["status"] != json!("quarantined")
    {
        fx.anvil
            .transfer(&trap_token, &to, 100 + trapped as u128)
            .await;
        trapped += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for_quarantine(&fx, &trapped_sub, trapped).await;

    let read_token = admin
        .post_json("/v1/tokens", json!({"name": "viewer", "scope": "read"}))
        .await
        .expect_status(&[201])["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let screenshots = target_dir().join("console-screenshots").join(store);
    std::fs::create_dir_all(&screenshots).unwrap();
    let env = [
        ("CONSOLE_URL", fx.host.admin_url()),
        ("ADMIN_TOKEN", fx.host.token().to_string()),
        ("READ_TOKEN", read_token),
        ("DELIVERED_ID", delivered_id),
        ("DEAD_ID", dead_id.clone()),
        ("FAILING_EP", failing_ep.clone()),
        ("GOOD_SUB", good_sub.clone()),
        ("TRAPPED_SUB", trapped_sub.clone()),
        ("TRAPPED_COUNT", trapped.to_string()),
        ("FIXED_PLUGIN", erc20.clone()),
        (
            "UPLOAD_WASM",
            wasm_path("passthrough").display().to_string(),
        ),
        ("SCREENSHOTS", screenshots.display().to_string()),
    ];
    run_browser_script(&env).await;

    // What the browser did, seen from outside.
    let retried = failing.wait_for(5, TIMEOUT).await;
    assert!(
        retried
            .iter()
            .any(|r| r.required_header("webhook-id") == dead_id),
        "the dead delivery was not sent again after the retry"
    );
    assert_eq!(delivery(&fx, &dead_id).await["status"], json!("delivered"));
    parked_receiver.wait_for(trapped, TIMEOUT).await;
    let released = subscription(&fx, &trapped_sub).await;
    assert_eq!(released["status"], json!("active"), "{released}");
    assert_eq!(released["plugin_id"], json!(erc20), "{released}");
    assert_eq!(released["parked_events"], json!(0), "{released}");
    // Neither the read-only session nor the POSTs without a CSRF token changed anything.
    assert_eq!(
        subscription(&fx, &good_sub).await["status"],
        json!("active")
    );
    let failing_endpoint = admin.get(&format!("/v1/endpoints/{failing_ep}")).await;
    assert_eq!(failing_endpoint.body["status"], json!("enabled"));
    let plugins = admin.get("/v1/plugins").await.body["items"].clone();
    let uploaded: Vec<&Value> = plugins
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["name"] == json!("passthrough-from-console"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(uploaded.len(), 1, "the console upload, once: {plugins}");
}

/// A subscription to `token`'s transfers to `to` only (not the mint at its deployment): one
/// delivery per transfer, so the failing endpoint's breaker does not open on a second one.
fn transfers_to(endpoint: &str, token: &str, to: &str, plugin: &str, config: Value) -> Value {
    json!({
        "endpoint_id": endpoint,
        "chain_id": 31337,
        "addresses": [token],
        "topics": [[TRANSFER_TOPIC0], null, [address_topic(to)]],
        "plugin_id": plugin,
        "plugin_config": config,
    })
}

async fn delivery(fx: &Fixture, id: &str) -> Value {
    fx.admin()
        .get(&format!("/v1/deliveries/{id}"))
        .await
        .expect_status(&[200])
        .clone()
}

async fn subscription(fx: &Fixture, id: &str) -> Value {
    fx.admin()
        .get(&format!("/v1/subscriptions/{id}"))
        .await
        .expect_status(&[200])
        .clone()
}

/// The id of the endpoint's first delivery in `status`.
async fn wait_for_delivery(fx: &Fixture, endpoint: &str, status: &str) -> String {
    let path = format!("/v1/deliveries?endpoint_id={endpoint}&status={status}");
    wait_until(
        &format!("a {status} delivery to {endpoint}"),
        TIMEOUT,
        POLL,
        || async {
            let page = fx.admin().get(&path).await;
            match page.body["items"][0]["id"].as_str() {
                Some(id) => Ok(id.to_string()),
                None => Err(page.text.clone()),
            }
        },
    )
    .await
}

async fn wait_for_quarantine(fx: &Fixture, sub: &str, parked: usize) {
    wait_until(
        &format!("{sub} quarantined with parked events"),
        TIMEOUT,
        POLL,
        || async {
            let s = subscription(fx, sub).await;
            if s["status"] == json!("quarantined") && s["parked_events"] == json!(parked) {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
}

fn chromium() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("PIPELINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        path.exists(),
        "chromium not found at {}: run scripts/test.sh (it installs Debian's chromium)",
        path.display()
    );
    path
}

fn npm_prefix() -> PathBuf {
    let prefix = tools_dir().join("npm");
    assert!(
        prefix.join("node_modules/playwright-core").exists(),
        "playwright-core not found under {}: run scripts/test.sh (it installs it)",
        prefix.display()
    );
    prefix
}

/// Runs `tests/console/console.mjs` with node, within [`SCRIPT_TIMEOUT`], and fails the test with
/// its output unless it exits 0. The test's runtime keeps serving the receivers meanwhile.
async fn run_browser_script(env: &[(&str, String)]) {
    let script = workspace_root().join("tests/console/console.mjs");
    let mut command = Command::new("node");
    command
        .arg(&script)
        .env("CHROMIUM", chromium())
        .env("PIPELINE_NPM_PREFIX", npm_prefix())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("node runs the browser script");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the browser script's status") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(POLL).await;
    };
    let output = child
        .wait_with_output()
        .expect("the browser script's output");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!("the browser script failed ({status}):\n{text}"),
        None => panic!("the browser script did not finish within {SCRIPT_TIMEOUT:?}:\n{text}"),
    }
}
