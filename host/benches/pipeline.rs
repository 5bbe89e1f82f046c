#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is right
//! End-to-end pipeline benchmark (DESIGN §7): recorded mainnet blocks are fed into the real host
//! (batch → matcher with a wasm plugin → outbox on the real store → signed HTTP delivery to a
//! receiver on loopback), and the harness measures what arrives.
//!
//! - throughput: every block fed as fast as backpressure allows; events/s and deliveries/s until
//!   the receiver has every webhook;
//! - latency: blocks fed at a moderate pace; event fed → webhook received, p50/p90/p99;
//! - memory: the process's peak RSS; database statements per 100 events (host metric).
//!
//! Run: `cargo bench -p pipeline-host --bench pipeline` (needs the release erc20-transfers wasm).
//! `PIPELINE_BENCH_DATABASE_URL=postgres://…` runs it on PostgreSQL (default: SQLite in a temp dir),
//! `PIPELINE_BENCH_REPEAT` (default 3) repeats the 21,786-log fixture under fresh block hashes.
//! Writes `target/bench-pipeline.json`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use pipeline_host::app;
use pipeline_host::config::Config;
use pipeline_host::event::{BlockKind, BlockLogs, ChainLog};
use pipeline_host::plugin::plugin_id;
use pipeline_host::store::{
    EndpointRow, EndpointStatus, PluginRow, SubscriptionRow, SubscriptionStatus, now_ms,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fixture's blocks, repeated `repeat` times under fresh block hashes (so ids stay unique).
fn blocks(repeat: usize) -> Vec<(B256, Vec<Arc<ChainLog>>)> {
    let text = pipeline_host::fixtures::mainnet_logs().unwrap();
    let logs: Vec<ChainLog> = text
        .lines()
        .map(|l| ChainLog::from_json(l).unwrap())
        .collect();
    let mut out = Vec::new();
    for r in 0..repeat {
        let mut current: Option<(B256, Vec<Arc<ChainLog>>)> = None;
        for log in &logs {
            let mut hash = log.block_hash;
            hash.0[0] ^= r as u8 + 1;
            let raw = log
                .raw
                .replace(&format!("{:#x}", log.block_hash), &format!("{hash:#x}"));
            let fed = ChainLog {
                block_hash: hash,
                raw: pipeline_host::event::LogText::from(raw),
                ..log.clone()
            };
            match &mut current {
                Some((h, block)) if *h == hash => block.push(Arc::new(fed)),
                _ => {
                    out.extend(current.take());
                    current = Some((hash, vec![Arc::new(fed)]));
                }
            }
        }
        out.extend(current);
    }
    out
}

/// ERC-20 transfers the plugin keeps (3 topics, 32-byte value), as an independent count.
fn expected_transfers(blocks: &[(B256, Vec<Arc<ChainLog>>)]) -> usize {
    let topic: B256 = TRANSFER_TOPIC.parse().unwrap();
    blocks
        .iter()
        .flat_map(|(_, l)| l)
        .filter(|l| l.topics.len() == 3 && l.topics[0] == topic && l.data.len() == 32)
        .count()
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Instant, B256, u64)>>>);

async fn receive(State(received): State<Received>, body: Bytes) -> &'static str {
    let at = Instant::now();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let hash: B256 = v["log"]["blockHash"].as_str().unwrap().parse().unwrap();
    let index = u64::from_str_radix(
        v["log"]["logIndex"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    received.0.lock().unwrap().push((at, hash, index));
    "ok"
}

async fn start_receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Received::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

struct Phase {
    events: usize,
    deliveries: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
    statements: f64,
}

/// One fresh host on a fresh database; feeds `blocks`, pausing `pace` between blocks.
async fn phase(
    database_url: &str,
    blocks: &[(B256, Vec<Arc<ChainLog>>)],
    pace: Option<Duration>,
) -> Phase {
    let dir = tempfile_dir();
    let mut config = Config {
        database_url: fresh_database(database_url, &dir).await,
        data_dir: dir.clone(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some("bench".into()),
        ..Config::default()
    };
    config.delivery.allowed_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    let config_url = config.database_url.clone();
    let app = app::build(config).await.unwrap();
    let (url, received) = start_receiver().await;
    let wasm = std::fs::read(workspace().join("target/wasm32-unknown-unknown/release/erc20_transfers.wasm"))
        .expect("build the plugin: cargo build --release --target wasm32-unknown-unknown -p erc20-transfers");
    let pid = plugin_id(&wasm);
    let store = app.store().clone();
    store
        .insert_plugin(
            &PluginRow {
                id: pid.clone(),
                name: "erc20".into(),
                size: wasm.len() as i64,
                created_at: now_ms(),
            },
            &wasm,
        )
        .await
        .unwrap();
    let endpoint = EndpointRow {
        id: "ep_bench".into(),
        url,
        description: String::new(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        created_at: now_ms(),
        updated_at: now_ms(),
    };
    store.insert_endpoint(&endpoint).await.unwrap();
    let sub = |id: &str, topics: Option<String>, plugin: Option<String>| SubscriptionRow {
        id: id.into(),
        endpoint_id: "ep_bench".into(),
        chain_id: 1,
        addresses: None,
        topics,
        plugin_id: plugin,
        plugin_config: Some(json!({"min_value": "0"}).to_string()),
        confirmations: 0,
        status: SubscriptionStatus::Active,
        last_error: None,
        created_at: now_ms(),
        updated_at: now_ms(),
        mode: Default::default(),
    };
    store
        .insert_subscription(&sub("sub_all", None, None))
        .await
        .unwrap();
    store
        .insert_subscription(&sub(
            "sub_erc20",
            Some(json!([[TRANSFER_TOPIC]]).to_string()),
            Some(pid),
        ))
        .await
        .unwrap();
    app.registry().reload().await.unwrap();
    let metrics = app.metrics().clone();
    let feed = app.blocks();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app::run(app, shutdown.clone()));

    let events: usize = blocks.iter().map(|(_, l)| l.len()).sum();
    let expected = events + expected_transfers(blocks);
    let mut fed_at: HashMap<(B256, u64), Instant> = HashMap::new();
    let started = Instant::now();
    for (number, (hash, logs)) in blocks.iter().enumerate() {
        let now = Instant::now();
        fed_at.extend(logs.iter().map(|l| ((*hash, l.log_index), now)));
        let block = BlockLogs {
            chain_id: 1,
            number: number as u64 + 1,
            hash: *hash,
            kind: BlockKind::Canonical,
            logs: logs.clone(),
            received_at: now,
            in_flight: Default::default(),
            window_row: None,
        };
        feed.send(block).await.unwrap();
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.0.lock().unwrap().len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} webhooks arrived",
            received.0.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let latencies_ms = received
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(at, hash, index)| at.duration_since(fed_at[&(*hash, *index)]).as_secs_f64() * 1e3)
        .collect();
    let statements: u64 = ["outbox", "delivery_results"]
        .iter()
        .map(|p| metrics.db_statements.with_label_values(&[p]).get())
        .sum();
    drop(feed);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop_database(database_url, &config_url).await;
    Phase {
        events,
        deliveries: expected,
        seconds,
        latencies_ms,
        statements: statements as f64,
    }
}

/// A new, empty database for one phase: a file in `dir`, or a new database on the server.
async fn fresh_database(url: &str, dir: &std::path::Path) -> String {
    if !url.starts_with("postgres") {
        return url.replace("{dir}", &dir.display().to_string());
    }
    use sqlx::Connection;
    let name = format!("pipeline_bench_{}", rand::random::<u32>());
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", url.rsplit_once('/').unwrap().0)
}

async fn drop_database(server_url: &str, url: &str) {
    if let (true, Some((_, name))) = (url.starts_with("postgres"), url.rsplit_once('/')) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(server_url).await.unwrap();
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pipeline-bench-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to list
    }
    let database_url = std::env::var("PIPELINE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://{dir}/bench.db".into());
    let repeat: usize = std::env::var("PIPELINE_BENCH_REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = blocks(repeat);
    let store = if database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };

    let throughput = runtime.block_on(phase(&database_url, &all, None));
    let rss = peak_rss_mb();
    // Moderate load, 1,000 events/s: (a) the recorded blocks as they come, one block of ~145 logs
    // every ~145 ms, so each block's webhooks queue behind one another at the single endpoint;
    // (b) the same events one per block, 1 ms apart: the pipeline's own latency.
    let one_pass = &all[..all.len() / repeat];
    let n_one_pass: usize = one_pass.iter().map(|(_, l)| l.len()).sum();
    let block_pace = Duration::from_secs_f64(n_one_pass as f64 / 1000.0 / one_pass.len() as f64);
    let bursts = runtime.block_on(phase(&database_url, one_pass, Some(block_pace)));
    let singles: Vec<(B256, Vec<Arc<ChainLog>>)> = one_pass
        .iter()
        .take(40)
        .flat_map(|(h, logs)| logs.iter().map(|l| (*h, vec![l.clone()])))
        .collect();
    let spread = runtime.block_on(phase(
        &database_url,
        &singles,
        Some(Duration::from_millis(1)),
    ));
    let summary = |p: &Phase| {
        let mut lat = p.latencies_ms.clone();
        lat.sort_by(f64::total_cmp);
        json!({"events": p.events, "deliveries": p.deliveries, "p50_ms": percentile(&lat, 0.50), "p90_ms": percentile(&lat, 0.90),
               "p99_ms": percentile(&lat, 0.99), "max_ms": lat.last().copied().unwrap_or(0.0)})
    };

    let report = json!({
        "store": store,
        "throughput": {
            "events": throughput.events, "deliveries": throughput.deliveries, "seconds": throughput.seconds,
            "events_per_s": throughput.events as f64 / throughput.seconds,
            "deliveries_per_s": throughput.deliveries as f64 / throughput.seconds,
            "db_statements_per_100_events": throughput.statements * 100.0 / throughput.events as f64,
        },
        "latency_1000_events_per_s_recorded_blocks": summary(&bursts),
        "latency_1000_events_per_s_one_event_per_block": summary(&spread),
        "peak_rss_mb_including_harness": rss,
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    let out = workspace().join("target/bench-pipeline.json");
    std::fs::write(&out, &text).unwrap();
    eprintln!("written to {}", out.display());
}
