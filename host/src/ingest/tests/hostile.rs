//! A hostile node first in a chain's URL list, a healthy one second: whatever the hostile one sends
//! (a frame claiming 4 GiB, a message flooded in fragments, an `eth_getLogs` answer over the byte
//! budget, logs of another block, numbers that do not fit), ingest refuses it with a clear error,
//! fails over and goes on from the healthy node without a gap; another chain is unaffected; the
//! chain's health says why, without the URL's secret. Default limits (32 MiB messages, 16 MiB
//! `eth_getLogs` answers): the node streams its floods, so the test's own memory stays small and
//! the printed peak RSS is the host's side.

use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;

use super::*;

/// In the hostile node's URL: must never show in health, errors or logs.
const SECRET: &str = "SECRETKEY42";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Hostility {
    /// Answers `eth_getLogs` with a text frame whose header claims 4 GiB, then streams zeros.
    HugeFrame,
    /// Answers `eth_getLogs` with 1 MiB fragments of a message that never ends.
    EndlessFragments,
    /// A well-formed `eth_getLogs` answer of 20 MiB: over the 16 MiB budget, within 32 MiB.
    HugeLogs,
    /// The block's log says it is in the next block.
    WrongNumber,
    /// The block's log names another block hash.
    WrongHash,
    /// The log's `blockNumber` is `0xffffffffffffffffff` (72 bits).
    LogNumberOverflow,
    /// Headers' `number` is `0xffffffffffffffffff`.
    HeaderNumberOverflow,
}

type Ws = WebSocketStream<tokio::net::TcpStream>;

/// Serves `chain` like `fake_node`, but answers as `hostility` says. Returns a URL whose path and
/// query carry a secret, as a provider's URL would.
async fn hostile_node(chain: Arc<Mutex<FakeChain>>, hostility: Hostility) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/v3/{SECRET}?apikey={SECRET}",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let chain = chain.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    let request: Value = serde_json::from_str(&text).unwrap();
                    let method = request["method"].as_str().unwrap().to_string();
                    let mut result = chain.lock().unwrap().answer(&method, &request["params"]);
                    let id = &request["id"];
                    match (method.as_str(), hostility) {
                        ("eth_getLogs", Hostility::HugeFrame) => return huge_frame(&mut ws).await,
                        ("eth_getLogs", Hostility::EndlessFragments) => {
                            return endless_fragments(&mut ws).await;
                        }
                        ("eth_getLogs", Hostility::HugeLogs) => {
                            huge_logs(&mut ws, id, &result[0]).await;
                            continue;
                        }
                        ("eth_getLogs", Hostility::WrongNumber) => {
                            let n = result[0]["blockNumber"].as_str().unwrap();
                            let n = u64::from_str_radix(&n[2..], 16).unwrap();
                            result[0]["blockNumber"] = json!(format!("{:#x}", n + 1));
                        }
                        ("eth_getLogs", Hostility::WrongHash) => {
                            result[0]["blockHash"] = json!(B256::repeat_byte(0x99));
                        }
                        ("eth_getLogs", Hostility::LogNumberOverflow) => {
                            result[0]["blockNumber"] = json!("0xffffffffffffffffff");
                        }
                        ("eth_getBlockByNumber", Hostility::HeaderNumberOverflow) => {
                            result["number"] = json!("0xffffffffffffffffff");
                        }
                        _ => {}
                    }
                    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
                    if ws.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// An unmasked server frame header (RFC 6455 §5.2).
fn frame_header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 | opcode } else { opcode }];
    match len {
        0..=125 => header.push(len as u8),
        126..=0xffff => {
            header.push(126);
            header.extend((len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend(len.to_be_bytes());
        }
    }
    header
}

/// Writes `total` bytes of `byte` in 64 KiB chunks; stops when the host hangs up.
async fn stream_bytes(ws: &mut Ws, byte: u8, total: usize) -> bool {
    let chunk = vec![byte; 64 << 10];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        if ws.get_mut().write_all(&chunk[..n]).await.is_err() {
            return false;
        }
        left -= n;
    }
    true
}

async fn huge_frame(ws: &mut Ws) {
    let _ = ws.flush().await;
    let header = frame_header(0x1, true, 4 << 30);
    if ws.get_mut().write_all(&header).await.is_ok() {
        // Far less than claimed: the host must hang up after the header, not wait to buffer it.
        stream_bytes(ws, b'0', 64 << 20).await;
    }
}

async fn endless_fragments(ws: &mut Ws) {
    let _ = ws.flush().await;
    for i in 0..64 {
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        let header = frame_header(opcode, false, 1 << 20);
        if ws.get_mut().write_all(&header).await.is_err() || !stream_bytes(ws, b'a', 1 << 20).await
        {
            return;
        }
    }
}

/// A valid answer: `log` repeated to 20 MiB, streamed in one frame.
async fn huge_logs(ws: &mut Ws, id: &Value, log: &Value) {
    let _ = ws.flush().await;
    let prefix = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":["#);
    let item = log.to_string();
    let copies = (20 << 20) / (item.len() + 1) + 1;
    let len = prefix.len() + copies * item.len() + (copies - 1) + 2;
    let socket = ws.get_mut();
    let mut body = frame_header(0x1, true, len as u64);
    body.extend(prefix.as_bytes());
    let _ = socket.write_all(&body).await;
    for i in 0..copies {
        let separator = if i == 0 { "" } else { "," };
        if socket
            .write_all(format!("{separator}{item}").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = socket.write_all(b"]}").await;
}

/// Peak resident memory of this process (the host's ingest and the scripted nodes), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn chain_of_blocks_0_and_1() -> Arc<Mutex<FakeChain>> {
    let chain = Arc::new(Mutex::new(FakeChain::default()));
    {
        let mut c = chain.lock().unwrap();
        c.set(0, 0x10);
        c.set(1, 0x11);
    }
    chain
}

/// Mines blocks 2 and 3 and announces 3 on `push`.
fn mine_2_and_3(chain: &Mutex<FakeChain>, push: &broadcast::Sender<String>) {
    let head = {
        let mut c = chain.lock().unwrap();
        c.set(2, 0x12);
        let head = c.set(3, 0x13);
        head_notification(&c, &head)
    };
    let _ = push.send(head);
}

/// Blocks 1, 2, 3 of `chain`, in order, each with its one log and nothing else.
async fn expect_blocks_1_to_3(rx: &mut mpsc::Receiver<BlockLogs>, chain: &Mutex<FakeChain>) {
    for n in 1..=3u64 {
        let block = next_block(rx).await;
        let hash = chain.lock().unwrap().canonical[n as usize];
        assert_eq!(
            (block.number, block.hash, block.kind),
            (n, hash, BlockKind::Canonical)
        );
        assert_eq!(block.logs.len(), 1, "block {n}");
        assert_eq!(
            (block.logs[0].block_number, block.logs[0].block_hash),
            (n, hash)
        );
    }
}

async fn refused_then_failed_over(hostility: Hostility, reason: &str) {
    let chain = chain_of_blocks_0_and_1();
    let hostile = hostile_node(chain.clone(), hostility).await;
    let (healthy, push) = fake_node(chain.clone()).await;
    // Another chain on its own healthy node, ingested at the same time.
    let other_chain = chain_of_blocks_0_and_1();
    let (other_url, other_push) = fake_node(other_chain.clone()).await;
    let mut other = start_chain(vec![other_url], 1024).await;

    let mut a = start_chain(vec![hostile.clone(), healthy], 1024).await;
    // Block 1 comes from the healthy node: nothing of the hostile answer was delivered.
    assert_eq!(next_block(&mut a.blocks).await.number, 1);
    mine_2_and_3(&chain, &push);
    for n in 2..=3 {
        assert_eq!(
            next_block(&mut a.blocks).await.number,
            n,
            "no gap after fail-over"
        );
    }
    let detail = a
        .health
        .readiness()
        .expect("ready on the healthy URL")
        .unwrap_or_default();
    let shown = crate::redact::url(&hostile);
    assert!(
        detail.contains(&format!("last error {shown}: ")),
        "{detail}"
    );
    assert!(detail.contains(reason), "{hostility:?}: {detail}");
    assert!(!detail.contains(SECRET), "{detail}");

    mine_2_and_3(&other_chain, &other_push);
    expect_blocks_1_to_3(&mut other.blocks, &other_chain).await;
    assert_eq!(
        other.health.last_error(),
        None,
        "the other chain never failed"
    );
    eprintln!(
        "{hostility:?}: refused with \"{detail}\"; peak RSS so far {} MiB",
        peak_rss_mib()
    );
    a.shutdown.cancel();
    other.shutdown.cancel();
}

#[tokio::test]
async fn a_frame_over_the_message_limit_fails_over() {
    let limit = "over the limit of 33554432 bytes (ingest.max_message_mib)";
    refused_then_failed_over(Hostility::HugeFrame, limit).await;
}

#[tokio::test]
async fn a_message_flooded_in_fragments_fails_over() {
    let limit = "over the limit of 33554432 bytes (ingest.max_message_mib)";
    refused_then_failed_over(Hostility::EndlessFragments, limit).await;
}

#[tokio::test]
async fn an_eth_get_logs_answer_over_the_budget_fails_over() {
    let budget = "over the budget of 16777216 bytes (ingest.max_logs_mib)";
    refused_then_failed_over(Hostility::HugeLogs, budget).await;
}

#[tokio::test]
async fn a_log_of_another_block_number_fails_over() {
    let reason = "log 0 names block number 2, the header 1";
    refused_then_failed_over(Hostility::WrongNumber, reason).await;
}

#[tokio::test]
async fn a_log_of_another_block_hash_fails_over() {
    refused_then_failed_over(Hostility::WrongHash, "log 0 names block hash").await;
}

#[tokio::test]
async fn a_log_number_over_64_bits_fails_over() {
    let reason = "node sent a malformed log for block 1";
    refused_then_failed_over(Hostility::LogNumberOverflow, reason).await;
}

#[tokio::test]
async fn a_header_number_over_64_bits_fails_over() {
    let reason = "unexpected answer to eth_getBlockByNumber";
    refused_then_failed_over(Hostility::HeaderNumberOverflow, reason).await;
}

#[tokio::test]
async fn with_only_a_hostile_node_the_chain_is_not_ready_and_says_why_without_the_secret() {
    let chain = chain_of_blocks_0_and_1();
    let hostile = hostile_node(chain.clone(), Hostility::WrongHash).await;
    let a = start_chain(vec![hostile.clone()], 1024).await;
    let why = async {
        loop {
            if let Err(why) = a.health.readiness()
                && why.contains("names block hash")
            {
                return why;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let why = tokio::time::timeout(Duration::from_secs(10), why)
        .await
        .expect("a reason within 10 s");
    let shown = crate::redact::url(&hostile);
    assert!(
        why.starts_with(&format!(
            "chain 31337 not connected: {shown}: node sent a malformed log"
        )),
        "{why}"
    );
    assert!(!why.contains(SECRET), "{why}");
    a.shutdown.cancel();
}
