//! A steady stream of ERC-20 transfers sent to anvil from a background task, for tests that break
//! things under load. Transactions are sent without waiting for their receipts (anvil mines them
//! on its block timer); what was actually mined is read back from the chain afterwards: anvil
//! can drop a transaction it acknowledged when sends race the mining of a block, so the chain,
//! not the list of sends, says what happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::collections::BTreeSet;

use rand::Rng;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::anvil::Anvil;
use crate::{lower, parse_quantity, wait_until};

/// What the load sent.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Hashes of the transactions anvil accepted, in sending order.
    pub sent: Vec<String>,
    /// Sends that failed (an error, or no answer: anvil may still have taken it).
    pub failed: usize,
    /// The first few failures' messages.
    pub errors: Vec<String>,
}

/// The running load; `stop` ends it and returns the report.
pub struct TransferLoad {
    stop: Arc<AtomicBool>,
    task: JoinHandle<LoadReport>,
}

/// Where and what to send.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// anvil's HTTP JSON-RPC URL.
    pub rpc_url: String,
    /// The sender (an unlocked account holding every token's supply).
    pub from: String,
    /// Token contracts, used in turn.
    pub tokens: Vec<String>,
    /// Recipients, picked at random.
    pub recipients: Vec<String>,
    /// Transfers per second, spread evenly.
    pub per_second: u32,
    /// Values are drawn uniformly from 1..=max_value.
    pub max_value: u128,
}

impl TransferLoad {
    pub fn start(plan: LoadPlan) -> TransferLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(send_until_stopped(plan, stop.clone()));
        TransferLoad { stop, task }
    }

    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => panic!("the transfer load task failed: {e}"),
            Err(_) => panic!("the transfer load task did not stop within 30 s"),
        }
    }
}

async fn send_until_stopped(plan: LoadPlan, stop: Arc<AtomicBool>) -> LoadReport {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build reqwest client");
    let mut report = LoadReport::default();
    let mut every = tokio::time::interval(Duration::from_secs(1) / plan.per_second.max(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        every.tick().await;
        let token = &plan.tokens[n % plan.tokens.len()];
        n += 1;
        let (to, value) = {
            let mut rng = rand::rng();
            let to = &plan.recipients[rng.random_range(0..plan.recipients.len())];
            (to.clone(), rng.random_range(1..=plan.max_value))
        };
        let tx = json!({"from": plan.from, "to": token, "data": transfer_calldata(&to, value)});
        match rpc(&http, &plan.rpc_url, "eth_sendTransaction", json!([tx])).await {
            Ok(hash) => report
                .sent
                .push(hash.as_str().unwrap_or_default().to_string()),
            Err(e) => {
                report.failed += 1;
                if report.errors.len() < 5 {
                    report.errors.push(e);
                }
            }
        }
    }
    report
}

async fn rpc(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp = http
        .post(url)
        .json(&req)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    match body.get("result") {
        Some(result) if !result.is_null() => Ok(result.clone()),
        _ => Err(format!("{method}: {body}")),
    }
}

/// The Transfer logs mined from the load, once anvil's pool is empty. They, not the list of
/// sends, are the truth: anvil can drop a transaction it acknowledged (a send racing the mining of
/// a block), and a send that got no answer may have been mined.
pub async fn mined_transfers(
    anvil: &Anvil,
    tokens: &[String],
    start_block: u64,
    report: &LoadReport,
) -> Vec<Value> {
    wait_until(
        "anvil to mine every pending transaction",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let status = anvil.try_rpc("txpool_status", json!([])).await?;
            match status["pending"].as_str() {
                Some("0x0") => Ok(()),
                _ => Err(format!("txpool {status}")),
            }
        },
    )
    .await;
    let mut logs = Vec::new();
    for token in tokens {
        let token_logs = anvil.logs(token).await;
        logs.extend(
            token_logs.into_iter().filter(|l| {
                parse_quantity(l["blockNumber"].as_str().unwrap_or("0x0")) >= start_block
            }),
        );
    }
    let mined: BTreeSet<String> = logs
        .iter()
        .map(|l| lower(l["transactionHash"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(mined.len(), logs.len(), "one Transfer log per transaction");
    let sent: BTreeSet<String> = report.sent.iter().map(|h| lower(h)).collect();
    if report.failed == 0 {
        assert!(
            mined.is_subset(&sent),
            "a mined transfer the load did not send"
        );
    }
    // An acknowledged transfer without a log must be one anvil dropped, not one mined whose log
    // eth_getLogs left out (the expectation would miss it).
    for hash in sent.difference(&mined).take(20) {
        let receipt = anvil
            .try_rpc("eth_getTransactionReceipt", json!([hash]))
            .await;
        assert_eq!(receipt, Ok(Value::Null), "transfer {hash} has no log");
    }
    assert!(
        !logs.is_empty(),
        "nothing was mined: {} sends failed, e.g. {:?}",
        report.failed,
        report.errors
    );
    logs
}

/// `transfer(to, value)` ABI-encoded: selector 0xa9059cbb, the address and the value as words.
pub fn transfer_calldata(to: &str, value: u128) -> String {
    format!(
        "0xa9059cbb{:0>64}{value:064x}",
        to.trim_start_matches("0x").to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn transfer_calldata_is_abi_encoded() {
        assert_eq!(
            super::transfer_calldata("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 500),
            "0xa9059cbb00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8\
             00000000000000000000000000000000000000000000000000000000000001f4"
        );
    }
}
