//! Wall-clock time of the hot path's batch write (`Store::write_batch`) for a head batch: one
//! block of one chain, 100 deliveries of ~600-byte bodies, the block's window row and the cursor —
//! what the store does for each 100 ms block at 1K events/s. Between writes the process sleeps
//! `GAP_MS` (100, as at the head; 0 for back-to-back writes), so the writes meet the same idle
//! threads as in the load test. Prints the median, p90 and p99 of `N` writes (after 20 warm-up
//! writes), three rounds:
//!
//! ```text
//! cargo run --release -p pipeline-host --example write_cost                 # SQLite in /tmp
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/writecost cargo run --release -p pipeline-host --example write_cost
//! ```
//! (the PostgreSQL database must exist and be empty). `N` (200), `GAP_MS` (100), `ROWS` (100).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A measurement, not the host.
use std::time::{Duration, Instant};

use pipeline_host::store::{
    ChainBlock, Cursor, NewDelivery, OutboxWrite, Store, StoredBlock, StoredLogs,
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn head_batch(block: i64, rows: u64) -> OutboxWrite {
    let hash = format!("{block:#066x}");
    let body = format!(
        r#"{{"type":"log","timestamp":"2026-12-05T22:52:18Z","data":{{"address":"0x{a}","topics":["0x{t}","0x{t}","0x{t}"],"data":"0x{t}","blockNumber":"{block:#x}","removed":false}}}}"#,
        a = "ab".repeat(20),
        t = "cd".repeat(32),
    );
    OutboxWrite {
        deliveries: (0..rows)
            .map(|i| NewDelivery {
                id: format!("d_{block:020}_{i:08}"),
                subscription_id: format!("sub_{i:03}"),
                endpoint_id: "ep_1".into(),
                chain_id: 1,
                event_type: "log".into(),
                block_number: block,
                body: body.clone(),
                release_block: None,
                supersedes: Vec::new(),
                ordering_key: None,
            })
            .collect(),
        cursors: vec![Cursor {
            chain_id: 1,
            block_number: block,
            block_hash: hash.clone(),
        }],
        chain_blocks: vec![ChainBlock {
            chain_id: 1,
            block: StoredBlock {
                number: block,
                hash,
                parent_hash: format!("{:#066x}", block - 1),
                logs: StoredLogs::from("[]"),
            },
        }],
        ..OutboxWrite::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite:///tmp/write-cost-{}/p.db", std::process::id()));
    let (n, gap, rows) = (env_or("N", 200), env_or("GAP_MS", 100), env_or("ROWS", 100));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    // Held as ingest holds it: each write then checks the chain's epoch (fencing).
    let _lock = store
        .try_lock_chain(1)
        .await
        .unwrap()
        .expect("chain 1 is free");
    let mut block = 1;
    for round in 1..=3 {
        let mut took = Vec::new();
        for i in 0..n + 20 {
            let write = head_batch(block, rows);
            block += 1;
            tokio::time::sleep(Duration::from_millis(gap)).await;
            let started = Instant::now();
            store.write_batch(&write, 60_000).await.unwrap();
            if i >= 20 {
                took.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        took.sort_by(f64::total_cmp);
        println!(
            "round {round}: {} writes of {rows} deliveries, {gap} ms apart: median {:.0} µs, p90 {:.0}, p99 {:.0}",
            took.len(),
            percentile(&took, 0.5),
            percentile(&took, 0.9),
            percentile(&took, 0.99)
        );
    }
}
