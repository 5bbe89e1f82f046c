//! Catch-up at provider speed. Far below the block ingest heads for (more than a reorg window),
//! logs are fetched with `eth_getLogs` over block *ranges*, filtered by the union of the chain's
//! subscriptions' addresses and topic0s, instead of two requests per block. The range adapts: it
//! halves when the node refuses it (a JSON-RPC error: "too many results", "range too large") or
//! the answer is over the byte budget, and doubles while answers are cheap, never above
//! `[ingest] max_range_blocks` nor again up to a size that failed recently. Each range ends with
//! its last block's header, which becomes the window's tip: the block-by-block path (parent
//! hashes, reorgs) takes over from there with no gap and no block twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::B256;
use serde_json::Value;
use serde_json::value::RawValue;

use super::IngestError;
use super::chain::WindowBlock;
use super::filter::LogFilter;
use super::follow::ChainIngest;
use super::rpc::{Connection, RpcError};
use crate::event::{BlockKind, BlockLogs, ChainLog};

/// The adaptive range size, in blocks.
#[derive(Debug)]
pub(super) struct RangeSize {
    current: u64,
    max: u64,
    /// The smallest range refused lately: not grown back to (forgotten after a while).
    ceiling: Option<u64>,
    successes: u32,
}

/// Answers with fewer logs than this (and a quarter of the byte budget) let the range grow.
const CHEAP_LOGS: usize = 2_500;
/// After this many good ranges in a row, a refused size may be tried again.
const FORGET_CEILING_AFTER: u32 = 16;

impl RangeSize {
    pub(super) fn new(max: u64) -> RangeSize {
        let max = max.max(1);
        RangeSize {
            current: max.min(1_000),
            max,
            ceiling: None,
            successes: 0,
        }
    }

    pub(super) fn blocks(&self) -> u64 {
        self.current
    }

    /// The node refused this size: halve it. `false` when it is one block already.
    pub(super) fn shrink(&mut self) -> bool {
        if self.current <= 1 {
            return false;
        }
        self.ceiling = Some(self.current);
        self.successes = 0;
        self.current /= 2;
        true
    }

    pub(super) fn succeeded(&mut self, cheap: bool) {
        self.successes += 1;
        if self.successes >= FORGET_CEILING_AFTER {
            self.ceiling = None;
            self.successes = 0;
        }
        if cheap {
            let limit = self.ceiling.map_or(self.max, |c| (c - 1).min(self.max));
            self.current = (self.current * 2).min(limit).max(1);
        }
    }
}

/// One block of a range answer: number, hash, its logs in log-index order.
pub(super) type RangeBlock = (u64, B256, Vec<Arc<ChainLog>>);

/// The logs of an `eth_getLogs {fromBlock: from, toBlock: to}` answer, by block, ascending. Refused
/// whole when the answer's text is over `max_bytes` (before parsing), a log is malformed, removed,
/// outside the range, or two logs of one block name different hashes.
pub(super) fn range_logs(
    answer: &str,
    from: u64,
    to: u64,
    max_bytes: usize,
) -> Result<Vec<RangeBlock>, IngestError> {
    let bytes = answer.len();
    if bytes > max_bytes {
        return Err(IngestError::LogsTooLarge {
            block: from,
            bytes,
            limit: max_bytes,
        });
    }
    let bad = |block: u64, reason: String| IngestError::BadLog { block, reason };
    let raw: Vec<&RawValue> =
        serde_json::from_str(answer).map_err(|e| bad(from, format!("not a list of logs: {e}")))?;
    let mut blocks: BTreeMap<u64, (B256, Vec<Arc<ChainLog>>)> = BTreeMap::new();
    for item in raw {
        let log = ChainLog::from_raw(item).map_err(|e| bad(from, e.to_string()))?;
        let number = log.block_number;
        if !(from..=to).contains(&number) {
            return Err(bad(number, format!("log outside the range {from}..={to}")));
        }
        if log.removed {
            return Err(bad(
                number,
                "a log of a canonical range is marked removed".into(),
            ));
        }
        let (hash, logs) = blocks
            .entry(number)
            .or_insert_with(|| (log.block_hash, Vec::new()));
        if *hash != log.block_hash {
            return Err(bad(
                number,
                format!("logs name two hashes: {hash}, {}", log.block_hash),
            ));
        }
        logs.push(Arc::new(log));
    }
    Ok(blocks
        .into_iter()
        .map(|(number, (hash, mut logs))| {
            logs.sort_by_key(|l| l.log_index);
            (number, hash, logs)
        })
        .collect())
}

impl ChainIngest {
    /// Ingests blocks `from..` (at most up to `end`, at most the current range) with one
    /// `eth_getLogs` and one header request; the range's last block becomes the window's tip.
    /// A refused range only shrinks the next attempt (the caller loops).
    pub(super) async fn backfill(
        &mut self,
        conn: &mut Connection,
        from: u64,
        end: u64,
    ) -> Result<(), IngestError> {
        let to = end.min(from.saturating_add(self.range.blocks() - 1));
        let mut blocks = match self.fetch_range(conn, from, to).await? {
            Some(blocks) => blocks,
            None => return Ok(()),
        };
        let header = self.header_by_number(conn, to).await?;
        match blocks.last() {
            Some((number, hash, _)) if *number == to && *hash != header.hash => {
                return Err(IngestError::BadLog {
                    block: to,
                    reason: format!("logs name block hash {hash}, the header {}", header.hash),
                });
            }
            Some((number, _, _)) if *number == to => {}
            // The range's last block goes on even without logs: the cursor moves to it.
            _ => blocks.push((to, header.hash, Vec::new())),
        }
        let mut tip_logs = Vec::new();
        for (number, hash, logs) in blocks {
            let in_flight = self.receive(&logs).await;
            // A long range waiting for room downstream must stop too once the chain is lost.
            self.check_ownership().await?;
            if number == to {
                tip_logs = logs
                    .iter()
                    .filter(|l| (self.relevant)(l))
                    .cloned()
                    .collect();
            }
            self.emit(BlockLogs {
                chain_id: self.chain.chain_id,
                number,
                hash,
                kind: BlockKind::Canonical,
                logs,
                received_at: Instant::now(),
                in_flight,
                window_row: None,
            })
            .await?;
        }
        self.window.clear();
        self.window
            .push(WindowBlock::new(to, header.hash, tip_logs));
        self.metrics
            .backfill_blocks
            .with_label_values(&[&self.chain.name])
            .inc_by(to - from + 1);
        Ok(())
    }

    /// The logs of `from..=to` by block; `None` when the node refused the range (now smaller).
    async fn fetch_range(
        &mut self,
        conn: &mut Connection,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<RangeBlock>>, IngestError> {
        let filter = (self.filter)();
        if filter.nothing {
            self.range.succeeded(true);
            return Ok(Some(Vec::new()));
        }
        let max_bytes = self.limits.max_logs_bytes;
        let answer = match conn
            .request_raw("eth_getLogs", request(&filter, from, to))
            .await
        {
            Ok(answer) => answer,
            Err(RpcError::Node { message, .. }) if self.range.shrink() => {
                tracing::debug!(chain = %self.chain.name, from, to, error = message, next_blocks = self.range.blocks(), "range refused; shrinking");
                return Ok(None);
            }
            Err(error @ RpcError::MessageTooLarge { .. }) => {
                // The connection is gone with it; the next one asks for less.
                self.range.shrink();
                return Err(error.into());
            }
            Err(error) => return Err(error.into()),
        };
        let blocks = match range_logs(answer.get(), from, to, max_bytes) {
            Err(IngestError::LogsTooLarge { .. }) if self.range.shrink() => return Ok(None),
            other => other?,
        };
        let logs: usize = blocks.iter().map(|b| b.2.len()).sum();
        self.range
            .succeeded(cheap(logs, answer.get().len(), max_bytes));
        Ok(Some(blocks))
    }
}

/// Whether an answer of `logs` logs and `bytes` bytes is cheap enough to try a larger range.
pub(super) fn cheap(logs: usize, bytes: usize, max_bytes: usize) -> bool {
    logs < CHEAP_LOGS && bytes < max_bytes / 4
}

/// The request parameters for a range.
pub(super) fn request(filter: &LogFilter, from: u64, to: u64) -> Value {
    filter.request(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_halves_when_refused_and_grows_back_below_the_refused_size() {
        let mut range = RangeSize::new(10_000);
        assert_eq!(range.blocks(), 1_000);
        assert!(range.shrink());
        assert_eq!(range.blocks(), 500);
        range.succeeded(true);
        assert_eq!(range.blocks(), 999, "not back to the size refused");
        let mut one = RangeSize::new(1);
        assert!(!one.shrink());
        for _ in 0..40 {
            range.succeeded(true);
        }
        assert_eq!(range.blocks(), 10_000, "at most max_range_blocks");
    }
}
