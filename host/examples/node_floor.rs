//! How long a block's logs take to come back from the node once its head is read, measured apart
//! from the rest of the host: the part of the 1K latency goal (issue 6) that is the node's answer.
//! It follows a `pipeline dev-node` (a process of its own, 100 ms blocks of ERC-20 transfers, as
//! the load harness's node) with the host's own RPC connection (`ingest::rpc::Connection`): on
//! each head it asks `eth_getLogs` by block hash, as ingest does, and prints the median and p90
//! time from the head's notification being read to the answer being read, and to its logs parsed.
//!
//! ```text
//! target/dist/pipeline dev-node --listen 127.0.0.1:38546 --source transfers --rate 1000 &
//! cargo run --release -p pipeline-host --example node_floor   # URL=ws://127.0.0.1:38546 HEADS=100
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A measurement, not the host.
use std::time::{Duration, Instant};

use pipeline_host::ingest::NodeLimits;
use pipeline_host::ingest::rpc::Connection;
use serde_json::{Value, json};

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn run(url: &str, heads: usize) {
    let limits = NodeLimits {
        max_message_bytes: 64 << 20,
        max_logs_bytes: 64 << 20,
        max_range_blocks: 1000,
        filter_at_node: false,
    };
    let mut node = Connection::connect(url, Duration::from_secs(5), &limits)
        .await
        .unwrap();
    node.subscribe_new_heads().await.unwrap();
    let (mut answered, mut parsed, mut logs) = (Vec::new(), Vec::new(), 0);
    for n in 0..heads + 5 {
        let head = node.next_head(Duration::from_secs(5)).await.unwrap();
        let read = Instant::now();
        let answer = node
            .request_raw("eth_getLogs", json!([{"blockHash": head.hash}]))
            .await
            .unwrap();
        let at_answer = read.elapsed();
        let block: Vec<Value> = serde_json::from_str(answer.get()).unwrap();
        let at_parsed = read.elapsed();
        if n >= 5 {
            answered.push(at_answer.as_secs_f64() * 1e6);
            parsed.push(at_parsed.as_secs_f64() * 1e6);
            logs += block.len();
        }
    }
    println!(
        "{{\"heads\":{heads},\"logs_per_block\":{},\"answered_us\":{{\"p50\":{:.0},\"p90\":{:.0}}},\"parsed_us\":{{\"p50\":{:.0},\"p90\":{:.0}}}}}",
        logs / heads,
        percentile(answered.clone(), 0.5),
        percentile(answered, 0.9),
        percentile(parsed.clone(), 0.5),
        percentile(parsed, 0.9),
    );
}

fn main() {
    let url = std::env::var("URL").unwrap_or_else(|_| "ws://127.0.0.1:38546".to_owned());
    let heads: usize = std::env::var("HEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&url, heads));
}
