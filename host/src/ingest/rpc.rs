//! JSON-RPC over one WebSocket: requests with a timeout, and the `newHeads` subscription.
//! Ingest processes heads one at a time, so requests are sequential: while waiting for a response,
//! notifications that arrive are queued rather than handled by another task.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use alloy_primitives::{B256, U64};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use super::NodeLimits;
use crate::event::MAX_BLOCK_NUMBER;

/// Heads kept while a request is answered; older ones are dropped.
const MAX_QUEUED_HEADS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// `url` is redacted (scheme and host only) and `reason` scrubbed of it: this text reaches
    /// logs and the unauthenticated `/readyz`.
    #[error("connect to {url} failed: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "the node sent a message of {size} bytes, over the limit of {limit} bytes (ingest.max_message_mib)"
    )]
    MessageTooLarge { size: usize, limit: usize },
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
    #[serde(with = "block_number")]
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    #[serde(with = "u64_hex", default)]
    pub timestamp: u64,
}

mod u64_hex {
    use super::U64;
    use serde::{Deserialize, Deserializer};
    /// A quantity over 64 bits is an error (`U64` refuses it), never truncated.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(U64::deserialize(d)?.to())
    }
}

/// A block number the rest of the host can store (`i64`) and add confirmations to without overflow.
mod block_number {
    use super::MAX_BLOCK_NUMBER;
    use serde::Deserializer;
    use serde::de::Error;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let n = super::u64_hex::deserialize(d)?;
        if n > MAX_BLOCK_NUMBER {
            return Err(D::Error::custom(format!(
                "block number {n} is above {MAX_BLOCK_NUMBER}"
            )));
        }
        Ok(n)
    }
}

/// One message from the node: an answer (`id` with `result` or `error`) or a head notification,
/// parsed in place: `result` borrows from the message's text.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    pub id: Option<Value>,
    #[serde(borrow)]
    pub result: Option<&'a RawValue>,
    pub error: Option<Value>,
    #[serde(borrow)]
    params: Option<Notification<'a>>,
    /// The checked header of a `newHeads` notification.
    #[serde(skip)]
    pub head: Option<Header>,
}

#[derive(Debug, Deserialize)]
struct Notification<'a> {
    #[serde(borrow)]
    result: &'a RawValue,
}

/// Parses one message; a notification's header is checked (numbers in range) here. Pure.
pub fn parse_incoming(text: &str) -> Result<Incoming<'_>, RpcError> {
    let mut incoming: Incoming = serde_json::from_str(text)
        .map_err(|e| bad("message", &format!("{e}: {}", truncate(text))))?;
    if let Some(notification) = incoming.params.take() {
        let head: Header = serde_json::from_str(notification.result.get())
            .map_err(|e| bad("newHeads", &e.to_string()))?;
        incoming.head = Some(head);
    }
    Ok(incoming)
}

/// An answer's `result` as the node sent it, left inside the message that carried it: a block's
/// logs (megabytes at 100K events/s) are parsed from there, never copied out first.
#[derive(Debug)]
pub struct Answer {
    message: Utf8Bytes,
    result: Range<usize>,
}

impl Answer {
    /// The whole message the answer came in.
    pub fn message(&self) -> &Utf8Bytes {
        &self.message
    }

    /// The `result`'s JSON text.
    pub fn get(&self) -> &str {
        self.message
            .as_str()
            .get(self.result.clone())
            .unwrap_or("null")
    }
}

/// What [`Connection::read`] found in a message: its `id` and either its `error` or where its
/// `result` is in the text.
struct Reply {
    id: Option<u64>,
    error: Option<Value>,
    result: Option<Range<usize>>,
}

impl Reply {
    fn of(text: &str, incoming: &Incoming<'_>) -> Reply {
        // `result` borrows from `text`: its place there is the difference of the two addresses.
        let result = incoming.result.map(|raw| {
            let start = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
            start..start + raw.get().len()
        });
        Reply {
            id: incoming.id.as_ref().and_then(Value::as_u64),
            error: incoming.error.clone(),
            result,
        }
    }
}

/// A message over the limits gets its own error, naming the setting.
fn socket_error(error: WsError) -> RpcError {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            RpcError::MessageTooLarge {
                size,
                limit: max_size,
            }
        }
        other => RpcError::Socket(other.to_string()),
    }
}

pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    heads: VecDeque<Header>,
    timeout: Duration,
}

impl Connection {
    /// Connects with the frame and message limits of `limits`: tungstenite refuses a frame over the
    /// limit from its header, before reading it, and a fragmented message once its fragments pass it.
    pub async fn connect(
        url: &str,
        timeout: Duration,
        limits: &NodeLimits,
    ) -> Result<Connection, RpcError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(limits.max_message_bytes))
            .max_frame_size(Some(limits.max_message_bytes));
        let connect = connect_async_with_config(url, Some(config), false);
        let (ws, _) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| RpcError::Timeout(format!("connect to {}", crate::redact::url(url))))?
            .map_err(|e| RpcError::Connect {
                url: crate::redact::url(url),
                reason: crate::redact::scrub(&e.to_string(), url),
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
        let raw = self.request_raw(method, params).await?;
        serde_json::from_str(raw.get()).map_err(|e| bad(method, &e.to_string()))
    }

    /// Sends one request and returns its `result` as the node sent it: for a large answer (a
    /// block's logs), parsed once by the caller rather than copied and scanned again here.
    pub async fn request_raw(&mut self, method: &str, params: Value) -> Result<Answer, RpcError> {
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
            let (message, reply) = tokio::time::timeout_at(deadline, self.read())
                .await
                .map_err(|_| RpcError::Timeout(method.to_string()))??;
            if reply.id != Some(id) {
                continue;
            }
            if let Some(error) = reply.error {
                return Err(RpcError::Node {
                    method: method.to_string(),
                    message: truncate(&error.to_string()).to_string(),
                });
            }
            let result = reply.result.ok_or_else(|| bad(method, "no result"))?;
            return Ok(Answer { message, result });
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

    /// Reads one JSON-RPC message, queueing head notifications: the message's text and what it
    /// holds.
    async fn read(&mut self) -> Result<(Utf8Bytes, Reply), RpcError> {
        loop {
            let text = match self.ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(bytes))) => {
                    Utf8Bytes::try_from(bytes).map_err(|e| bad("message", &e.to_string()))?
                }
                Some(Ok(Message::Close(_))) => return Err(RpcError::Closed),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(socket_error(e)),
                None => return Err(RpcError::Closed),
            };
            // Parsed in place: a message is not copied before its result is cut out of it.
            let incoming = parse_incoming(text.as_str())?;
            if let Some(head) = &incoming.head {
                // Only the newest heads matter: gap filling fetches whatever was skipped.
                if self.heads.len() == MAX_QUEUED_HEADS {
                    self.heads.pop_front();
                }
                self.heads.push_back(head.clone());
            }
            let reply = Reply::of(text.as_str(), &incoming);
            return Ok((text, reply));
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

/// The first 200 characters of a node's text quoted in an error.
fn truncate(text: &str) -> &str {
    clip(text, 200)
}

/// The first `max` characters: what is logged and shown on `/readyz` stays short whatever the
/// node sent.
pub(super) fn clip(text: &str, max: usize) -> &str {
    let end = text
        .char_indices()
        .nth(max)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    &text[..end]
}
