//! The reorg window across restarts. Each applied block near the head is stored (`chain_blocks`:
//! hash, parent hash, the matched logs) by the batch write that carries its deliveries — the same
//! transaction as its cursor, or an earlier one — so every block a cursor can name is stored no
//! later than the cursor is, without a transaction of its own on the way; on start the window is
//! rebuilt by walking parent hashes back from the cursor's block, so it is exactly the branch the
//! cursor names. A reorg arriving after a restart then still withdraws what was delivered.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::B256;
use serde_json::value::RawValue;

use super::IngestError;
use super::chain::{WindowBlock, WindowLogs};
use super::check;
use super::follow::ChainIngest;
use super::rpc::Header;
use crate::event::{ChainLog, WindowRow, Written};
use crate::store::{StoredBlock, StoredLogs};

/// The stored form of an applied block and its matched logs (the node's objects, as received,
/// compressed).
pub(super) fn stored(header: &Header, logs: &[Arc<ChainLog>]) -> StoredBlock {
    stored_as(header, StoredLogs::of(logs.iter().map(|log| &*log.raw)))
}

/// The same row from the JSON array of `logs` as the node sent it, compressed as it is.
pub(super) fn stored_from_answer(header: &Header, array: &str) -> StoredBlock {
    stored_as(header, StoredLogs::of_array(array))
}

fn stored_as(header: &Header, logs: StoredLogs) -> StoredBlock {
    StoredBlock {
        number: i64::try_from(header.number).unwrap_or(i64::MAX),
        hash: format!("{:#x}", header.hash),
        parent_hash: format!("{:#x}", header.parent_hash),
        logs,
    }
}

/// The branch ending at `tip` among `rows`, oldest first, at most `capacity` blocks; empty when
/// `tip` itself is not stored (a store written before this table, or a cursor far from the head).
/// A block whose stored logs cannot be read keeps its header and says its logs are gone, so a
/// reorg reaching it is reported rather than withdrawing less in silence.
pub(super) fn branch(rows: Vec<StoredBlock>, tip: B256, capacity: usize) -> Vec<WindowBlock> {
    let by_hash: HashMap<B256, StoredBlock> = rows
        .into_iter()
        .filter_map(|row| Some((row.hash.parse::<B256>().ok()?, row)))
        .collect();
    let mut blocks = Vec::new();
    let mut next = tip;
    while blocks.len() < capacity {
        let Some(row) = by_hash.get(&next) else {
            break;
        };
        let Ok((number, _)) = check::cursor(row.number, &row.hash) else {
            break;
        };
        let logs = match row.logs.text().as_deref().and_then(parse_logs) {
            Some(logs) => WindowLogs::Stored(logs.len()),
            None => WindowLogs::Dropped,
        };
        let block = WindowBlock {
            number,
            hash: next,
            logs,
        };
        blocks.push(block);
        match row.parent_hash.parse::<B256>() {
            Ok(parent) => next = parent,
            Err(_) => break,
        }
    }
    blocks.reverse();
    blocks
}

impl ChainIngest {
    /// Starts the window at the durable cursor — with the stored branch that ends there, when
    /// there is one — so the first head fills the gap since and a reorg reaching below the
    /// cursor still finds the logs that were delivered.
    pub(super) async fn seed_from_cursor(&mut self) {
        let chain = self.chain.name.clone();
        let cursor = match self.store.get_cursor(self.chain.chain_id).await {
            Ok(Some(cursor)) => cursor,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(chain, %error, "cannot read the chain cursor");
                return;
            }
        };
        let (number, hash) = match check::cursor(cursor.block_number, &cursor.block_hash) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(chain, %error, "stored cursor is invalid; starting from the head");
                return;
            }
        };
        let capacity = self.window.capacity();
        let from = cursor.block_number.saturating_sub(capacity as i64);
        let stored = self
            .store
            .chain_blocks(self.chain.chain_id, from, cursor.block_number);
        let blocks = match stored.await {
            Ok(rows) => branch(rows, hash, capacity),
            Err(error) => {
                tracing::error!(chain, %error, "cannot read the stored reorg window; a reorg below the cursor cannot withdraw delivered logs");
                Vec::new()
            }
        };
        if blocks.is_empty() {
            self.window.push(WindowBlock::new(number, hash, Vec::new()));
            return;
        }
        tracing::info!(
            chain,
            blocks = blocks.len(),
            cursor = number,
            "reorg window restored from the store"
        );
        for block in blocks {
            self.window.push(block);
        }
    }

    /// The row of the stored window for a block near the head (within a window of the target),
    /// written by the batch write with the block's deliveries; `None` for a block far below it
    /// in a catch-up, which the window holds in memory instead. `answer` is the node's JSON array
    /// when it holds exactly `logs`, in order: the row is then compressed from it.
    pub(super) fn window_row(
        &self,
        header: &Header,
        logs: &[Arc<ChainLog>],
        answer: Option<&str>,
    ) -> Option<WindowRow> {
        let capacity = self.window.capacity() as u64;
        let target = self
            .best_head
            .unwrap_or(0)
            .saturating_sub(self.chain.confirmations);
        if target.saturating_sub(header.number) > capacity {
            return None;
        }
        let block = match answer {
            Some(array) => stored_from_answer(header, array),
            None => stored(header, logs),
        };
        Some(WindowRow {
            block,
            written: Written::default(),
        })
    }

    /// Every `capacity` blocks, the stored window's rows more than two windows below `number`
    /// are deleted. A failure is only logged: the next prune takes them.
    pub(super) async fn prune_stored_window(&self, number: u64) {
        let capacity = self.window.capacity() as u64;
        if !number.is_multiple_of(capacity) {
            return;
        }
        let below = i64::try_from(number.saturating_sub(2 * capacity)).unwrap_or(i64::MAX);
        if let Err(error) = self
            .store
            .prune_chain_blocks(self.chain.chain_id, below)
            .await
        {
            tracing::warn!(chain = %self.chain.name, %error, "cannot prune the stored reorg window; trying again later");
        }
    }

    /// The logs a reorg above block `ancestor` must withdraw, per orphaned block newest first —
    /// read back from the store for stored blocks. Read before the window is rolled back, so a
    /// store error leaves the window as it was and the reorg is handled again on the next try.
    /// A stored block whose row is missing or unreadable is reported like one whose logs the
    /// window dropped.
    pub(super) async fn orphaned_logs(
        &self,
        ancestor: u64,
    ) -> Result<Vec<(u64, B256, Vec<Arc<ChainLog>>)>, IngestError> {
        let mut orphaned = Vec::new();
        for block in self.window.above(ancestor) {
            let logs = match &block.logs {
                WindowLogs::InMemory(logs) | WindowLogs::Writing { logs, .. } => logs.clone(),
                WindowLogs::Stored(0) | WindowLogs::Dropped => continue,
                WindowLogs::Stored(_) => {
                    let hash = format!("{:#x}", block.hash);
                    let stored = self
                        .store
                        .chain_block_logs(self.chain.chain_id, &hash)
                        .await?;
                    match stored
                        .as_ref()
                        .and_then(StoredLogs::text)
                        .as_deref()
                        .and_then(parse_logs)
                    {
                        Some(logs) => logs,
                        None => {
                            tracing::error!(chain = %self.chain.name, block = block.number, "the stored logs of an orphaned block are missing or unreadable; its delivered logs cannot be withdrawn");
                            continue;
                        }
                    }
                }
            };
            orphaned.push((block.number, block.hash, logs));
        }
        Ok(orphaned)
    }

    /// A reorg whose common ancestor is not in the window: the orphaned blocks' delivered logs
    /// cannot be withdrawn. Said loudly: error log, metric, and `/readyz` detail, with the depth.
    pub(super) fn report_deep_reorg(&self, oldest_new: u64) {
        let tip = self.window.tip().map_or(oldest_new, |t| t.number);
        // The new branch differs from the old one at least from its oldest block up to the tip.
        let depth = tip.saturating_sub(oldest_new) + 1;
        let capacity = self.window.capacity();
        tracing::error!(chain = %self.chain.name, depth_at_least = depth, tip, window = capacity, "reorg deeper than the reorg window: logs delivered from the orphaned blocks cannot be withdrawn");
        self.metrics
            .reorgs_too_deep
            .with_label_values(&[&self.chain.name])
            .inc();
        self.health.set_deep_reorg(format!(
            "reorg below block {tip} at least {depth} blocks deep, beyond the {capacity}-block window: delivered logs of orphaned blocks were not withdrawn"
        ));
    }
}

fn parse_logs(text: &str) -> Option<Vec<Arc<ChainLog>>> {
    let raw: Vec<Box<RawValue>> = serde_json::from_str(text).ok()?;
    raw.iter()
        .map(|r| ChainLog::from_raw(r).ok().map(Arc::new))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(number: u64, tag: u8, parent: u8) -> Header {
        Header {
            number,
            hash: B256::repeat_byte(tag),
            parent_hash: B256::repeat_byte(parent),
            timestamp: 0,
        }
    }

    fn log(block: u8) -> Arc<ChainLog> {
        let text = format!(
            r#"{{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"0x{block:x}","blockHash":"{:#x}","transactionHash":"{:#x}","transactionIndex":"0x0","logIndex":"0x0","removed":false}}"#,
            B256::repeat_byte(block),
            B256::repeat_byte(0xee)
        );
        Arc::new(ChainLog::from_json(&text).unwrap())
    }

    #[test]
    fn the_window_is_the_branch_the_cursor_names_whatever_else_is_stored() {
        // 1 ← 2 ← 3 canonical, with the logs of 3; 3' an orphan on 2; 4 a block above the cursor.
        let rows = vec![
            stored(&header(1, 1, 0), &[]),
            stored(&header(2, 2, 1), &[log(2)]),
            stored(&header(3, 3, 2), &[log(3), log(3)]),
            stored(&header(3, 0x33, 2), &[log(0x33)]),
            stored(&header(4, 4, 3), &[]),
        ];
        let blocks = branch(rows.clone(), B256::repeat_byte(3), 64);
        let got: Vec<(u64, u8, usize)> = blocks
            .iter()
            .map(|b| match b.logs {
                WindowLogs::Stored(count) => (b.number, b.hash.0[0], count),
                ref other => panic!("block {} not marked stored: {other:?}", b.number),
            })
            .collect();
        assert_eq!(got, vec![(1, 1, 0), (2, 2, 1), (3, 3, 2)]);
        assert_eq!(branch(rows.clone(), B256::repeat_byte(3), 2).len(), 2);
        assert!(branch(rows, B256::repeat_byte(9), 64).is_empty());
    }

    #[test]
    fn a_row_compressed_from_the_answer_reads_back_as_the_logs_joined() {
        let logs = [log(7), log(7)];
        // The node's array, spaced as a node may send it.
        let answer = format!("[ {} ,\n {} ]", logs[0].raw, logs[1].raw);
        let from_answer = stored_from_answer(&header(7, 7, 6), &answer);
        let joined = stored(&header(7, 7, 6), &logs);
        assert_eq!(
            (&from_answer.hash, &from_answer.parent_hash),
            (&joined.hash, &joined.parent_hash)
        );
        let read = |row: &StoredBlock| {
            let text = row.logs.text().expect("readable");
            parse_logs(&text)
                .expect("logs")
                .iter()
                .map(|log| log.raw.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(read(&from_answer), read(&joined));
        assert_eq!(read(&joined).len(), 2);
    }

    #[test]
    fn unreadable_stored_logs_are_reported_as_dropped() {
        let mut row = stored(&header(5, 5, 4), &[log(5)]);
        row.logs = "[{".into();
        let mut damaged = stored(&header(6, 6, 5), &[log(6)]);
        if let StoredLogs::Lz4(bytes) = &mut damaged.logs {
            bytes.truncate(bytes.len() / 2);
        }
        let blocks = branch(vec![row, damaged], B256::repeat_byte(6), 64);
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|b| b.logs_dropped()));
    }
}
