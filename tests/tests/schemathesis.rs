//! schemathesis (PyPI, in `.tools/venv`) against a live host on SQLite: it reads the host's own
//! `/v1/openapi.json` and sends generated requests, valid and invalid, to every operation. The run
//! must find no 5xx and no answer the document does not promise (status, content type, body).
//! Seeded first: an endpoint, a plugin, a subscription and a delivered webhook, so the ids it is
//! given (`tests/support/schemathesis.toml`) exist. Bounded: a fixed seed, a few examples per
//! operation and a time budget. Its summary line is printed.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use pipeline_tests::checks::wait_delivered;
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::verifier::python;
use pipeline_tests::{DbKind, Fixture, workspace_root};
use serde_json::json;

/// Examples per operation and phase; with 29 operations this takes about two minutes here.
const MAX_EXAMPLES: &str = "15";
/// What must hold for every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// Past this the test kills schemathesis (a run takes about two minutes here).
const MAX_SECONDS: u64 = 420;

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_promise() {
    let fx = Fixture::start(DbKind::Sqlite).await;
    let admin = fx.admin();
    let plugin = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let (endpoint, _) = fx.endpoint_for(&fx.receiver).await;
    let subscription = fx
        .subscribe_transfers(&endpoint, &plugin, json!({"min_value": "0"}))
        .await;
    let to = fx.anvil.account(1);
    fx.anvil.transfer(&fx.token, &to, 7).await;
    wait_delivered(admin, 1).await;
    let deliveries = admin.list_deliveries().await;
    let delivery = deliveries[0]["id"]
        .as_str()
        .expect("a delivery id")
        .to_string();

    let schemathesis = python().with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "{} not found: run scripts/test.sh (it installs schemathesis into .tools/venv)",
        schemathesis.display()
    );
    let url = format!("{}/v1/openapi.json", fx.host.admin_url());
    let config = workspace_root().join("tests/support/schemathesis.toml");
    let report = fx.host.dir().join("schemathesis-report");
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .args(["--no-color", "--config-file"])
        .arg(&config)
        .args(["run", &url, "--max-examples", MAX_EXAMPLES, "--seed", "1"])
        .args(["--workers", "2", "--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing", "--report-dir"])
        .arg(&report)
        .env("PIPELINE_ST_TOKEN", fx.host.token())
        .env("PIPELINE_ST_ENDPOINT", &endpoint)
        .env("PIPELINE_ST_SUBSCRIPTION", &subscription)
        .env("PIPELINE_ST_PLUGIN", &plugin)
        .env("PIPELINE_ST_DELIVERY", &delivery)
        // Its cache and reports stay in the host's temporary directory, not in the work tree.
        .current_dir(fx.host.dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(MAX_SECONDS), command.output())
        .await
        .expect("schemathesis ran past its time budget")
        .expect("start schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log = pipeline_tests::target_dir().join("tmp/schemathesis.txt");
    if std::fs::create_dir_all(log.parent().expect("a parent")).is_ok() {
        let _ = std::fs::write(&log, format!("{stdout}\n{stderr}"));
    }
    let summary = stdout
        .lines()
        .rev()
        .find(|line| {
            line.contains(" passed") || line.contains(" failed") || line.contains(" error")
        })
        .unwrap_or("(no summary line)");
    // Straight to stderr, past the test harness' capture, so the test command's log shows it.
    let _ = writeln!(
        std::io::stderr(),
        "schemathesis summary: {}",
        summary.trim_matches(|c| c == '=' || c == ' ')
    );
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}\nhost log tail:\n{}",
        output.status,
        fx.host.logs_tail(80)
    );
}
