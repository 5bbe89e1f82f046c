//! One WebSocket connection to the dev node: JSON-RPC requests answered from the [`Chain`], and
//! `newHeads` notifications once the client subscribed.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::DevNode;

/// Requests are small; a client sending more is refused rather than buffered.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Like public providers: a range query matching more logs than this is refused, so a client must
/// split its range (what an adaptive backfill has to handle).
pub const MAX_RANGE_LOGS: usize = 10_000;
const SUBSCRIPTION_ID: &str = "0x1";

/// A JSON-RPC error: code and message.
struct RpcFailure(i64, String);

pub(super) async fn connection(
    node: Arc<DevNode>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_REQUEST_BYTES);
    config.max_frame_size = Some(MAX_REQUEST_BYTES);
    let mut ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(error) => {
            tracing::debug!(%peer, %error, "dev-node: websocket handshake failed");
            return;
        }
    };
    let mut heads = node.heads.subscribe();
    let mut subscribed = false;
    loop {
        let reply = tokio::select! {
            _ = shutdown.cancelled() => return,
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => answer(&node, &text, &mut subscribed),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => error_reply(&Value::Null, RpcFailure(-32700, "binary frames are not JSON-RPC".into())),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
            head = heads.recv() => match head {
                Ok(number) if subscribed => notification(&node, number),
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        if ws.send(Message::text(reply)).await.is_err() {
            return;
        }
    }
}

fn notification(node: &DevNode, number: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{SUBSCRIPTION_ID}","result":{}}}}}"#,
        node.chain.header_json(number)
    )
}

fn answer(node: &DevNode, text: &str, subscribed: &mut bool) -> String {
    let request: Value = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(e) => {
            return error_reply(
                &Value::Null,
                RpcFailure(-32700, format!("parse error: {e}")),
            );
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request["method"].as_str().unwrap_or_default();
    let params = &request["params"];
    let result = match method {
        "eth_subscribe" if params[0] == "newHeads" => {
            *subscribed = true;
            Ok(format!("\"{SUBSCRIPTION_ID}\""))
        }
        "eth_subscribe" => Err(RpcFailure(-32602, "only newHeads is served".into())),
        "eth_unsubscribe" => {
            *subscribed = false;
            Ok("true".into())
        }
        "eth_chainId" => Ok(format!("\"{:#x}\"", node.chain.spec().chain_id)),
        "net_version" => Ok(format!("\"{}\"", node.chain.spec().chain_id)),
        "eth_blockNumber" => Ok(format!("\"{:#x}\"", node.head())),
        "eth_getBlockByNumber" => block_by_number(node, &params[0]),
        "eth_getBlockByHash" => Ok(block_by_hash(node, &params[0])),
        "eth_getLogs" => logs(node, &params[0]),
        other => Err(RpcFailure(
            -32601,
            format!("method {other:?} is not served by the dev node"),
        )),
    };
    match result {
        Ok(result) => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#),
        Err(failure) => error_reply(&id, failure),
    }
}

fn error_reply(id: &Value, RpcFailure(code, message): RpcFailure) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// A block tag or number: `latest`, `earliest`, `pending`, `safe`, `finalized` or a quantity.
fn block_number(node: &DevNode, tag: &Value) -> Result<u64, RpcFailure> {
    match tag.as_str() {
        None | Some("latest" | "pending" | "safe" | "finalized") => Ok(node.head()),
        Some("earliest") => Ok(0),
        Some(quantity) => quantity
            .strip_prefix("0x")
            .and_then(|digits| u64::from_str_radix(digits, 16).ok())
            .ok_or_else(|| RpcFailure(-32602, format!("bad block number {quantity:?}"))),
    }
}

fn block_by_number(node: &DevNode, tag: &Value) -> Result<String, RpcFailure> {
    let number = block_number(node, tag)?;
    Ok(if number <= node.head() {
        node.chain.header_json(number)
    } else {
        "null".into()
    })
}

fn block_by_hash(node: &DevNode, hash: &Value) -> String {
    match hash.as_str().and_then(|h| node.chain.number_of(h)) {
        Some(number) if number <= node.head() => node.chain.header_json(number),
        _ => "null".into(),
    }
}

/// `eth_getLogs` by `blockHash`, or over `fromBlock..=toBlock`, filtered by `address` and `topics`.
fn logs(node: &DevNode, filter: &Value) -> Result<String, RpcFailure> {
    let wanted = GetLogsFilter::new(filter);
    let keep = |address: &str, topics: &[String]| wanted.keeps(address, topics);
    if let Some(hash) = filter["blockHash"].as_str() {
        return match node.chain.number_of(hash).filter(|n| *n <= node.head()) {
            Some(number) => Ok(format!(
                "[{}]",
                node.chain.logs_json(number, &keep).join(",")
            )),
            None => Err(RpcFailure(-32000, format!("unknown block {hash}"))),
        };
    }
    let head = node.head();
    let from = block_number(node, &filter["fromBlock"])?;
    let to = block_number(node, &filter["toBlock"])?.min(head);
    let mut out = Vec::new();
    for number in from..=to {
        out.extend(node.chain.logs_json(number, &keep));
        if out.len() > MAX_RANGE_LOGS {
            return Err(RpcFailure(
                -32005,
                format!("query returned more than {MAX_RANGE_LOGS} results"),
            ));
        }
    }
    Ok(format!("[{}]", out.join(",")))
}

/// An `eth_getLogs` filter's `address` and `topics`, read once per request into sets, as a node
/// does: a log is then checked with one lookup per field, not compared with every listed value
/// (the load harness's 100 token addresses share their first 38 digits). The node's answer to a
/// 100-log block filtered by 100 addresses, in a 1K-events/s run: median 321 → 288 µs (BENCHMARKS.md,
/// "Session of 2026-12-05 (sixth)"). Not the ingest side's `ingest::LogFilter`, which builds
/// requests.
struct GetLogsFilter {
    /// `None`: any address.
    addresses: Option<HashSet<String>>,
    /// Per position: `None` any topic, else the topics allowed there (empty: none).
    topics: Vec<Option<HashSet<String>>>,
}

impl GetLogsFilter {
    fn new(filter: &Value) -> GetLogsFilter {
        GetLogsFilter {
            // Like before: an `address` that is neither a string nor an array does not filter.
            addresses: match &filter["address"] {
                wanted @ (Value::String(_) | Value::Array(_)) => one_or_any(wanted),
                _ => None,
            },
            topics: filter["topics"]
                .as_array()
                .map(|positions| positions.iter().map(one_or_any).collect())
                .unwrap_or_default(),
        }
    }

    fn keeps(&self, address: &str, topics: &[String]) -> bool {
        let allowed = |set: &HashSet<String>, value: &str| {
            if value.bytes().any(|b| b.is_ascii_uppercase()) {
                set.contains(&value.to_ascii_lowercase())
            } else {
                set.contains(value)
            }
        };
        self.addresses
            .as_ref()
            .is_none_or(|set| allowed(set, address))
            && self.topics.iter().enumerate().all(|(i, position)| {
                position
                    .as_ref()
                    .is_none_or(|set| topics.get(i).is_some_and(|t| allowed(set, t)))
            })
    }
}

/// A filter field: `null` or absent matches anything; a string or an array of strings matches
/// those values (lower-cased); anything else matches nothing.
fn one_or_any(wanted: &Value) -> Option<HashSet<String>> {
    let lower = |v: &Value| v.as_str().map(str::to_ascii_lowercase);
    match wanted {
        Value::Null => None,
        Value::String(_) => Some(lower(wanted).into_iter().collect()),
        Value::Array(any) => Some(any.iter().filter_map(lower).collect()),
        _ => Some(HashSet::new()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::devnode::{Chain, ChainSpec, LogSource, chain::TRANSFER_TOPIC0};

    fn node() -> Arc<DevNode> {
        let spec = ChainSpec {
            chain_id: 31337,
            source: LogSource::Transfers,
            tokens: 2,
            logs_per_block: 4,
            block_seconds: 1,
            seed: 1,
        };
        let node = DevNode::new(Chain::new(spec, 0).unwrap());
        node.publish(3);
        node
    }

    fn call(node: &DevNode, method: &str, params: Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        serde_json::from_str(&answer(node, &request.to_string(), &mut false)).unwrap()
    }

    #[test]
    fn answers_heads_blocks_and_logs() {
        let node = node();
        assert_eq!(call(&node, "eth_chainId", json!([]))["result"], "0x7a69");
        assert_eq!(call(&node, "eth_blockNumber", json!([]))["result"], "0x3");
        let latest = call(&node, "eth_getBlockByNumber", json!(["latest", false]));
        assert_eq!(latest["result"]["number"], "0x3");
        assert!(call(&node, "eth_getBlockByNumber", json!(["0x4", false]))["result"].is_null());
        let hash = latest["result"]["hash"].clone();
        assert_eq!(
            call(&node, "eth_getBlockByHash", json!([hash, false]))["result"]["number"],
            "0x3"
        );
        let logs = call(&node, "eth_getLogs", json!([{"blockHash": hash}]));
        assert_eq!(logs["result"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn range_queries_filter_and_refuse_oversized_answers() {
        let node = node();
        let token = node.chain.token_addresses()[1].clone();
        let filter = json!([{"fromBlock": "0x1", "toBlock": "latest", "address": [token], "topics": [TRANSFER_TOPIC0]}]);
        let logs = call(&node, "eth_getLogs", filter)["result"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            logs.len(),
            6,
            "3 blocks × 4 logs, half of them on the second token"
        );
        assert!(logs.iter().all(|l| l["address"] == token.as_str()));
        let none = json!([{"fromBlock": "0x1", "toBlock": "0x3", "topics": [null, "0x01"]}]);
        assert_eq!(call(&node, "eth_getLogs", none)["result"], json!([]));
        node.publish(3_000);
        let all = call(
            &node,
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "toBlock": "latest"}]),
        );
        assert_eq!(all["error"]["code"], -32005, "{all}");
    }

    #[test]
    fn filters_ignore_case_and_a_malformed_topic_matches_nothing() {
        let node = node();
        let token = node.chain.token_addresses()[0].clone();
        let shouted = format!("0x{}", token[2..].to_ascii_uppercase());
        let count = |filter: Value| {
            call(&node, "eth_getLogs", json!([filter]))["result"]
                .as_array()
                .unwrap()
                .len()
        };
        let range = |extra: Value| {
            let mut filter = json!({"fromBlock": "0x1", "toBlock": "0x3"});
            filter
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            count(filter)
        };
        assert_eq!(range(json!({"address": shouted})), 6);
        assert_eq!(range(json!({"address": [token, shouted]})), 6);
        assert_eq!(range(json!({"address": 7})), 12, "not a filter: every log");
        assert_eq!(range(json!({"address": []})), 0);
        let topic = TRANSFER_TOPIC0.to_ascii_uppercase().replace("0X", "0x");
        assert_eq!(range(json!({"topics": [topic]})), 12);
        assert_eq!(range(json!({"topics": [7]})), 0);
    }

    #[test]
    fn unknown_methods_and_garbage_get_json_rpc_errors() {
        let node = node();
        assert_eq!(
            call(&node, "eth_sendTransaction", json!([]))["error"]["code"],
            -32601
        );
        let garbage: Value = serde_json::from_str(&answer(&node, "{nope", &mut false)).unwrap();
        assert_eq!(garbage["error"]["code"], -32700);
        let unknown = call(
            &node,
            "eth_getLogs",
            json!([{"blockHash": format!("0x{:064x}", 1)}]),
        );
        assert_eq!(unknown["error"]["code"], -32000);
    }
}
