//! Plugin canary (issue 12) against real processes: a subscription with `erc20-transfers` at
//! `min_value` 100 and a canary at 50. The canary's differing events are exactly the transfers
//! between the two, no webhook of its output reaches the receiver, its state survives a restart,
//! and after promote every later transfer is decided by the new config, none missed or doubled.
//! Beside it, a canary that traps on every batch is reported and its live subscription is untouched.
//! On SQLite and on PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline_tests::plugins::{example_plugin, trap_plugin};
use pipeline_tests::postgres::server_url_or_skip;
use pipeline_tests::receiver::{Receiver, describe};
use pipeline_tests::verifier::assert_verified;
use pipeline_tests::{DbKind, Fixture, wait_until};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The same values are sent before and after the promote: 10 is below both thresholds, 60 and 99
/// are kept only by the canary (min 50), 100 and 150 by both.
const VALUES: [u128; 5] = [10, 60, 99, 100, 150];

#[tokio::test(flavor = "multi_thread")]
async fn canary_sqlite() {
    canary(DbKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_postgres() {
    if let Some(url) = server_url_or_skip("canary_postgres") {
        canary(DbKind::Postgres(url)).await
    }
}

/// Sends `VALUES` to `to`; the transaction hash of each, by value.
async fn send_transfers(fx: &Fixture, to: &str) -> BTreeMap<u128, String> {
    let mut sent = BTreeMap::new();
    for value in VALUES {
        let receipt = fx.anvil.transfer(&fx.token, to, value).await;
        let hash = receipt["transactionHash"].as_str().unwrap().to_lowercase();
        sent.insert(value, hash);
    }
    sent
}

/// The canary as `GET` shows it once it has compared `n` events.
async fn canary_after(fx: &Fixture, uri: &str, n: u64) -> Value {
    let admin = fx.admin().clone();
    wait_until(
        &format!("the canary compared {n} events"),
        TIMEOUT,
        Duration::from_millis(100),
        || async {
            let shown = admin.get(uri).await;
            let body = shown.expect_status(&[200]).clone();
            if body["events"]["compared"] == n {
                Ok(body)
            } else {
                Err(body.to_string())
            }
        },
    )
    .await
}

/// `(transaction hash, value)` of every webhook the receiver got, sorted.
fn received(fx: &Fixture) -> Vec<(String, u128)> {
    let mut got: Vec<(String, u128)> = fx
        .receiver
        .requests()
        .iter()
        .map(|r| {
            let body = r.json();
            let hash = body["log"]["transactionHash"]
                .as_str()
                .unwrap()
                .to_lowercase();
            let value = body["data"]["value"].as_str().unwrap().parse().unwrap();
            (hash, value)
        })
        .collect();
    got.sort();
    got
}

fn kept(sent: &BTreeMap<u128, String>, min_value: u128) -> Vec<(String, u128)> {
    sent.iter()
        .filter(|(value, _)| **value >= min_value)
        .map(|(value, hash)| (hash.clone(), *value))
        .collect()
}

async fn canary(db: DbKind) {
    let mut fx = Fixture::start(db).await;
    let plugin = fx
        .admin()
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let (endpoint, secret) = fx.endpoint_for(&fx.receiver).await;
    let sub = fx
        .subscribe_transfers(&endpoint, &plugin, json!({"min_value": "100"}))
        .await;
    let uri = format!("/v1/subscriptions/{sub}/canary");
    let start = json!({"plugin_id": plugin, "plugin_config": {"min_value": "50"}});
    let started = fx.admin().post_json(&uri, start.clone()).await;
    started.expect_status(&[201]);
    let again = fx.admin().post_json(&uri, start).await;
    assert_eq!(again.expect_error(409), "canary_exists");

    // A second subscription (every transfer, its own receiver) with a candidate that always traps.
    let receiver_b = Receiver::start().await;
    let (endpoint_b, _) = fx.endpoint_for(&receiver_b).await;
    let sub_b = fx
        .subscribe_transfers(&endpoint_b, &plugin, json!({"min_value": "0"}))
        .await;
    let trap = fx.admin().upload_plugin(&trap_plugin(), "trap").await;
    let uri_b = format!("/v1/subscriptions/{sub_b}/canary");
    let started = fx
        .admin()
        .post_json(&uri_b, json!({"plugin_id": trap}))
        .await;
    started.expect_status(&[201]);

    let to = fx.anvil.account(5);
    let before = send_transfers(&fx, &to).await;
    trapping_canary_leaves_its_subscription_alone(&fx, &receiver_b, &sub_b, &uri_b).await;
    let shown = canary_after(&fx, &uri, 5).await;
    assert_eq!(
        shown["events"],
        json!({"compared": 5, "same": 3, "only_live_kept": 0, "only_canary_kept": 2, "data_differs": 0}),
        "{shown}"
    );
    assert_eq!(shown["failures"]["traps"], 0);
    assert_eq!(shown["batches_skipped"], 0);
    let differing: Vec<(String, Value, Value)> = shown["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["transaction_hash"].as_str().unwrap().to_string(),
                e["live"].clone(),
                e["canary"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, Value, Value)> = [60u128, 99]
        .iter()
        .map(|value| {
            let data = json!({"from": fx.anvil.account(0), "to": to, "token": fx.token, "value": value.to_string()});
            (before[value].clone(), json!({"kept": false, "data": null}), json!({"kept": true, "data": data}))
        })
        .collect();
    assert_eq!(differing, expected, "{shown}");

    // Only the live plugin's webhooks: 100 and 150, nothing of the canary's 60 and 99.
    fx.receiver.wait_for(2, TIMEOUT).await;
    let got = fx.receiver.expect_exactly(2, Duration::from_secs(2)).await;
    assert_eq!(received(&fx), kept(&before, 100), "{}", describe(&got));
    let metrics = fx.host.metrics().await;
    assert!(
        metrics.contains("pipeline_canary_events_total{outcome=\"only_canary_kept\"} 2"),
        "{metrics}"
    );

    // The canary's state is in the store: a restarted host shows the same.
    fx.host.restart().await;
    let after_restart = fx.admin().get(&uri).await;
    assert_eq!(after_restart.expect_status(&[200]), &shown);

    let promoted = fx
        .admin()
        .post_json(&format!("{uri}/promote"), json!(null))
        .await;
    let promoted = promoted.expect_status(&[200]);
    assert_eq!(promoted["plugin_config"], json!({"min_value": "50"}));
    assert_eq!(fx.admin().get(&uri).await.expect_error(404), "not_found");

    // Every transfer after the promote is decided by min_value 50, every one before by 100.
    let after = send_transfers(&fx, &to).await;
    let mut expected = kept(&before, 100);
    expected.extend(kept(&after, 50));
    expected.sort();
    fx.receiver.wait_for(expected.len(), TIMEOUT).await;
    let got = fx
        .receiver
        .expect_exactly(expected.len(), Duration::from_secs(2))
        .await;
    assert_eq!(received(&fx), expected, "{}", describe(&got));
    assert_verified(&secret, &got);
}

/// The trapping canary's failures are in its state; its subscription got every webhook, is active
/// and parked nothing.
async fn trapping_canary_leaves_its_subscription_alone(
    fx: &Fixture,
    receiver: &Receiver,
    sub: &str,
    uri: &str,
) {
    receiver.wait_for(VALUES.len(), TIMEOUT).await;
    let got = receiver
        .expect_exactly(VALUES.len(), Duration::from_secs(1))
        .await;
    assert_eq!(got.len(), VALUES.len(), "{}", describe(&got));
    let admin = fx.admin().clone();
    let shown = wait_until(
        "the trapping canary reports its failures",
        TIMEOUT,
        Duration::from_millis(100),
        || async {
            let body = admin.get(uri).await.expect_status(&[200]).clone();
            if body["failures"]["traps"].as_u64().unwrap_or(0) >= 1 {
                Ok(body)
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;
    assert_eq!(shown["events"]["compared"], 0, "{shown}");
    assert!(
        shown["failures"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{shown}"
    );
    let live = admin.get(&format!("/v1/subscriptions/{sub}")).await;
    let live = live.expect_status(&[200]);
    assert_eq!(
        (&live["status"], &live["parked_events"], &live["last_error"]),
        (&json!("active"), &json!(0), &Value::Null),
        "{live}"
    );
}
