//! JSON-RPC over one WebSocket: requests with a timeout, and the `newHeads` subscription.
//! Ingest processes heads one at a time, so requests are sequential: while waiting for a response,
//! notifications that arrive are queued rather than handled by another task.

use std::collections::VecDeque;
use std::time::Duration;

use alloy_primitives::{B256, U64};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// Heads kept while a request is answered; older ones are dropped.
const MAX_QUEUED_HEADS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connect to {url} failed: {reason}")]
    Connect { url: String, reason: String },
    #[error("{0} timed out")]
    Timeout(String),
    #[error("websocket error: {0}")]
    Socket(String),
    #[error("connection closed by the node")]
    Closed,
    #[error("node returned error for {method}: {message}")]
    Node { method: String, message: String },
    #[error("unexpected answer to {method}: {reason}")]
    BadResponse { method: String, reason: String },
}

/// A block header, as much of it as ingest needs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    #[serde(with = "u64_hex")]
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    #[serde(with = "u64_hex", default)]
    pub timestamp: u64,
}

mod u64_hex {
    use super::U64;
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(U64::deserialize(d)?.to())
    }
}

#[derive(Deserialize)]
struct Incoming {
    id: Option<Value>,
    result: Option<Box<RawValue>>,
    error: Option<Value>,
    params: Option<Notification>,
}

#[derive(Deserialize)]
struct Notification {
    result: Box<RawValue>,
}

pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    heads: VecDeque<Header>,
    timeout: Duration,
}

impl Connection {
    pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, RpcError> {
        let connect = connect_async(url);
        let (ws, _) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| RpcError::Timeout(format!("connect to {url}")))?
            .map_err(|e| RpcError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Connection {
            ws,
            next_id: 1,
            heads: VecDeque::new(),
            timeout,
        })
    }

    /// Sends one request and waits (bounded) for its answer.
    pub async fn request<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let send = self.ws.send(Message::text(body.to_string()));
        tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| RpcError::Timeout(method.to_string()))?
            .map_err(|e| RpcError::Socket(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let incoming = tokio::time::timeout_at(deadline, self.read())
                .await
                .map_err(|_| RpcError::Timeout(method.to_string()))??;
            if incoming.id.as_ref().and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = incoming.error {
                return Err(RpcError::Node {
                    method: method.to_string(),
                    message: error.to_string(),
                });
            }
            let raw = incoming.result.ok_or_else(|| bad(method, "no result"))?;
            return serde_json::from_str(raw.get()).map_err(|e| bad(method, &e.to_string()));
        }
    }

    /// Subscribes to new heads; they are then read with [`Connection::next_head`].
    pub async fn subscribe_new_heads(&mut self) -> Result<(), RpcError> {
        let _id: String = self.request("eth_subscribe", json!(["newHeads"])).await?;
        Ok(())
    }

    /// The next head, waiting at most `wait` (a silent node is as bad as a dead one).
    pub async fn next_head(&mut self, wait: Duration) -> Result<Header, RpcError> {
        if let Some(head) = self.heads.pop_front() {
            return Ok(head);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::time::timeout_at(deadline, self.read())
                .await
                .map_err(|_| RpcError::Timeout("waiting for a new head".into()))??;
            if let Some(head) = self.heads.pop_front() {
                return Ok(head);
            }
        }
    }

    /// Reads one JSON-RPC message, queueing head notifications.
    async fn read(&mut self) -> Result<Incoming, RpcError> {
        loop {
            let message = match self.ws.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(RpcError::Socket(e.to_string())),
                None => return Err(RpcError::Closed),
            };
            let text = match message {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                Message::Close(_) => return Err(RpcError::Closed),
                _ => continue,
            };
            let incoming: Incoming = serde_json::from_str(&text)
                .map_err(|e| bad("message", &format!("{e}: {}", truncate(&text))))?;
            if let Some(notification) = &incoming.params {
                let head: Header = serde_json::from_str(notification.result.get())
                    .map_err(|e| bad("newHeads", &e.to_string()))?;
                // Only the newest heads matter: gap filling fetches whatever was skipped.
                if self.heads.len() == MAX_QUEUED_HEADS {
                    self.heads.pop_front();
                }
                self.heads.push_back(head);
            }
            return Ok(incoming);
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

fn bad(method: &str, reason: &str) -> RpcError {
    RpcError::BadResponse {
        method: method.to_string(),
        reason: reason.to_string(),
    }
}

fn truncate(text: &str) -> &str {
    let end = text
        .char_indices()
        .nth(200)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    &text[..end]
}
