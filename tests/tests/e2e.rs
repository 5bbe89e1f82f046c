//! End-to-end scenarios against real processes: anvil, the `pipeline` binary, a webhook receiver,
//! the Python Standard Webhooks verifier; each on SQLite and on PostgreSQL (`*_postgres`, which
//! `.ci/run` requires to have run and passed). Run with `scripts/test.sh`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pipeline_tests::anvil::address_topic;
use pipeline_tests::plugins::{example_plugin, missing_marker_module, trap_plugin};
use pipeline_tests::postgres::server_url_or_skip;
use pipeline_tests::receiver::describe;
use pipeline_tests::verifier::assert_verified;
use pipeline_tests::{Admin, DbKind, Fixture, Received, Receiver, TRANSFER_TOPIC0, lower, wait_until};
use serde_json::{Value, json};

/// How long a webhook may take to arrive.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep listening to be sure that nothing more arrives.
const QUIET: Duration = Duration::from_secs(2);

macro_rules! on_both_stores {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $sqlite() {
            $scenario(DbKind::Sqlite).await
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn $postgres() {
            if let Some(url) = server_url_or_skip(stringify!($postgres)) {
                $scenario(DbKind::Postgres(url)).await
            }
        }
    };
}

on_both_stores!(erc20_filter, erc20_filter_sqlite, erc20_filter_postgres);
on_both_stores!(restart_delivers_exactly_once, restart_delivers_exactly_once_sqlite, restart_delivers_exactly_once_postgres);
on_both_stores!(trapping_plugin_is_isolated, trapping_plugin_is_isolated_sqlite, trapping_plugin_is_isolated_postgres);
on_both_stores!(admin_rejects_bad_input, admin_rejects_bad_input_sqlite, admin_rejects_bad_input_postgres);

/// Scenario 1: an erc20-transfers subscription with min_value 50 gets exactly the 50 and 500
/// transfers, in the DESIGN §5 body, signed so that the reference verifier accepts them.
async fn erc20_filter(db: DbKind) {
    let fx = Fixture::start(db).await;
    let admin = fx.admin();
    let plugin_id = admin.upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers").await;
    let (endpoint_id, secret) = fx.endpoint_for(&fx.receiver).await;
    let sub_id = fx.subscribe_transfers(&endpoint_id, &plugin_id, json!({"min_value": "50"})).await;

    let to = fx.anvil.account(1);
    for value in [5, 50, 500] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.receiver.wait_for(2, WEBHOOK_TIMEOUT).await;
    let got = fx.receiver.expect_exactly(2, QUIET).await;

    let chain_logs = fx.anvil.logs(&fx.token).await;
    let expect = Expect { sub_id: &sub_id, token: &fx.token, from: &fx.anvil.account(0), to: &to };
    let values: Vec<u128> = got.iter().map(|r| check_webhook(r, &expect, &chain_logs)).collect();
    assert_eq!(sorted(values), vec![50, 500], "delivered values:\n{}", describe(&got));
    assert_unique_ids(&got);
    assert_verified(&secret, &got);
    wait_delivered(admin, 2).await;
}

/// Scenario 2: SIGTERM (exit 0), transfers while the host is down, start again on the same store:
/// the missed transfers arrive exactly once and nothing delivered before arrives again.
async fn restart_delivers_exactly_once(db: DbKind) {
    let mut fx = Fixture::start(db).await;
    let plugin_id = fx.admin().upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers").await;
    let (endpoint_id, secret) = fx.endpoint_for(&fx.receiver).await;
    let sub_id = fx.subscribe_transfers(&endpoint_id, &plugin_id, json!({"min_value": "50"})).await;
    let to = fx.anvil.account(2);

    for value in [100, 200] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.receiver.wait_for(2, WEBHOOK_TIMEOUT).await;
    // Recorded as delivered before the shutdown: a redelivery after it would be a duplicate.
    wait_delivered(fx.admin(), 2).await;

    fx.host.stop().await;
    for value in [60, 70] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.host.start_again().await;
    // A live chain keeps producing heads; give the restarted host one, as anvil only mines on demand.
    fx.anvil.mine().await;

    fx.receiver.wait_for(4, WEBHOOK_TIMEOUT).await;
    let got = fx.receiver.expect_exactly(4, QUIET).await;
    let chain_logs = fx.anvil.logs(&fx.token).await;
    let expect = Expect { sub_id: &sub_id, token: &fx.token, from: &fx.anvil.account(0), to: &to };
    let values: Vec<u128> = got.iter().map(|r| check_webhook(r, &expect, &chain_logs)).collect();
    assert_eq!(sorted(values), vec![60, 70, 100, 200], "delivered values:\n{}", describe(&got));
    assert_unique_ids(&got);
    assert_verified(&secret, &got);
    wait_delivered(fx.admin(), 4).await;
}

/// Scenario 3: a plugin that traps on every batch harms only its own subscription.
async fn trapping_plugin_is_isolated(db: DbKind) {
    let mut fx = Fixture::start(db).await;
    let admin = fx.admin().clone();
    let trap_plugin_id = admin.upload_plugin(&trap_plugin(), "trap").await;
    let good_plugin_id = admin.upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers").await;
    let trap_receiver = Receiver::start().await;
    let (trap_endpoint, _) = fx.endpoint_for(&trap_receiver).await;
    let (good_endpoint, secret) = fx.endpoint_for(&fx.receiver).await;
    let trap_sub = fx.subscribe_transfers(&trap_endpoint, &trap_plugin_id, json!({})).await;
    let good_sub = fx.subscribe_transfers(&good_endpoint, &good_plugin_id, json!({"min_value": "0"})).await;

    let to = fx.anvil.account(3);
    for value in [10, 20, 30] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.receiver.wait_for(3, WEBHOOK_TIMEOUT).await;
    let got = fx.receiver.expect_exactly(3, QUIET).await;
    let chain_logs = fx.anvil.logs(&fx.token).await;
    let expect = Expect { sub_id: &good_sub, token: &fx.token, from: &fx.anvil.account(0), to: &to };
    let values: Vec<u128> = got.iter().map(|r| check_webhook(r, &expect, &chain_logs)).collect();
    assert_eq!(sorted(values), vec![10, 20, 30], "the healthy subscription's webhooks:\n{}", describe(&got));
    assert_verified(&secret, &got);

    assert_eq!(
        trap_receiver.count(),
        0,
        "the trapping plugin's endpoint must get nothing:\n{}",
        describe(&trap_receiver.requests())
    );
    assert!(fx.host.is_running(), "the host process died\n{}", fx.host.logs_tail(200));
    assert_eq!(fx.host.healthz().await, Ok(200), "GET /healthz after plugin traps");
    let resp = admin.get(&format!("/v1/subscriptions/{trap_sub}")).await;
    resp.expect_status(&[200]);
    assert_eq!(resp.body["id"], json!(trap_sub), "GET /v1/subscriptions/{{id}} body: {}", resp.text);
    let status = resp.body["status"].as_str().unwrap_or_default();
    assert!(
        ["active", "quarantined"].contains(&status),
        "the trapping subscription should be active or quarantined, got {status:?}: {}",
        resp.text
    );
}

/// Scenario 4: bad input gets a fitting 4xx with the error shape, never a 500.
async fn admin_rejects_bad_input(db: DbKind) {
    let fx = Fixture::start(db).await;
    let admin = fx.admin();

    admin.try_upload_plugin(b"this is not a wasm module", "junk").await.expect_error(400);
    admin.try_upload_plugin(&missing_marker_module(), "no-marker").await.expect_error(400);

    let anonymous = admin.with_token(None);
    anonymous.get("/v1/plugins").await.expect_error(401);
    anonymous.try_upload_plugin(&trap_plugin(), "trap").await.expect_error(401);
    admin.with_token(Some("not-the-token")).get("/v1/plugins").await.expect_error(401);

    admin.get("/v1/subscriptions/sub_doesnotexist").await.expect_error(404);

    let plugins = admin.get("/v1/plugins").await;
    let items = plugins.expect_status(&[200])["items"].as_array().cloned();
    assert_eq!(items.map(|i| i.len()), Some(0), "rejected uploads must not be stored: {}", plugins.text);
    assert_eq!(fx.host.healthz().await, Ok(200), "GET /healthz needs no token");
}

struct Expect<'a> {
    sub_id: &'a str,
    token: &'a str,
    from: &'a str,
    to: &'a str,
}

/// Checks one webhook against DESIGN §5 and the chain's own log; returns the transferred value.
fn check_webhook(r: &Received, expect: &Expect<'_>, chain_logs: &[Value]) -> u128 {
    let body = r.json();
    let ctx = format!("webhook {}", r.body_str());
    assert_eq!(r.method, "POST", "{ctx}");
    let content_type = r.required_header("content-type");
    assert!(content_type.starts_with("application/json"), "content-type {content_type:?}: {ctx}");

    let id = body["id"].as_str().unwrap_or_else(|| panic!("no string id: {ctx}"));
    assert!(id.starts_with("msg_"), "id should start with msg_: {ctx}");
    assert_eq!(r.required_header("webhook-id"), id, "the webhook-id header must equal the body id: {ctx}");
    let ts: i64 = r.required_header("webhook-timestamp").parse().expect("webhook-timestamp is an integer");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((now - ts).abs() < 300, "webhook-timestamp {ts} is not close to now {now}: {ctx}");
    assert!(r.required_header("webhook-signature").starts_with("v1,"), "webhook-signature: {ctx}");

    assert_eq!(body["type"], json!("log"), "{ctx}");
    assert_eq!(body["subscription_id"], json!(expect.sub_id), "{ctx}");
    assert_eq!(body["chain_id"], json!(31337), "{ctx}");
    assert_eq!(body["confirmations"], json!(0), "{ctx}");

    let log = &body["log"];
    let chain_log = chain_logs
        .iter()
        .find(|l| l["transactionHash"] == log["transactionHash"] && l["logIndex"] == log["logIndex"])
        .unwrap_or_else(|| panic!("no log on the chain with this transactionHash and logIndex: {ctx}"));
    for field in ["address", "data", "blockNumber", "blockHash", "transactionHash", "transactionIndex", "logIndex"] {
        let got = log[field].as_str().unwrap_or_else(|| panic!("log.{field} is not a string: {ctx}"));
        let want = chain_log[field].as_str().expect("chain log field");
        assert_eq!(lower(got), lower(want), "log.{field} differs from eth_getLogs ({chain_log}): {ctx}");
    }
    let topics: Vec<String> = log["topics"]
        .as_array()
        .unwrap_or_else(|| panic!("log.topics is not an array: {ctx}"))
        .iter()
        .map(|t| lower(t.as_str().expect("topic is a string")))
        .collect();
    assert_eq!(topics, vec![TRANSFER_TOPIC0.to_string(), address_topic(expect.from), address_topic(expect.to)], "{ctx}");
    assert_eq!(log["removed"], json!(false), "{ctx}");

    let data = &body["data"];
    assert_eq!(data["token"], json!(expect.token), "data.token (lowercase hex): {ctx}");
    assert_eq!(data["from"], json!(expect.from), "data.from (lowercase hex): {ctx}");
    assert_eq!(data["to"], json!(expect.to), "data.to (lowercase hex): {ctx}");
    let value: u128 = data["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("data.value should be a decimal string: {ctx}"));
    let raw = u128::from_str_radix(log["data"].as_str().unwrap_or_default().trim_start_matches("0x"), 16).ok();
    assert_eq!(raw, Some(value), "data.value must match the log's data: {ctx}");
    value
}

fn sorted(mut v: Vec<u128>) -> Vec<u128> {
    v.sort_unstable();
    v
}

fn assert_unique_ids(got: &[Received]) {
    let ids: BTreeSet<&str> = got.iter().map(|r| r.required_header("webhook-id")).collect();
    assert_eq!(ids.len(), got.len(), "a webhook-id arrived more than once:\n{}", describe(got));
}

/// Waits until `GET /v1/deliveries` lists exactly `n` deliveries, all `delivered`.
async fn wait_delivered(admin: &Admin, n: usize) {
    wait_until(&format!("{n} deliveries with status delivered"), Duration::from_secs(15), Duration::from_millis(200), || async {
        let items = admin.list_deliveries().await;
        let delivered = items.iter().filter(|d| d["status"] == json!("delivered")).count();
        if delivered == n && items.len() == n {
            Ok(())
        } else {
            Err(format!("{} item(s), {delivered} delivered: {}", items.len(), Value::Array(items)))
        }
    })
    .await
}
