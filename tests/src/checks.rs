//! Assertions shared by the end-to-end scenarios: a transfer webhook against DESIGN §5 and the
//! chain's own log, webhook-id uniqueness, delivery states in the admin API.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::admin::Admin;
use crate::anvil::address_topic;
use crate::receiver::{Received, describe};
use crate::{TRANSFER_TOPIC0, lower, wait_until};

/// What a transfer webhook must say.
pub struct Expect<'a> {
    pub sub_id: &'a str,
    pub token: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// Checks one webhook against DESIGN §5 and the chain's own log; returns the transferred value.
pub fn check_transfer_webhook(r: &Received, expect: &Expect<'_>, chain_logs: &[Value]) -> u128 {
    let body = r.json();
    let ctx = format!("webhook {}", r.body_str());
    assert_eq!(r.method, "POST", "{ctx}");
    let content_type = r.required_header("content-type");
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}: {ctx}"
    );

    let id = body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no string id: {ctx}"));
    assert!(id.starts_with("msg_"), "id should start with msg_: {ctx}");
    assert_eq!(
        r.required_header("webhook-id"),
        id,
        "the webhook-id header must equal the body id: {ctx}"
    );
    let ts: i64 = r
        .required_header("webhook-timestamp")
        .parse()
        .expect("webhook-timestamp is an integer");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now - ts).abs() < 300,
        "webhook-timestamp {ts} is not close to now {now}: {ctx}"
    );
    assert!(
        r.required_header("webhook-signature").starts_with("v1,"),
        "webhook-signature: {ctx}"
    );

    assert_eq!(body["type"], json!("log"), "{ctx}");
    assert_eq!(body["subscription_id"], json!(expect.sub_id), "{ctx}");
    assert_eq!(body["chain_id"], json!(31337), "{ctx}");
    assert_eq!(body["confirmations"], json!(0), "{ctx}");

    let log = &body["log"];
    let chain_log = chain_logs
        .iter()
        .find(|l| {
            l["transactionHash"] == log["transactionHash"] && l["logIndex"] == log["logIndex"]
        })
        .unwrap_or_else(|| {
            panic!("no log on the chain with this transactionHash and logIndex: {ctx}")
        });
    for field in [
        "address",
        "data",
        "blockNumber",
        "blockHash",
        "transactionHash",
        "transactionIndex",
        "logIndex",
    ] {
        let got = log[field]
            .as_str()
            .unwrap_or_else(|| panic!("log.{field} is not a string: {ctx}"));
        let want = chain_log[field].as_str().expect("chain log field");
        assert_eq!(
            lower(got),
            lower(want),
            "log.{field} differs from eth_getLogs ({chain_log}): {ctx}"
        );
    }
    let topics: Vec<String> = log["topics"]
        .as_array()
        .unwrap_or_else(|| panic!("log.topics is not an array: {ctx}"))
        .iter()
        .map(|t| lower(t.as_str().expect("topic is a string")))
        .collect();
    assert_eq!(
        topics,
        vec![
            TRANSFER_TOPIC0.to_string(),
            address_topic(expect.from),
            address_topic(expect.to)
        ],
        "{ctx}"
    );
    assert_eq!(log["removed"], json!(false), "{ctx}");

    let data = &body["data"];
    assert_eq!(
        data["token"],
        json!(expect.token),
        "data.token (lowercase hex): {ctx}"
    );
    assert_eq!(
        data["from"],
        json!(expect.from),
        "data.from (lowercase hex): {ctx}"
    );
    assert_eq!(
        data["to"],
        json!(expect.to),
        "data.to (lowercase hex): {ctx}"
    );
    let value: u128 = data["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("data.value should be a decimal string: {ctx}"));
    let raw = u128::from_str_radix(
        log["data"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("0x"),
        16,
    )
    .ok();
    assert_eq!(
        raw,
        Some(value),
        "data.value must match the log's data: {ctx}"
    );
    value
}

/// `v`, sorted.
pub fn sorted(mut v: Vec<u128>) -> Vec<u128> {
    v.sort_unstable();
    v
}

/// Asserts no `webhook-id` arrived twice.
pub fn assert_unique_ids(got: &[Received]) {
    let ids: BTreeSet<&str> = got
        .iter()
        .map(|r| r.required_header("webhook-id"))
        .collect();
    assert_eq!(
        ids.len(),
        got.len(),
        "a webhook-id arrived more than once:\n{}",
        describe(got)
    );
}

/// Waits until `GET /v1/deliveries` lists exactly `n` deliveries, all `delivered`.
pub async fn wait_delivered(admin: &Admin, n: usize) {
    wait_until(
        &format!("{n} deliveries with status delivered"),
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            let items = admin.list_deliveries().await;
            let delivered = items
                .iter()
                .filter(|d| d["status"] == json!("delivered"))
                .count();
            if delivered == n && items.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} item(s), {delivered} delivered: {}",
                    items.len(),
                    Value::Array(items)
                ))
            }
        },
    )
    .await
}

/// Runs `promtool check metrics` (from Debian's prometheus package, extracted by scripts/test.sh)
/// on a `/metrics` exposition: an outside verifier of the format and naming conventions.
pub fn assert_promtool_accepts(exposition: &str) {
    use std::io::Write;
    let promtool = std::env::var("PIPELINE_PROMTOOL").unwrap_or_else(|_| {
        panic!("PIPELINE_PROMTOOL is not set: run the tests through scripts/test.sh")
    });
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
