//! Which (subscription, log) deliveries the chain calls for, and whether the webhooks received
//! are exactly those: every one present, each built from the chain's own log, and any repeat
//! carrying the same `webhook-id` as the first.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::receiver::Received;
use crate::{TRANSFER_TOPIC0, lower};

/// A subscription as far as the expectation goes.
#[derive(Clone, Debug)]
pub struct SubSpec {
    pub id: String,
    /// Token addresses it matches (lowercase); `None` = any address.
    pub addresses: Option<Vec<String>>,
    /// `Some(min)`: through erc20-transfers with `min_value` = min (keeps `value >= min`, webhook
    /// `data` has the value); `None`: no plugin (everything matched, `data` null).
    pub min_value: Option<u128>,
}

/// One delivery: (subscription id, transaction hash, log index), hex lowercase.
pub type Key = (String, String, String);

/// Expected deliveries with the chain log each must carry.
pub fn expected_deliveries(subs: &[SubSpec], chain_logs: &[Value]) -> BTreeMap<Key, Value> {
    let mut expected = BTreeMap::new();
    for log in chain_logs {
        let address = lower(log["address"].as_str().unwrap_or_default());
        if log["topics"][0] != json!(TRANSFER_TOPIC0) {
            continue;
        }
        for sub in subs {
            let address_ok = sub.addresses.as_ref().is_none_or(|a| a.contains(&address));
            let value_ok = sub.min_value.is_none_or(|min| log_value(log) >= min);
            if address_ok && value_ok {
                expected.insert(key_of(&sub.id, log), log.clone());
            }
        }
    }
    expected
}

/// The key of a received webhook (from its body).
pub fn webhook_key(r: &Received) -> Key {
    let body = r.json();
    key_of(
        body["subscription_id"].as_str().unwrap_or_default(),
        &body["log"],
    )
}

fn key_of(sub: &str, log: &Value) -> Key {
    (
        sub.to_string(),
        lower(log["transactionHash"].as_str().unwrap_or_default()),
        lower(log["logIndex"].as_str().unwrap_or_default()),
    )
}

/// A Transfer log's value (its data word), 0 when it does not fit.
fn log_value(log: &Value) -> u128 {
    let data = log["data"].as_str().unwrap_or_default();
    u128::from_str_radix(data.trim_start_matches("0x"), 16).unwrap_or(0)
}

/// The received webhooks tallied against the expectation.
#[derive(Debug)]
pub struct Tally {
    pub expected: usize,
    pub received: usize,
    /// Distinct expected deliveries received.
    pub delivered: usize,
    /// Received more than once (always under the same `webhook-id`, or `check` panics).
    pub duplicated: usize,
    /// Expected and not (yet) received, at most 20 listed.
    pub missing: Vec<Key>,
    pub missing_count: usize,
}

/// Tallies `got` against `expected`; panics on a webhook that is not expected, does not carry its
/// chain log, or repeats a delivery under another `webhook-id` (or reuses an id for another one).
pub fn tally(expected: &BTreeMap<Key, Value>, subs: &[SubSpec], got: &[Received]) -> Tally {
    let mut ids_by_key: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
    let mut key_by_id: BTreeMap<String, Key> = BTreeMap::new();
    for r in got {
        let (key, id) = check_one(expected, subs, r);
        if let Some(other) = key_by_id.insert(id.clone(), key.clone())
            && other != key
        {
            panic!("webhook-id {id} was used for two deliveries: {other:?} and {key:?}");
        }
        ids_by_key.entry(key).or_default().insert(id);
    }
    for (key, ids) in &ids_by_key {
        assert_eq!(
            ids.len(),
            1,
            "delivery {key:?} arrived under {} different webhook-ids: {ids:?}",
            ids.len()
        );
    }
    let missing: Vec<Key> = expected
        .keys()
        .filter(|k| !ids_by_key.contains_key(*k))
        .cloned()
        .collect();
    Tally {
        expected: expected.len(),
        received: got.len(),
        delivered: ids_by_key.len(),
        duplicated: got.len() - ids_by_key.len(),
        missing_count: missing.len(),
        missing: missing.into_iter().take(20).collect(),
    }
}

/// Checks one webhook against its expected chain log; returns its key and `webhook-id`.
fn check_one(expected: &BTreeMap<Key, Value>, subs: &[SubSpec], r: &Received) -> (Key, String) {
    let body = r.json();
    let ctx = || format!("webhook {}", r.body_str());
    let id = r.required_header("webhook-id").to_string();
    assert_eq!(body["id"], json!(id), "body id ≠ webhook-id: {}", ctx());
    assert_eq!(body["type"], json!("log"), "{}", ctx());
    assert_eq!(body["chain_id"], json!(31337), "{}", ctx());
    let sub_id = body["subscription_id"].as_str().unwrap_or_default();
    let log = &body["log"];
    let key = key_of(sub_id, log);
    let chain_log = expected
        .get(&key)
        .unwrap_or_else(|| panic!("a webhook no subscription calls for: {}", ctx()));
    for field in [
        "address",
        "topics",
        "data",
        "blockNumber",
        "blockHash",
        "transactionIndex",
        "removed",
    ] {
        assert_eq!(
            lower(&log[field].to_string()),
            lower(&chain_log[field].to_string()),
            "log.{field} differs from the chain's log {chain_log}: {}",
            ctx()
        );
    }
    let sub = subs
        .iter()
        .find(|s| s.id == sub_id)
        .unwrap_or_else(|| panic!("unknown subscription: {}", ctx()));
    let want_data = match sub.min_value {
        Some(_) => json!(log_value(chain_log).to_string()),
        None => Value::Null,
    };
    let got_data = match sub.min_value {
        Some(_) => body["data"]["value"].clone(),
        None => body["data"].clone(),
    };
    assert_eq!(got_data, want_data, "webhook data: {}", ctx());
    (key, id)
}
