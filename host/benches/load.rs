#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is right
//! Load test of the `pipeline` binary as its own process (DESIGN §7: throughput, latency and the
//! host's own memory). A WebSocket JSON-RPC node in this harness replays the recorded mainnet blocks
//! (renumbered, re-hashed, chained) as `newHeads` at a fixed rate; the host ingests them like any
//! chain (`eth_getLogs {blockHash}`), runs the `erc20-transfers` plugin, stores, and delivers signed
//! webhooks to a receiver here. The harness samples the host's RSS from /proc.
//!
//! Run: `cargo bench -p pipeline-host --bench load` (needs the release erc20-transfers wasm).
//! `PIPELINE_LOAD_RATE` (events/s, default 10000), `PIPELINE_LOAD_REPEAT` (fixture passes, default 6),
//! `PIPELINE_LOAD_DATABASE_URL` (default SQLite in a temp dir). Writes `target/bench-load.json`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The replayed chain: block n (1-based) has a header and its logs as JSON text.
struct Chain {
    headers: Vec<Value>,
    logs: Vec<String>,
    by_hash: HashMap<String, usize>,
    n_events: usize,
    n_transfers: usize,
}

fn hash_of(n: usize) -> String {
    format!("0x{:064x}", 0xb10c_0000_0000usize + n)
}

fn build_chain(repeat: usize) -> Chain {
    let text = pipeline_host::fixtures::mainnet_logs().unwrap();
    let mut recorded: Vec<Vec<Value>> = Vec::new();
    let mut last_hash = String::new();
    for line in text.lines() {
        let log: Value = serde_json::from_str(line).unwrap();
        let hash = log["blockHash"].as_str().unwrap().to_string();
        if hash != last_hash {
            recorded.push(Vec::new());
            last_hash = hash;
        }
        recorded.last_mut().unwrap().push(log);
    }
    let mut chain = Chain {
        headers: vec![Value::Null],
        logs: vec![String::new()],
        by_hash: HashMap::new(),
        n_events: 0,
        n_transfers: 0,
    };
    chain.headers[0] = json!({"number": "0x0", "hash": hash_of(0), "parentHash": format!("0x{:064x}", 0), "timestamp": "0x0"});
    chain.by_hash.insert(hash_of(0), 0);
    for block in (0..repeat).flat_map(|_| recorded.iter()) {
        let n = chain.headers.len();
        let (hash, number) = (hash_of(n), format!("{n:#x}"));
        let logs: Vec<Value> = block
            .iter()
            .map(|log| {
                let mut log = log.clone();
                log["blockHash"] = json!(hash);
                log["blockNumber"] = json!(number);
                log
            })
            .collect();
        chain.n_events += logs.len();
        chain.n_transfers += logs
            .iter()
            .filter(|l| {
                l["topics"].as_array().unwrap().len() == 3
                    && l["topics"][0] == TRANSFER_TOPIC
                    && l["data"].as_str().unwrap().len() == 66
            })
            .count();
        chain.headers.push(json!({"number": number, "hash": hash, "parentHash": hash_of(n - 1), "timestamp": "0x0"}));
        chain.logs.push(Value::Array(logs).to_string());
        chain.by_hash.insert(hash, n);
    }
    chain
}

/// Serves the chain; `published` is the head; every new head is broadcast to subscribers.
async fn serve_node(
    chain: Arc<Chain>,
    published: Arc<AtomicUsize>,
    heads: broadcast::Sender<usize>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (chain, published, mut heads) =
                (chain.clone(), published.clone(), heads.subscribe());
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                loop {
                    let reply = tokio::select! {
                        message = ws.next() => {
                            let Some(Ok(Message::Text(text))) = message else { return };
                            let request: Value = serde_json::from_str(&text).unwrap();
                            let result = answer(&chain, &published, request["method"].as_str().unwrap(), &request["params"]);
                            format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, request["id"])
                        }
                        head = heads.recv() => {
                            let Ok(n) = head else { return };
                            format!(r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0x1","result":{}}}}}"#, chain.headers[n])
                        }
                    };
                    if ws.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn answer(chain: &Chain, published: &AtomicUsize, method: &str, params: &Value) -> String {
    match method {
        "eth_chainId" => "\"0x1\"".into(),
        "eth_subscribe" => "\"0x1\"".into(),
        "eth_getBlockByNumber" => {
            let n = match params[0].as_str().unwrap() {
                "latest" => published.load(Ordering::SeqCst),
                hex => usize::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap(),
            };
            chain.headers[n].to_string()
        }
        "eth_getBlockByHash" => {
            chain.headers[chain.by_hash[params[0].as_str().unwrap()]].to_string()
        }
        "eth_getLogs" => {
            chain.logs[chain.by_hash[params[0]["blockHash"].as_str().unwrap()]].clone()
        }
        other => panic!("unexpected {other}"),
    }
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Instant, usize)>>>);

async fn receive(State(r): State<Received>, body: Bytes) -> &'static str {
    let at = Instant::now();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let n = usize::from_str_radix(
        v["log"]["blockNumber"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    r.0.lock().unwrap().push((at, n));
    "ok"
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn admin(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Vec<u8>,
    json_body: bool,
) -> Value {
    let request = http
        .post(format!("{base}{path}"))
        .bearer_auth("load")
        .body(body);
    let request = if json_body {
        request.header("content-type", "application/json")
    } else {
        request
    };
    let response = request.send().await.unwrap();
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn main() {
    let rate: f64 = env_or("PIPELINE_LOAD_RATE", 10_000.0);
    let repeat: usize = env_or("PIPELINE_LOAD_REPEAT", 6);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let chain = Arc::new(build_chain(repeat));
        let published = Arc::new(AtomicUsize::new(0));
        let (heads, _) = broadcast::channel(1024);
        let ws_url = serve_node(chain.clone(), published.clone(), heads.clone()).await;
        let received = Received::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new().route("/hook", post(receive)).with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = std::env::temp_dir().join(format!("pipeline-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("load.toml"), format!("[[chains]]\nname = \"replay\"\nchain_id = 1\nws_urls = [\"{ws_url}\"]\nstart_block = 1\n")).unwrap();
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let database_url = std::env::var("PIPELINE_LOAD_DATABASE_URL").unwrap_or_else(|_| format!("sqlite://{}/load.db", dir.display()));
        let mut host = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["serve", "--config", dir.join("load.toml").to_str().unwrap()])
            .current_dir(&dir)
            .env("DATABASE_URL", &database_url)
            .env("PIPELINE_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("PIPELINE_METRICS_ADDR", "127.0.0.1:0")
            .env("PIPELINE_ADMIN_TOKEN", "load")
            .env("PIPELINE_DELIVERY_ALLOWED_CIDRS", "127.0.0.0/8")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{admin_port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wasm = std::fs::read(workspace().join("target/wasm32-unknown-unknown/release/erc20_transfers.wasm")).unwrap();
        let plugin = admin(&http, &base, "/v1/plugins?name=erc20", wasm, false).await;
        let endpoint = admin(&http, &base, "/v1/endpoints", json!({"url": hook}).to_string().into_bytes(), true).await;
        for body in [
            json!({"endpoint_id": endpoint["id"], "chain_id": 1}),
            json!({"endpoint_id": endpoint["id"], "chain_id": 1, "topics": [[TRANSFER_TOPIC]], "plugin_id": plugin["id"], "plugin_config": {"min_value": "0"}}),
        ] {
            let sub = admin(&http, &base, "/v1/subscriptions", body.to_string().into_bytes(), true).await;
            assert!(sub["id"].is_string(), "{sub}");
        }

        // Publish heads at the target rate, sampling the host's RSS.
        let expected = chain.n_events + chain.n_transfers;
        let n_blocks = chain.headers.len() - 1;
        let per_block = Duration::from_secs_f64(chain.n_events as f64 / rate / n_blocks as f64);
        let mut published_at = vec![Instant::now(); n_blocks + 1];
        let mut rss = Vec::new();
        let started = Instant::now();
        for (n, at) in published_at.iter_mut().enumerate().skip(1) {
            let due = started + per_block * n as u32;
            tokio::time::sleep_until(due.into()).await;
            *at = Instant::now();
            published.store(n, Ordering::SeqCst);
            let _ = heads.send(n);
            if n % 10 == 0 {
                rss.push(rss_mb(host.id()));
            }
        }
        let publish_seconds = started.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(600);
        while received.0.lock().unwrap().len() < expected && Instant::now() < deadline {
            rss.push(rss_mb(host.id()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let total_seconds = started.elapsed().as_secs_f64();
        let got = received.0.lock().unwrap().clone();
        let mut latency: Vec<f64> = got.iter().map(|(at, n)| at.duration_since(published_at[*n]).as_secs_f64() * 1e3).collect();
        latency.sort_by(f64::total_cmp);
        let pct = |p: f64| latency.get(((latency.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
        let mut sorted_rss = rss.clone();
        sorted_rss.sort_by(f64::total_cmp);
        let _ = Command::new("kill").arg(host.id().to_string()).status();
        let _ = host.wait();
        let report = json!({
            "store": if database_url.starts_with("postgres") { "postgres" } else { "sqlite" },
            "target_events_per_s": rate, "events": chain.n_events, "blocks": n_blocks,
            "webhooks_expected": expected, "webhooks_received": got.len(),
            "publish_seconds": publish_seconds, "total_seconds": total_seconds,
            "events_per_s_sustained": chain.n_events as f64 / total_seconds,
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": latency.last().copied().unwrap_or(0.0)},
            "host_rss_mb": {"median": sorted_rss.get(sorted_rss.len() / 2).copied().unwrap_or(0.0), "peak": sorted_rss.last().copied().unwrap_or(0.0)},
        });
        let text = serde_json::to_string_pretty(&report).unwrap();
        println!("{text}");
        std::fs::write(workspace().join("target/bench-load.json"), text).unwrap();
    });
}
