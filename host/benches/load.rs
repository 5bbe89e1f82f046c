#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is right
//! Load test of the `pipeline` binary as its own process (issue "the binary meets the original
//! design's numbers"). This harness is the other process: it runs the dev node (`pipeline_host::
//! devnode`, the same one `pipeline dev-node` serves) publishing blocks of recorded ERC-20 `Transfer`
//! logs spread over N token contracts at a fixed rate, and a webhook sink that timestamps each
//! arrival on the same clock as the head's publication. The host ingests over WebSocket
//! (`newHeads` + `eth_getLogs`), matches N subscriptions (one per token, a share of them through the
//! `erc20-transfers` plugin), stores and delivers to the sink. The harness samples the host's RSS
//! from /proc, reads its DB statement counter from /metrics, and checks that every expected
//! webhook arrived exactly once (by `webhook-id`).
//!
//! Run: `scripts/bench.sh` (all scenarios), or one scenario:
//! `PIPELINE_LOAD_RATE=10000 cargo bench -p pipeline-host --bench load`.
//! Knobs: `PIPELINE_LOAD_RATE` (events/s, 1000), `PIPELINE_LOAD_SECONDS` (chain run time, 10),
//! `PIPELINE_LOAD_BLOCK_MS` (100), `PIPELINE_LOAD_SUBSCRIPTIONS` (100), `PIPELINE_LOAD_TOKENS`
//! (default = subscriptions), `PIPELINE_LOAD_PLUGIN_SHARE` (0.0–1.0 of subscriptions through the
//! plugin, 0), `PIPELINE_LOAD_DATABASE_URL` (default SQLite in a temp dir), `PIPELINE_LOAD_LABEL`,
//! `PIPELINE_LOAD_OUT` (JSON report path, default target/bench-load.json), `PIPELINE_LOAD_BIN` (the
//! host binary, default the one cargo built: for A/B runs), `PIPELINE_LOAD_ENDPOINTS` (1: the
//! subscriptions go round-robin to this many endpoints, all on the one sink under different paths).
//! Subscriptions are created through the admin API by 16 clients at once, as an operator's script
//! would; the report gives how long that took (`setup_seconds`). `PIPELINE_LOAD_BATCH` (every
//! subscription's `batch`, as JSON: `'"block"'` or `'{"max_events":100,"max_wait_ms":50}'`),
//! `PIPELINE_LOAD_ORDERING` (`chain`: every subscription ordered), `PIPELINE_LOAD_TOML_EXTRA`
//! (appended to the host's TOML config, for TOML-only settings). Latency and exactly-once are
//! counted per event either way; `webhook_requests` says how many POSTs carried them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use pipeline_host::devnode::{Chain, ChainSpec, DevNode, LogSource, Published};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<(Instant, u64, String)>>>);

/// Largest webhook body the sink takes.
const SINK_BODY_LIMIT: usize = 64 * 1024 * 1024;

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> &'static str {
    let at = Instant::now();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let block = |log: &Value| {
        u64::from_str_radix(
            log["blockNumber"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap()
    };
    let mut sink = sink.0.lock().unwrap();
    match v["events"].as_array() {
        // A `log.batch` webhook: one entry per event it carries, keyed by the webhook and place.
        Some(events) => {
            for (i, e) in events.iter().enumerate() {
                sink.push((at, block(&e["log"]), format!("{id}#{i}")));
            }
        }
        None => sink.push((at, block(&v["log"]), id)),
    }
    "ok"
}

/// The host's resident memory in MB: (all, anonymous, file-backed), from `/proc/<pid>/status`.
fn rss_mb(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

async fn admin_post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Vec<u8>,
    json_body: bool,
) -> Value {
    let mut request = http
        .post(format!("{base}{path}"))
        .bearer_auth("load")
        .body(body);
    if json_body {
        request = request.header("content-type", "application/json");
    }
    let response = request.send().await.unwrap();
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Sum of `pipeline_db_statements_total` over its labels (write purposes only when `writes`).
async fn db_statements(http: &reqwest::Client, metrics: &str) -> f64 {
    let text = http
        .get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("pipeline_db_statements_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

struct Scenario {
    rate: f64,
    seconds: f64,
    block_ms: u64,
    subscriptions: usize,
    tokens: usize,
    plugin_share: f64,
    endpoints: usize,
    database_url: Option<String>,
    batch: Option<Value>,
    ordering: Option<String>,
}

fn main() {
    if let Ok(port) = std::env::var("PIPELINE_LOAD_SINK_ONLY") {
        return sink_only(port.parse().unwrap());
    }
    let subscriptions: usize = env_or("PIPELINE_LOAD_SUBSCRIPTIONS", 100);
    let scenario = Scenario {
        rate: env_or("PIPELINE_LOAD_RATE", 1000.0),
        seconds: env_or("PIPELINE_LOAD_SECONDS", 10.0),
        block_ms: env_or("PIPELINE_LOAD_BLOCK_MS", 100),
        subscriptions,
        tokens: env_or("PIPELINE_LOAD_TOKENS", subscriptions),
        plugin_share: env_or("PIPELINE_LOAD_PLUGIN_SHARE", 0.0),
        endpoints: env_or("PIPELINE_LOAD_ENDPOINTS", 1usize).max(1),
        database_url: std::env::var("PIPELINE_LOAD_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty()),
        batch: std::env::var("PIPELINE_LOAD_BATCH")
            .ok()
            .filter(|b| !b.is_empty())
            .map(|b| serde_json::from_str(&b).expect("PIPELINE_LOAD_BATCH is JSON")),
        ordering: std::env::var("PIPELINE_LOAD_ORDERING")
            .ok()
            .filter(|o| !o.is_empty()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(run(scenario));
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    let out = std::env::var("PIPELINE_LOAD_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target/bench-load.json"));
    std::fs::write(out, text).unwrap();
}

/// Only the sink, on `port`, for 60 s: `scripts/bench.sh` measures its ceiling with wrk.
fn sink_only(port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let app = Router::new()
            .route("/hook", post(receive))
            .route("/hook/{n}", post(receive))
            .layer(DefaultBodyLimit::max(SINK_BODY_LIMIT))
            .with_state(Sink::default());
        let _ = tokio::time::timeout(Duration::from_secs(60), axum::serve(listener, app)).await;
    });
}

async fn run(s: Scenario) -> Value {
    let logs_per_block = ((s.rate * s.block_ms as f64 / 1000.0).round() as usize).max(1);
    let spec = ChainSpec {
        chain_id: 1,
        source: LogSource::Transfers,
        tokens: s.tokens,
        logs_per_block,
        block_seconds: 1,
        seed: rand::random(),
    };
    let node = DevNode::new(Chain::new(spec, 1_700_000_000).unwrap());
    let tokens = node.chain().token_addresses();
    let shutdown = CancellationToken::new();
    let node_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_url = format!("ws://{}", node_listener.local_addr().unwrap());
    tokio::spawn(node.clone().serve(node_listener, shutdown.clone()));

    let sink = Sink::default();
    let sink_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", sink_listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .route("/hook/{n}", post(receive))
        // A per-block batch of a 10,000-log block is ~10 MB: above axum's 2 MB default.
        .layer(DefaultBodyLimit::max(SINK_BODY_LIMIT))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(sink_listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("pipeline-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("load.toml"),
        format!(
            "[[chains]]\nname = \"replay\"\nchain_id = 1\nws_urls = [\"{ws_url}\"]\n{}\n",
            // TOML-only settings for A/B runs, e.g. "[plugin]\ncompile_in_child = false".
            std::env::var("PIPELINE_LOAD_TOML_EXTRA").unwrap_or_default()
        ),
    )
    .unwrap();
    let (admin_port, metrics_port) = (free_port(), free_port());
    let database_url = s
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/load.db", dir.display()));
    // PIPELINE_LOAD_BIN runs another build of the host (A/B comparisons in one session).
    let bin = std::env::var("PIPELINE_LOAD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pipeline").to_string());
    let mut host = Command::new(bin)
        .args(["serve", "--config", dir.join("load.toml").to_str().unwrap()])
        .current_dir(&dir)
        .env("DATABASE_URL", &database_url)
        .env("PIPELINE_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
        .env("PIPELINE_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("PIPELINE_ADMIN_TOKEN", "load")
        .env("PIPELINE_DELIVERY_ALLOWED_CIDRS", "127.0.0.0/8")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{admin_port}");
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        if let Ok(Some(status)) = host.try_wait() {
            panic!("the host exited before answering /healthz ({status}); its stderr is above");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plugin_subs = (s.subscriptions as f64 * s.plugin_share).round() as usize;
    let plugin_id = if plugin_subs > 0 {
        let wasm = std::fs::read(workspace().join("target/wasm32-unknown-unknown/release/erc20_transfers.wasm"))
            .expect("build the plugin first: cargo build --release --target wasm32-unknown-unknown -p erc20-transfers");
        admin_post(&http, &base, "/v1/plugins?name=erc20", wasm, false).await["id"].clone()
    } else {
        Value::Null
    };
    let setup = Instant::now();
    let mut endpoints = Vec::with_capacity(s.endpoints);
    for k in 0..s.endpoints {
        let body = json!({"url": format!("{hook}/{k}")})
            .to_string()
            .into_bytes();
        let endpoint = admin_post(&http, &base, "/v1/endpoints", body, true).await;
        assert!(endpoint["id"].is_string(), "{endpoint}");
        endpoints.push(endpoint["id"].clone());
    }
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..s.subscriptions {
        let mut body = json!({"endpoint_id": endpoints[i % endpoints.len()], "chain_id": 1, "addresses": [tokens[i % tokens.len()]]});
        if let Some(batch) = &s.batch {
            body["batch"] = batch.clone();
        }
        if let Some(ordering) = &s.ordering {
            body["ordering"] = json!(ordering);
        }
        if i < plugin_subs {
            body["plugin_id"] = plugin_id.clone();
            body["plugin_config"] = json!({"min_value": "0"});
        }
        let (http, base) = (http.clone(), base.clone());
        creating.spawn(async move {
            let sub = admin_post(
                &http,
                &base,
                "/v1/subscriptions",
                body.to_string().into_bytes(),
                true,
            )
            .await;
            assert!(sub["id"].is_string(), "{sub}");
        });
        while creating.len() >= 16 {
            creating.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = creating.join_next().await {
        done.unwrap();
    }
    let setup_seconds = setup.elapsed().as_secs_f64();
    // The host picks up subscriptions made through its API at once; give ingest a moment to connect.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let statements_before = db_statements(&http, &metrics_url).await;

    let blocks = ((s.seconds * 1000.0) / s.block_ms as f64).round() as u64;
    let published: Arc<Mutex<Vec<Published>>> = Arc::default();
    let started_at = node.head();
    let chain_node = node.clone();
    let (recorder, stop) = (published.clone(), shutdown.clone());
    let publisher = tokio::spawn(async move {
        chain_node
            .run_chain(Duration::from_millis(s.block_ms), Some(blocks), stop, |p| {
                recorder.lock().unwrap().push(p)
            })
            .await
    });
    let mut rss = Vec::new();
    let started = Instant::now();
    while !publisher.is_finished() {
        rss.push(rss_mb(host.id()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chain_seconds = started.elapsed().as_secs_f64();
    let received_while_running = sink.0.lock().unwrap().len();
    // Logs go round-robin over the tokens and subscription i watches token i % tokens, so each log
    // matches subscriptions / tokens of them (exact when the counts divide, as in bench.sh).
    let expected = blocks as usize * logs_per_block * s.subscriptions / s.tokens;
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(120);
    let mut drained_after = None;
    while Instant::now() < deadline {
        rss.push(rss_mb(host.id()));
        if sink.0.lock().unwrap().len() >= expected {
            drained_after = Some(stopped.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // late duplicates would show here
    let statements = db_statements(&http, &metrics_url).await - statements_before;
    let _ = Command::new("kill").arg(host.id().to_string()).status();
    let _ = host.wait();
    shutdown.cancel();
    // A run's SQLite database reaches gigabytes at 100K events/s: a series of runs filled the disk.
    let _ = std::fs::remove_dir_all(&dir);

    let published_at: HashMap<u64, Instant> = published
        .lock()
        .unwrap()
        .iter()
        .map(|p| (p.number, p.at))
        .collect();
    let got = sink.0.lock().unwrap().clone();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (_, _, id) in &got {
        *by_id.entry(id.as_str()).or_default() += 1;
    }
    let duplicates: usize = by_id.values().map(|n| n - 1).sum();
    let mut latency: Vec<f64> = got
        .iter()
        .filter(|(_, n, _)| *n > started_at)
        .filter_map(|(at, n, _)| Some(at.duration_since(*published_at.get(n)?).as_secs_f64() * 1e3))
        .collect();
    latency.sort_by(f64::total_cmp);
    // Each block's first and last webhook: the wait before a block's fan-out starts, and its end.
    let mut per_block: HashMap<u64, (f64, f64)> = HashMap::new();
    for (at, n, _) in got.iter().filter(|(_, n, _)| *n > started_at) {
        let Some(published) = published_at.get(n) else {
            continue;
        };
        let ms = at.duration_since(*published).as_secs_f64() * 1e3;
        let (first, last) = per_block.entry(*n).or_insert((ms, ms));
        (*first, *last) = (first.min(ms), last.max(ms));
    }
    let mut firsts: Vec<f64> = per_block.values().map(|b| b.0).collect();
    let mut lasts: Vec<f64> = per_block.values().map(|b| b.1).collect();
    firsts.sort_by(f64::total_cmp);
    lasts.sort_by(f64::total_cmp);
    let mut sorted_rss: Vec<f64> = rss.iter().map(|r| r.0).collect();
    sorted_rss.sort_by(f64::total_cmp);
    let at_peak = rss
        .iter()
        .copied()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or_default();
    let events = blocks as usize * logs_per_block;
    json!({
        "label": std::env::var("PIPELINE_LOAD_LABEL").unwrap_or_default(),
        "store": if database_url.starts_with("postgres") { "postgres" } else { "sqlite" },
        "offered_events_per_s": s.rate, "block_ms": s.block_ms, "logs_per_block": logs_per_block,
        "subscriptions": s.subscriptions, "tokens": s.tokens, "plugin_subscriptions": plugin_subs,
        "endpoints": s.endpoints, "setup_seconds": setup_seconds,
        "blocks": blocks, "events": events, "chain_seconds": chain_seconds,
        "batch": s.batch, "ordering": s.ordering,
        "webhook_requests": got.iter().map(|(_, _, key)| key.split('#').next().unwrap_or_default()).collect::<std::collections::HashSet<_>>().len(),
        "events_per_s_delivered": drained_after.map(|d| got.len() as f64 / (chain_seconds + d)),
        "webhooks_expected": expected, "webhooks_unique": by_id.len(), "webhooks_duplicated": duplicates,
        "exactly_once": by_id.len() == expected && duplicates == 0,
        "webhooks_per_s_while_running": received_while_running as f64 / chain_seconds,
        "backlog_drained_after_s": drained_after,
        "latency_ms": {"p50": percentile(&latency, 0.5), "p90": percentile(&latency, 0.9), "p99": percentile(&latency, 0.99), "max": latency.last().copied().unwrap_or(0.0)},
        "block_first_webhook_ms": {"p50": percentile(&firsts, 0.5), "p99": percentile(&firsts, 0.99)},
        "block_last_webhook_ms": {"p50": percentile(&lasts, 0.5), "p99": percentile(&lasts, 0.99)},
        "host_rss_mb": {"median": percentile(&sorted_rss, 0.5), "peak": sorted_rss.last().copied().unwrap_or(0.0), "peak_anon": at_peak.1, "peak_file": at_peak.2},
        "db_statements": statements, "db_statements_per_100_events": statements * 100.0 / events as f64,
    })
}
