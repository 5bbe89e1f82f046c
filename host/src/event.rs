//! The values passed between pipeline stages: logs as received, the blocks that carry them, batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use alloy_primitives::{Address, B256, Bytes, U64};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The highest block number accepted from a node: 2^53 − 1, the largest integer every JSON reader
/// (a webhook receiver in JavaScript) holds exactly. Far above any chain (at 10 blocks/s, 28 million
/// years), and with it the host's `i64` block columns and `number + confirmations` cannot overflow.
pub const MAX_BLOCK_NUMBER: u64 = (1 << 53) - 1;

/// One log as the node sent it: parsed fields for matching and the ABI, and the exact JSON-RPC object
/// for the webhook body.
#[derive(Debug, Clone)]
pub struct ChainLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub block_number: u64,
    pub block_hash: B256,
    pub transaction_hash: B256,
    pub transaction_index: u64,
    pub log_index: u64,
    pub removed: bool,
    /// The log object exactly as received (with `removed` rewritten for a reorged-out log).
    pub raw: LogText,
}

/// A log object's JSON text: a slice of the node's answer it arrived in, shared with the block's
/// other logs rather than copied out (a block's logs are megabytes at 100K events/s), or text of
/// its own.
#[derive(Clone, PartialEq, Eq)]
pub struct LogText(Utf8Bytes);

impl LogText {
    /// `part` of the text `whole`, sharing `whole`'s memory; `None` when `part` does not lie
    /// within `whole`.
    pub fn shared(whole: &Utf8Bytes, part: &str) -> Option<LogText> {
        let start = (part.as_ptr() as usize).checked_sub(whole.as_str().as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        let bytes: &bytes::Bytes = whole.as_ref();
        if end > bytes.len() {
            return None;
        }
        Utf8Bytes::try_from(bytes.slice(start..end))
            .ok()
            .map(LogText)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::ops::Deref for LogText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for LogText {
    fn from(text: &str) -> LogText {
        LogText(Utf8Bytes::from(text))
    }
}

impl From<String> for LogText {
    fn from(text: String) -> LogText {
        LogText(Utf8Bytes::from(text))
    }
}

impl std::fmt::Display for LogText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for LogText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcLog {
    address: Address,
    topics: Vec<B256>,
    data: Bytes,
    block_number: U64,
    block_hash: B256,
    transaction_hash: B256,
    transaction_index: U64,
    log_index: U64,
    #[serde(default)]
    removed: bool,
}

/// Why a JSON-RPC log could not be used.
#[derive(Debug, thiserror::Error)]
#[error("malformed log: {0}")]
pub struct MalformedLog(String);

impl ChainLog {
    /// Parses one JSON-RPC log object, keeping a copy of its exact text.
    pub fn from_raw(raw: &RawValue) -> Result<ChainLog, MalformedLog> {
        Self::from_json(raw.get())
    }

    pub fn from_json(text: &str) -> Result<ChainLog, MalformedLog> {
        Self::parse(text, LogText::from(text.trim()))
    }

    /// Parses one log object of the message `whole`, its text shared with `whole` (see
    /// [`LogText::shared`]); copied when `raw` is not part of `whole`.
    pub fn from_shared(whole: &Utf8Bytes, raw: &RawValue) -> Result<ChainLog, MalformedLog> {
        let text = raw.get().trim();
        let shared = LogText::shared(whole, text).unwrap_or_else(|| LogText::from(text));
        Self::parse(text, shared)
    }

    /// The same log with its text in memory of its own, so it no longer holds the message
    /// it arrived in.
    pub fn detached(&self) -> ChainLog {
        ChainLog {
            raw: LogText::from(self.raw.as_str()),
            ..self.clone()
        }
    }

    fn parse(text: &str, raw: LogText) -> Result<ChainLog, MalformedLog> {
        let log: RpcLog = serde_json::from_str(text).map_err(|e| MalformedLog(e.to_string()))?;
        if log.topics.len() > 4 {
            return Err(MalformedLog(format!(
                "{} topics (at most 4)",
                log.topics.len()
            )));
        }
        let block_number = log.block_number.to::<u64>();
        if block_number > MAX_BLOCK_NUMBER {
            return Err(MalformedLog(format!(
                "blockNumber {block_number} is above {MAX_BLOCK_NUMBER}"
            )));
        }
        Ok(ChainLog {
            address: log.address,
            topics: log.topics,
            data: log.data,
            block_number,
            block_hash: log.block_hash,
            transaction_hash: log.transaction_hash,
            transaction_index: index(log.transaction_index, "transactionIndex")?,
            log_index: index(log.log_index, "logIndex")?,
            removed: log.removed,
            raw,
        })
    }

    /// About how much memory the log holds: its JSON text, about as much again parsed (topics,
    /// data, fields) and its `Arc`. What the in-flight budget and the reorg window count.
    pub fn memory_bytes(&self) -> usize {
        2 * self.raw.len() + 128
    }

    /// The same log marked as reorged out, with `removed: true` in its JSON too.
    pub fn as_removed(&self) -> ChainLog {
        let raw =
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&self.raw) {
                Ok(mut object) => {
                    object.insert("removed".into(), serde_json::Value::Bool(true));
                    serde_json::Value::Object(object).to_string()
                }
                Err(_) => self.raw.to_string(),
            };
        ChainLog {
            removed: true,
            raw: LogText::from(raw),
            ..self.clone()
        }
    }

    pub fn topic0(&self) -> Option<&B256> {
        self.topics.first()
    }
}

/// A position within a block: the plugin ABI carries it as `u32`, so a larger one is refused here
/// rather than truncated there.
fn index(value: U64, field: &str) -> Result<u64, MalformedLog> {
    let n = value.to::<u64>();
    if n > u64::from(u32::MAX) {
        return Err(MalformedLog(format!("{field} {n} is above {}", u32::MAX)));
    }
    Ok(n)
}

/// Whether a block's logs are new or are being withdrawn by a reorg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Canonical,
    /// The block was reorged out: its logs go out as `log.removed`.
    Orphaned,
}

/// The unit ingest emits: all the logs of one block, never split across batches, so the cursor
/// only ever names a block whose logs are all durable.
#[derive(Debug, Clone)]
pub struct BlockLogs {
    pub chain_id: u64,
    pub number: u64,
    pub hash: B256,
    pub kind: BlockKind,
    pub logs: Vec<Arc<ChainLog>>,
    /// When ingest received the block (start of the end-to-end latency).
    pub received_at: Instant,
    /// The block's share of the in-flight memory budget, returned when the block is dropped.
    pub in_flight: InFlight,
    /// The block's row of the stored reorg window, for a block near the head: written in the
    /// same transaction as the block's deliveries, so in or before the write of the cursor that
    /// names it. `None` for a block far below the head in a catch-up, and for orphaned logs.
    pub window_row: Option<WindowRow>,
}

/// A block's `chain_blocks` row on its way to the batch write, and the flag that write sets
/// once it has committed — until then ingest's reorg window keeps the block's logs in memory.
#[derive(Debug, Clone)]
pub struct WindowRow {
    pub block: crate::store::StoredBlock,
    pub written: Written,
}

/// Set once the write holding a block's `chain_blocks` row has committed (a shared flag: ingest
/// holds one end, the batch write's owner the other).
#[derive(Debug, Clone, Default)]
pub struct Written(Arc<AtomicBool>);

impl Written {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Memory a block holds on its way from ingest to the commit of its batch, as permits of a byte budget
/// (KiB); dropping it returns them. Blocks made outside ingest (tests, benches) hold none, and
/// neither does a clone: the original's owner is charged.
#[derive(Debug, Default)]
pub struct InFlight(pub Option<tokio::sync::OwnedSemaphorePermit>);

impl Clone for InFlight {
    fn clone(&self) -> InFlight {
        InFlight(None)
    }
}

/// A memory budget in KiB permits: what a stage may hold before it waits for the next stage to
/// finish with earlier work. Ingest's blocks use one (`ingest::Downstream`), matched batches on
/// their way through the outbox another.
#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<tokio::sync::Semaphore>,
    kib: u32,
}

impl Budget {
    pub fn mib(mib: usize) -> Budget {
        Budget::kib(u32::try_from(mib.saturating_mul(1024)).unwrap_or(u32::MAX))
    }

    pub fn kib(kib: u32) -> Budget {
        Budget {
            permits: Arc::new(tokio::sync::Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Room for `bytes` if it is free now (see [`Budget::charge`]).
    pub fn try_charge(&self, bytes: usize) -> Option<InFlight> {
        let wanted = Budget::kib_for(bytes).min(self.kib);
        let permit = self.permits.clone().try_acquire_many_owned(wanted).ok()?;
        Some(InFlight(Some(permit)))
    }

    /// Waits for room for `bytes`, held until the returned value is dropped. More than the whole
    /// budget waits for all of it, so it still passes, alone.
    pub async fn charge(&self, bytes: usize) -> InFlight {
        let wanted = Budget::kib_for(bytes).min(self.kib);
        match self.permits.clone().acquire_many_owned(wanted).await {
            Ok(permit) => InFlight(Some(permit)),
            Err(_) => InFlight(None), // never closed
        }
    }

    /// The KiB `bytes` are charged: rounded up, at least 1.
    pub fn kib_for(bytes: usize) -> u32 {
        u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX)
    }

    /// KiB not held right now.
    pub fn available_kib(&self) -> usize {
        self.permits.available_permits()
    }
}

impl BlockLogs {
    pub fn event_type(&self) -> EventType {
        match self.kind {
            BlockKind::Canonical => EventType::Log,
            BlockKind::Orphaned => EventType::LogRemoved,
        }
    }
}

/// The webhook `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Log,
    LogRemoved,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Log => "log",
            EventType::LogRemoved => "log.removed",
        }
    }
}

/// What batch hands to the matcher.
#[derive(Debug, Default)]
pub struct Batch {
    pub blocks: Vec<BlockLogs>,
    pub n_events: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRANSFER: &str = r#"{"address":"0xf4eced2f682ce333f96f2d8966c613ded8fc95dd","topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef","0x0000000000000000000000001b63142628311395ceafeea5667e7c9026c862ca","0x000000000000000000000000ac4df82fe37ea2187bc8c011a23d743b4f39019a"],"data":"0x00000000000000000000000000000000000000000000000000000000000186a0","blockNumber":"0x76250","blockHash":"0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae","blockTimestamp":"0x5638c858","transactionHash":"0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#;

    /// Whether `text` lies inside `message`'s memory.
    fn inside(text: &str, message: &Utf8Bytes) -> bool {
        let (start, end) = (
            message.as_ptr() as usize,
            message.as_ptr() as usize + message.len(),
        );
        let at = text.as_ptr() as usize;
        at >= start && at + text.len() <= end
    }

    #[test]
    fn a_log_parsed_from_a_message_shares_its_text_until_detached() {
        let message = Utf8Bytes::from(format!("{{\"result\":[ {TRANSFER} ]}}"));
        let items: Vec<&RawValue> = serde_json::from_str(&message[10..message.len() - 1]).unwrap();
        let log = ChainLog::from_shared(&message, items[0]).unwrap();
        assert_eq!(&*log.raw, TRANSFER);
        assert!(inside(&log.raw, &message), "the text is the message's own");
        let detached = log.detached();
        assert_eq!(&*detached.raw, TRANSFER);
        assert!(
            !inside(&detached.raw, &message),
            "a detached log has text of its own"
        );
        assert_eq!(detached.log_index, log.log_index);
        // A log object from elsewhere is parsed from a copy, never sliced out of the wrong text.
        let elsewhere: Box<RawValue> = RawValue::from_string(TRANSFER.to_string()).unwrap();
        let copied = ChainLog::from_shared(&message, &elsewhere).unwrap();
        assert_eq!(&*copied.raw, TRANSFER);
        assert!(!inside(&copied.raw, &message));
        assert!(LogText::shared(&message, TRANSFER).is_none());
    }

    #[test]
    fn a_block_is_charged_about_twice_its_json_in_kib() {
        assert_eq!(Budget::kib_for(0), 1);
        let log = ChainLog::from_json(TRANSFER).unwrap();
        assert_eq!(log.memory_bytes(), 2 * TRANSFER.len() + 128);
        let expected = 1000 * (2 * TRANSFER.len() + 128) / 1024 + 1;
        assert_eq!(
            Budget::kib_for(1000 * log.memory_bytes()) as usize,
            expected
        );
    }

    #[tokio::test]
    async fn a_charge_holds_its_kib_until_dropped_and_never_more_than_the_budget() {
        let budget = Budget::kib(100);
        let charge = budget.charge(10 * 1024).await;
        assert_eq!(budget.available_kib(), 89);
        drop(charge);
        assert_eq!(budget.available_kib(), 100);
        let all = budget.charge(1 << 30).await; // larger than the budget: takes all of it
        assert_eq!(budget.available_kib(), 0);
        drop(all);
    }

    #[test]
    fn parses_a_mainnet_log_and_keeps_its_text() {
        let log = ChainLog::from_json(TRANSFER).unwrap();
        assert_eq!(log.block_number, 0x76250);
        assert_eq!(log.topics.len(), 3);
        assert_eq!(log.data.len(), 32);
        assert_eq!(&*log.raw, TRANSFER);
        let removed = log.as_removed();
        assert!(removed.removed);
        assert!(removed.raw.contains("\"removed\":true"));
        assert!(removed.raw.contains("blockTimestamp"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(ChainLog::from_json("{\"address\":\"0x12\"}").is_err());
        assert!(ChainLog::from_json("not json").is_err());
    }
}
