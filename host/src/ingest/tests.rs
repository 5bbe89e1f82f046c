//! Test module: compiled only under #[cfg(test)], from its parent module.
//! Ingest against a scripted WebSocket node on loopback: anvil never reorgs on its own or sends
//! garbage, so these cases need a node whose chain the test rewrites.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::B256;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::event::BlockKind;

mod hostile;
mod props;
mod state;

/// A chain the test edits: blocks by hash, the canonical hash per height.
#[derive(Default)]
struct FakeChain {
    blocks: HashMap<B256, (u64, B256)>,
    canonical: Vec<B256>,
    /// A range `eth_getLogs` with more logs than this is refused, as providers do.
    max_range_logs: Option<usize>,
    /// Range requests served (fromBlock, toBlock).
    ranges: Vec<(u64, u64)>,
    /// The parameters of every `eth_getLogs {blockHash}` asked.
    block_requests: Vec<Value>,
}

impl FakeChain {
    /// Makes `tag` the block at `number` on top of the current canonical parent.
    fn set(&mut self, number: u64, tag: u8) -> B256 {
        let hash = B256::repeat_byte(tag);
        let parent = if number == 0 {
            B256::ZERO
        } else {
            self.canonical[number as usize - 1]
        };
        self.blocks.insert(hash, (number, parent));
        self.canonical.truncate(number as usize);
        self.canonical.push(hash);
        hash
    }

    fn header(&self, hash: &B256) -> Value {
        let (number, parent) = self.blocks[hash];
        json!({"number": format!("{number:#x}"), "hash": hash, "parentHash": parent, "timestamp": "0x0"})
    }

    /// The one log of block `hash`, its emitter tagged by the hash's first byte.
    fn log_of(&self, hash: &B256) -> Value {
        let (number, _) = self.blocks[hash];
        json!({"address": format!("0x{:040x}", hash.0[0]), "topics": [], "data": "0x",
               "blockNumber": format!("{number:#x}"), "blockHash": hash,
               "transactionHash": B256::repeat_byte(0xee), "transactionIndex": "0x0",
               "logIndex": "0x0", "removed": false})
    }

    /// `eth_getLogs {fromBlock, toBlock}` over the canonical chain, or the refusal a provider gives.
    fn range(&mut self, filter: &Value) -> Value {
        let number = |key: &str| {
            u64::from_str_radix(filter[key].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        let (from, to) = (number("fromBlock"), number("toBlock"));
        let logs: Vec<Value> = (from..=to)
            .filter_map(|n| self.canonical.get(n as usize))
            .map(|hash| self.log_of(hash))
            .collect();
        if self.max_range_logs.is_some_and(|cap| logs.len() > cap) {
            return json!({"__rpc_error": {"code": -32005, "message": "query returned more than the limit of results"}});
        }
        self.ranges.push((from, to));
        Value::Array(logs)
    }

    fn answer(&mut self, method: &str, params: &Value) -> Value {
        match method {
            "eth_chainId" => json!("0x7a69"),
            "eth_subscribe" => json!("0xs1"),
            "eth_getBlockByHash" => {
                let hash: B256 = params[0].as_str().unwrap().parse().unwrap();
                self.header(&hash)
            }
            "eth_getBlockByNumber" => {
                let hash = match params[0].as_str().unwrap() {
                    "latest" => *self.canonical.last().unwrap(),
                    n => {
                        self.canonical
                            [u64::from_str_radix(n.trim_start_matches("0x"), 16).unwrap() as usize]
                    }
                };
                self.header(&hash)
            }
            "eth_getLogs" => match params[0]["blockHash"].as_str() {
                // One log per block, unless an `address` list leaves it out.
                Some(hash) => {
                    self.block_requests.push(params[0].clone());
                    let log = self.log_of(&hash.parse().unwrap());
                    match params[0]["address"].as_array() {
                        Some(wanted) if !wanted.contains(&log["address"]) => json!([]),
                        _ => json!([log]),
                    }
                }
                None => self.range(&params[0]),
            },
            other => panic!("unexpected method {other}"),
        }
    }
}

/// Serves the fake chain; `push` sends a raw text frame to every connection (heads or garbage).
async fn fake_node(chain: Arc<Mutex<FakeChain>>) -> (String, broadcast::Sender<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (push, _) = broadcast::channel::<String>(16);
    let push_for_server = push.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let chain = chain.clone();
            let mut pushed = push_for_server.subscribe();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                loop {
                    tokio::select! {
                        message = ws.next() => {
                            let Some(Ok(Message::Text(text))) = message else { return };
                            let request: Value = serde_json::from_str(&text).unwrap();
                            let result = chain.lock().unwrap().answer(request["method"].as_str().unwrap(), &request["params"]);
                            let reply = match result.get("__rpc_error") {
                                Some(error) => json!({"jsonrpc": "2.0", "id": request["id"], "error": error}),
                                None => json!({"jsonrpc": "2.0", "id": request["id"], "result": result}),
                            };
                            if ws.send(Message::text(reply.to_string())).await.is_err() { return }
                        }
                        frame = pushed.recv() => {
                            let Ok(frame) = frame else { return };
                            if ws.send(Message::text(frame)).await.is_err() { return }
                        }
                    }
                }
            });
        }
    });
    (url, push)
}

fn head_notification(chain: &FakeChain, hash: &B256) -> String {
    json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": "0xs1", "result": chain.header(hash)}}).to_string()
}

async fn next_block(rx: &mut mpsc::Receiver<BlockLogs>) -> BlockLogs {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a block within 10 s")
        .expect("ingest running")
}

async fn start(url: String) -> (mpsc::Receiver<BlockLogs>, CancellationToken) {
    start_with_urls(vec![url]).await
}

async fn start_with_urls(ws_urls: Vec<String>) -> (mpsc::Receiver<BlockLogs>, CancellationToken) {
    start_with_budget(ws_urls, 1024).await
}

async fn start_with_budget(
    ws_urls: Vec<String>,
    budget_kib: u32,
) -> (mpsc::Receiver<BlockLogs>, CancellationToken) {
    let started = start_chain(ws_urls, budget_kib).await;
    (started.blocks, started.shutdown)
}

/// A running ingest task and what a test watches of it.
struct Started {
    blocks: mpsc::Receiver<BlockLogs>,
    shutdown: CancellationToken,
    health: Arc<ChainHealth>,
}

/// Ingests chain 31337 from `ws_urls` (from block 1) with the default node limits.
async fn start_chain(ws_urls: Vec<String>, budget_kib: u32) -> Started {
    start_filtered(ws_urls, budget_kib, Arc::new(|| Arc::new(LogFilter::any()))).await
}

/// The same, with the subscriptions' union given by `filter`.
async fn start_filtered(ws_urls: Vec<String>, budget_kib: u32, filter: FilterSource) -> Started {
    start_judging(ws_urls, budget_kib, filter, Arc::new(|_: &ChainLog| true)).await
}

/// As [`start_filtered`], with `relevant` saying which logs the subscriptions can match.
async fn start_judging(
    ws_urls: Vec<String>,
    budget_kib: u32,
    filter: FilterSource,
    relevant: Relevance,
) -> Started {
    let dir = std::env::temp_dir().join(format!("pipeline-ingest-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/i.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let config = ChainConfig {
        name: "fake".into(),
        chain_id: 31337,
        ws_urls,
        confirmations: 0,
        start_block: Some(1),
        stale_after_ms: None,
    };
    let (tx, rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let health = ChainHealth::new(&config);
    let task = ChainTask {
        health: health.clone(),
        chain: config,
        limits: crate::config::IngestConfig::default().limits(),
        relevant,
        filter,
    };
    tokio::spawn(run(
        task,
        store,
        Downstream::with_budget_kib(tx, budget_kib),
        Metrics::new().unwrap(),
        shutdown.clone(),
    ));
    Started {
        blocks: rx,
        shutdown,
        health,
    }
}

/// Blocks 0..=3, block n tagged `0x10 + n`.
fn chain_of_blocks_0_to_3() -> Arc<Mutex<FakeChain>> {
    let chain = Arc::new(Mutex::new(FakeChain::default()));
    {
        let mut c = chain.lock().unwrap();
        for n in 0..=3u8 {
            c.set(n as u64, 0x10 + n);
        }
    }
    chain
}

#[tokio::test]
async fn waits_for_room_in_the_in_flight_budget_before_sending_more() {
    let chain = chain_of_blocks_0_to_3();
    let (url, _push) = fake_node(chain.clone()).await;
    // Every block is charged at least 1 KiB (and at most the whole budget): a 1 KiB budget lets
    // one block through at a time.
    let (mut rx, shutdown) = start_with_budget(vec![url], 1).await;
    let first = next_block(&mut rx).await;
    assert_eq!(first.number, 1);
    let waited = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(
        waited.is_err(),
        "a second block while the first holds the whole budget"
    );
    drop(first);
    assert_eq!(next_block(&mut rx).await.number, 2);
    shutdown.cancel();
}

#[tokio::test]
async fn a_blocks_window_row_holds_only_its_relevant_logs() {
    // Block n's log comes from address 0x10 + n; only block 2's emitter is relevant.
    let chain = chain_of_blocks_0_to_3();
    let (url, _push) = fake_node(chain.clone()).await;
    let watched = format!("0x{:040x}", 0x12);
    let relevant = Arc::new(move |log: &ChainLog| format!("{:#x}", log.address) == watched);
    let any = Arc::new(|| Arc::new(LogFilter::any()));
    let mut started = start_judging(vec![url], 1 << 14, any, relevant).await;
    let mut rows = Vec::new();
    for n in 1..=3u64 {
        let block = next_block(&mut started.blocks).await;
        assert_eq!(
            (block.number, block.logs.len()),
            (n, 1),
            "every log is passed on"
        );
        let row = block.window_row.expect("a block near the head has its row");
        let text = row.block.logs.text().expect("readable").into_owned();
        let logs: Vec<Value> = serde_json::from_str(&text).unwrap();
        rows.push((n, logs.len()));
        if n == 2 {
            // Every log of the block is relevant: the row is the node's answer, compressed.
            assert_eq!(logs[0], chain.lock().unwrap().log_of(&block.hash));
        }
    }
    assert_eq!(rows, vec![(1, 0), (2, 1), (3, 0)]);
    started.shutdown.cancel();
}

#[tokio::test]
async fn a_block_asks_the_node_only_for_what_the_subscriptions_can_match() {
    let chain = chain_of_blocks_0_to_3();
    // Block n's log comes from address 0x10 + n; the subscriptions watch block 2's emitter only.
    let watched: alloy_primitives::Address = format!("0x{:040x}", 0x12).parse().unwrap();
    let union = LogFilter::union([(Some(&[watched][..]), None)]);
    let (url, _push) = fake_node(chain.clone()).await;
    let mut started = start_filtered(
        vec![url],
        1 << 14,
        Arc::new(move || Arc::new(union.clone())),
    )
    .await;
    let mut got = Vec::new();
    for _ in 1..=3u64 {
        let block = next_block(&mut started.blocks).await;
        got.push((block.number, block.logs.len()));
    }
    assert_eq!(
        got,
        vec![(1, 0), (2, 1), (3, 0)],
        "only block 2's log is asked for"
    );
    let asked = chain.lock().unwrap().block_requests.clone();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|p| p["address"] == json!([watched])),
        "{asked:?}"
    );
    started.shutdown.cancel();

    // No subscription on the chain: blocks pass without asking for logs at all.
    let chain = chain_of_blocks_0_to_3();
    let (url, _push) = fake_node(chain.clone()).await;
    let nothing = Arc::new(|| Arc::new(LogFilter::union([])));
    let mut started = start_filtered(vec![url], 1 << 14, nothing).await;
    for n in 1..=3u64 {
        let block = next_block(&mut started.blocks).await;
        assert_eq!((block.number, block.logs.len()), (n, 0));
    }
    assert!(chain.lock().unwrap().block_requests.is_empty());
    started.shutdown.cancel();
}

#[tokio::test]
async fn catches_up_then_withdraws_orphaned_logs_on_a_reorg() {
    let chain = chain_of_blocks_0_to_3();
    let (url, push) = fake_node(chain.clone()).await;
    let (mut rx, shutdown) = start(url).await;
    // start_block 1: blocks 1..=3 are caught up at once, without waiting for a head.
    for n in 1..=3u64 {
        let block = next_block(&mut rx).await;
        assert_eq!((block.number, block.kind), (n, BlockKind::Canonical));
        assert_eq!(block.logs.len(), 1);
    }
    // Reorg: 2 and 3 are replaced by 2', 3', 4'.
    let head = {
        let mut c = chain.lock().unwrap();
        c.set(2, 0x22);
        c.set(3, 0x23);
        let head = c.set(4, 0x24);
        head_notification(&c, &head)
    };
    push.send(head).unwrap();
    for orphan in [3u64, 2] {
        let block = next_block(&mut rx).await;
        assert_eq!((block.number, block.kind), (orphan, BlockKind::Orphaned));
        assert!(block.logs[0].removed);
        assert!(
            block.logs[0].raw.contains("\"removed\":true"),
            "{}",
            block.logs[0].raw
        );
        assert_eq!(block.hash, B256::repeat_byte(0x10 + orphan as u8));
    }
    for (n, tag) in [(2u64, 0x22u8), (3, 0x23), (4, 0x24)] {
        let block = next_block(&mut rx).await;
        assert_eq!(
            (block.number, block.hash, block.kind),
            (n, B256::repeat_byte(tag), BlockKind::Canonical)
        );
    }
    shutdown.cancel();
}

#[tokio::test]
async fn garbage_from_the_node_reconnects_and_loses_nothing() {
    let chain = Arc::new(Mutex::new(FakeChain::default()));
    {
        let mut c = chain.lock().unwrap();
        c.set(0, 0x10);
        c.set(1, 0x11);
    }
    let (url, push) = fake_node(chain.clone()).await;
    let (mut rx, shutdown) = start(url).await;
    assert_eq!(next_block(&mut rx).await.number, 1);
    push.send("this is not json {".into()).unwrap();
    // While the host reconnects, two blocks are mined; both arrive, in order, after it is back.
    let head = {
        let mut c = chain.lock().unwrap();
        c.set(2, 0x12);
        let head = c.set(3, 0x13);
        head_notification(&c, &head)
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = push.send(head);
    assert_eq!(next_block(&mut rx).await.number, 2);
    assert_eq!(next_block(&mut rx).await.number, 3);
    shutdown.cancel();
}

#[tokio::test]
async fn a_dead_first_url_fails_over_to_the_next() {
    let chain = Arc::new(Mutex::new(FakeChain::default()));
    {
        let mut c = chain.lock().unwrap();
        c.set(0, 0x10);
        c.set(1, 0x11);
    }
    let (url, _push) = fake_node(chain.clone()).await;
    // Nothing listens on the first URL (a port just freed).
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}", listener.local_addr().unwrap())
    };
    let (mut rx, shutdown) = start_with_urls(vec![dead, url]).await;
    assert_eq!(next_block(&mut rx).await.number, 1);
    shutdown.cancel();
}
