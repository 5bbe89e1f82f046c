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

/// Examples per operation and phase; with 29 operations this takes about a minute here.
const MAX_EXAMPLES: &str = "100";
/// What must hold for every answer: no 5xx; every status, content type, header and body as
/// documented; invalid input (by the document) refused with a 4xx; undocumented methods refused
/// with 405 and an `Allow` header; no token → 401. Not checked: that every schema-valid request is
/// accepted (an endpoint URL must resolve, a plugin must be WebAssembly, a log must be a log), and
/// the stateful checks (the fixed ids below are not the ones its links would follow).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_schema_conformance,response_headers_conformance,negative_data_rejection,\
    unsupported_method,allow_header_conformance,ignored_auth,missing_required_header";
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
    let doomed = Doomed::seed(&fx).await;

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
        .env("PIPELINE_ST_DOOMED_SUBSCRIPTION", &doomed.subscription)
        .env("PIPELINE_ST_DOOMED_ENDPOINT", &doomed.endpoint)
        .env("PIPELINE_ST_DOOMED_PLUGIN", &doomed.plugin)
        .env("PIPELINE_ST_DOOMED_TOKEN", &doomed.token)
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

/// What the DELETE operations get to delete: a subscription, the endpoint and plugin only it uses,
/// and an API token.
struct Doomed {
    subscription: String,
    endpoint: String,
    plugin: String,
    token: String,
}

impl Doomed {
    async fn seed(fx: &Fixture) -> Doomed {
        let admin = fx.admin();
        let plugin = admin
            .upload_plugin(&example_plugin("passthrough"), "passthrough")
            .await;
        let (endpoint, _) = fx.endpoint_for(&fx.receiver).await;
        let subscription = fx
            .subscribe_transfers(&endpoint, &plugin, json!(null))
            .await;
        let token = admin
            .post_json("/v1/tokens", json!({"name": "doomed", "scope": "read"}))
            .await;
        token.expect_status(&[201]);
        Doomed {
            subscription,
            endpoint,
            plugin,
            token: token.str_field("id"),
        }
    }
}
