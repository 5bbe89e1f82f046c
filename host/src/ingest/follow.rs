//! The connection-level work of one chain: follow heads, catch up, walk reorgs, fetch and check
//! each block's logs, and send them on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alloy_primitives::U64;
use serde_json::json;

use super::chain::{Window, WindowBlock};
use super::rpc::{Answer, Connection, Header};
use super::{
    ChainHealth, Downstream, IngestError, NodeLimits, REORG_WINDOW_BYTES, REQUEST_TIMEOUT,
    Relevance, check,
};
use crate::config::ChainConfig;
use crate::event::{BlockKind, BlockLogs, ChainLog};
use crate::metrics::Metrics;
use crate::store::{ChainLock, Store, now_ms};

/// Progress of a long catch-up (a `start_block` backfill, a gap after downtime): a log line every
/// few seconds with the block reached, what is left and the pace, so an operator can tell how long.
struct CatchUp {
    chain: String,
    started: Instant,
    first: Option<u64>,
    reported_at: Instant,
}

impl CatchUp {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(chain: &str) -> CatchUp {
        let now = Instant::now();
        CatchUp {
            chain: chain.to_string(),
            started: now,
            first: None,
            reported_at: now,
        }
    }

    fn report(&mut self, next: u64, target: u64) {
        let first = *self.first.get_or_insert(next);
        if self.reported_at.elapsed() < Self::EVERY {
            return;
        }
        self.reported_at = Instant::now();
        let done = next.saturating_sub(first);
        let blocks_per_s = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            chain = %self.chain,
            block = next,
            head = target,
            remaining = target.saturating_sub(next),
            blocks_per_s = blocks_per_s.round() as u64,
            "catching up"
        );
    }
}

pub(super) struct ChainIngest {
    pub(super) chain: ChainConfig,
    pub(super) limits: NodeLimits,
    /// Holds the headers of the last blocks and only their relevant logs: its memory follows the
    /// matched volume, not the chain's.
    pub(super) window: Window,
    pub(super) relevant: Relevance,
    pub(super) output: Downstream,
    pub(super) metrics: Metrics,
    pub(super) health: Arc<ChainHealth>,
    pub(super) lock: Option<ChainLock>,
    pub(super) lock_checked_at: Instant,
    /// The highest head seen, and when it arrived: staleness is measured from there.
    pub(super) best_head: Option<u64>,
    pub(super) progress_at: Instant,
    /// Where applied blocks near the head are stored for the reorg window (`durable.rs`).
    pub(super) store: Store,
    /// The adaptive `eth_getLogs` range of catch-ups far below the head (`backfill.rs`).
    pub(super) range: super::backfill::RangeSize,
    pub(super) filter: super::FilterSource,
}

impl ChainIngest {
    /// Counts a block's logs as received and waits for room for them in the in-flight budget.
    /// Nothing here fails: the budget only makes ingest wait.
    pub(super) async fn receive(
        &self,
        logs: &[std::sync::Arc<crate::event::ChainLog>],
    ) -> crate::event::InFlight {
        self.metrics
            .events_received
            .with_label_values(&[&self.chain.name])
            .inc_by(logs.len() as u64);
        self.output.reserve(logs).await
    }

    /// Stops following when the database session holding the chain lock is gone: another replica
    /// may own the chain by now.
    pub(super) async fn check_ownership(&mut self) -> Result<(), IngestError> {
        if self.lock_checked_at.elapsed() < super::ownership::OWNERSHIP_CHECK {
            return Ok(());
        }
        self.lock_checked_at = Instant::now();
        let held = match &mut self.lock {
            Some(lock) => lock.is_held().await,
            None => false,
        };
        if held {
            Ok(())
        } else {
            Err(IngestError::LostOwnership)
        }
    }

    pub(super) async fn follow(&mut self, url: &str) -> Result<(), IngestError> {
        let mut conn = Connection::connect(url, REQUEST_TIMEOUT, &self.limits).await?;
        let chain_id: U64 = conn.request("eth_chainId", json!([])).await?;
        if chain_id.to::<u64>() != self.chain.chain_id {
            return Err(IngestError::WrongChain {
                expected: self.chain.chain_id,
                actual: chain_id.to(),
            });
        }
        conn.subscribe_new_heads().await?;
        if self.window.tip().is_none()
            && let Some(start) = self.chain.start_block.filter(|s| *s > 0)
        {
            let before = self.header_by_number(&mut conn, start - 1).await?;
            self.window
                .push(WindowBlock::new(before.number, before.hash, Vec::new()));
        }
        let shown = crate::redact::url(url);
        self.health.set_connected(&shown);
        tracing::info!(chain = %self.chain.name, url = %shown, "following new heads");
        // Catch up at once rather than at the next head: after a restart or reconnect the node
        // may stay quiet for a while (a dev chain mines only on demand).
        let latest: Header = conn
            .request("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        let connected_at = Instant::now();
        self.on_head(&mut conn, latest).await?;
        loop {
            let head = self.next_new_head(&mut conn, connected_at).await?;
            self.check_ownership().await?;
            self.on_head(&mut conn, head).await?;
        }
    }

    /// The next head, unless the chain goes stale first: no new head within `stale_after` of the
    /// last one (or of connecting, so each node gets a full period). Heads that are not new (a
    /// node repeating itself) do not count as progress.
    async fn next_new_head(
        &mut self,
        conn: &mut Connection,
        connected_at: Instant,
    ) -> Result<Header, IngestError> {
        let limit = self.chain.stale_after();
        let since = self.progress_at.max(connected_at);
        let wait = limit.saturating_sub(since.elapsed());
        match conn.next_head(wait).await {
            Err(super::RpcError::Timeout(_)) => {
                self.health.stale.store(true, Ordering::Relaxed);
                self.metrics
                    .chain_stale
                    .with_label_values(&[&self.chain.name])
                    .set(1);
                Err(IngestError::Stale {
                    silent_s: self.progress_at.elapsed().as_secs(),
                    limit_s: limit.as_secs(),
                })
            }
            result => Ok(result?),
        }
    }

    /// A head above every earlier one: the chain is progressing (no longer stale).
    fn note_progress(&mut self, number: u64) {
        if self.best_head.is_some_and(|best| number <= best) {
            return;
        }
        self.best_head = Some(number);
        self.progress_at = Instant::now();
        self.health
            .last_head_at_ms
            .store(now_ms(), Ordering::Relaxed);
        self.health.stale.store(false, Ordering::Relaxed);
        self.metrics
            .chain_stale
            .with_label_values(&[&self.chain.name])
            .set(0);
    }

    async fn on_head(&mut self, conn: &mut Connection, head: Header) -> Result<(), IngestError> {
        self.note_progress(head.number);
        let chain = self.chain.name.as_str();
        self.metrics
            .chain_head
            .with_label_values(&[chain])
            .set(i64::try_from(head.number).unwrap_or(i64::MAX));
        let lag_s = (now_ms() as f64 / 1000.0) - head.timestamp as f64;
        if head.timestamp > 0 && lag_s >= 0.0 {
            self.metrics
                .chain_head_lag
                .with_label_values(&[chain])
                .observe(lag_s);
        }
        if self.chain.confirmations == 0
            && let Some(known) = self.window.get(head.number)
        {
            if known.hash != head.hash {
                self.reorg(conn, head).await?;
            }
            return Ok(());
        }
        let target = head.number.saturating_sub(self.chain.confirmations);
        let mut catch_up = CatchUp::new(&self.chain.name);
        let mut worked = false;
        loop {
            let next = match self.window.tip() {
                Some(tip) if tip.number >= target => {
                    // A long catch-up must not use up the stale period: heads are due from now.
                    if worked {
                        self.progress_at = Instant::now();
                    }
                    return Ok(());
                }
                Some(tip) => tip.number + 1,
                None => target,
            };
            catch_up.report(next, target);
            worked = true;
            // A long gap fill must stop too once another replica owns the chain (checked at most
            // every OWNERSHIP_CHECK, like heads).
            self.check_ownership().await?;
            // Far below the target (more than a reorg window): whole ranges at once.
            let window_end = target.saturating_sub(self.window.capacity() as u64);
            if self.window.tip().is_some() && next <= window_end {
                self.backfill(conn, next, window_end).await?;
                continue;
            }
            let header = if next == head.number {
                head.clone()
            } else {
                self.header_by_number(conn, next).await?
            };
            match self.window.tip() {
                Some(tip) if tip.hash != header.parent_hash => self.reorg(conn, header).await?,
                _ => self.apply(conn, header).await?,
            }
        }
    }

    /// The header at `number`; one that names another number is refused.
    pub(super) async fn header_by_number(
        &self,
        conn: &mut Connection,
        number: u64,
    ) -> Result<Header, IngestError> {
        let header: Header = conn
            .request(
                "eth_getBlockByNumber",
                json!([format!("{number:#x}"), false]),
            )
            .await?;
        check::header_number(&header, number)?;
        Ok(header)
    }

    /// `header` does not extend the tip: find the common ancestor, withdraw orphaned logs, then
    /// apply the new branch oldest first.
    async fn reorg(&mut self, conn: &mut Connection, header: Header) -> Result<(), IngestError> {
        let mut branch = vec![header];
        let ancestor = loop {
            let parent = branch.last().map(|h| h.parent_hash).unwrap_or_default();
            if let Some(block) = self.window.contains_hash(&parent) {
                break Some(block.number);
            }
            if branch.len() > self.window.capacity() {
                break None;
            }
            let header: Header = conn
                .request("eth_getBlockByHash", json!([parent, false]))
                .await?;
            check::header_hash(&header, &parent)?;
            branch.push(header);
        };
        let orphaned = self.orphaned_logs(ancestor.unwrap_or(0)).await?;
        let orphans = match ancestor {
            Some(number) => self.window.rollback_above(number),
            None => {
                let oldest_new = branch.last().map_or(0, |h| h.number);
                self.report_deep_reorg(oldest_new);
                let all = self.window.rollback_above(0);
                self.window.clear();
                all
            }
        };
        self.metrics
            .reorgs
            .with_label_values(&[&self.chain.name])
            .inc();
        tracing::warn!(chain = %self.chain.name, orphaned = orphans.len(), new_blocks = branch.len(), "reorg");
        let dropped: Vec<u64> = orphans
            .iter()
            .filter(|o| o.logs_dropped())
            .map(|o| o.number)
            .collect();
        if let (Some(newest), Some(oldest)) = (dropped.first(), dropped.last()) {
            tracing::error!(chain = %self.chain.name, blocks = dropped.len(), oldest, newest, window_mib = REORG_WINDOW_BYTES >> 20, "reorg reached blocks whose logs the window had dropped to stay within its memory budget; their delivered logs cannot be withdrawn");
        }
        for (number, hash, logs) in orphaned.into_iter().filter(|o| !o.2.is_empty()) {
            let logs = logs.iter().map(|l| Arc::new(l.as_removed())).collect();
            self.emit(BlockLogs {
                chain_id: self.chain.chain_id,
                number,
                hash,
                kind: BlockKind::Orphaned,
                logs,
                received_at: Instant::now(),
                in_flight: Default::default(),
                window_row: None,
            })
            .await?;
        }
        for header in branch.into_iter().rev() {
            self.apply(conn, header).await?;
        }
        Ok(())
    }

    /// Fetches a canonical block's logs, sends them on, and records the block in the window.
    async fn apply(&mut self, conn: &mut Connection, header: Header) -> Result<(), IngestError> {
        let received_at = Instant::now();
        let (answer, logs) = self.block_logs(conn, &header).await?;
        tracing::debug!(chain = %self.chain.name, block = header.number, logs = logs.len(), "block received");
        let in_flight = self.receive(&logs).await;
        let (logs, relevant_logs) = self.judge(logs);
        // When every log is relevant the node's answer is already the row's JSON array: it is
        // compressed as it is, not joined again from the logs (a block's text, megabytes at 100K
        // events/s, copied once less).
        let whole_answer = answer
            .as_ref()
            .filter(|_| relevant_logs.len() == logs.len())
            .map(Answer::get);
        let window_row = self.window_row(&header, &relevant_logs, whole_answer);
        drop(answer);
        // Near the head the block's row rides with it to the batch write (no transaction of its
        // own on the way); the window holds its logs until that write has committed.
        let window_block = match &window_row {
            Some(row) => WindowBlock::writing(
                header.number,
                header.hash,
                relevant_logs,
                row.written.clone(),
            ),
            None => WindowBlock::new(header.number, header.hash, relevant_logs),
        };
        let block = BlockLogs {
            chain_id: self.chain.chain_id,
            number: header.number,
            hash: header.hash,
            kind: BlockKind::Canonical,
            logs,
            received_at,
            in_flight,
            window_row,
        };
        self.emit(block).await?;
        self.window.push(window_block);
        self.prune_stored_window(header.number).await;
        Ok(())
    }

    /// The block's logs and those of them the subscriptions can match. The logs share the node's
    /// answer; when only some are relevant, the relevant ones get text of their own, so the
    /// window and the deliveries never hold a whole answer for a few of its logs.
    fn judge(&self, logs: Vec<Arc<ChainLog>>) -> (Vec<Arc<ChainLog>>, Vec<Arc<ChainLog>>) {
        let relevant: Vec<bool> = logs.iter().map(|log| (self.relevant)(log)).collect();
        if relevant.iter().all(|r| *r) {
            return (logs.clone(), logs);
        }
        let logs: Vec<Arc<ChainLog>> = logs
            .into_iter()
            .zip(&relevant)
            .map(|(log, r)| if *r { Arc::new(log.detached()) } else { log })
            .collect();
        let relevant_logs = logs
            .iter()
            .zip(&relevant)
            .filter(|(_, r)| **r)
            .map(|(log, _)| log.clone())
            .collect();
        (logs, relevant_logs)
    }

    /// A block's logs: with `filter_at_node`, only those the subscriptions' union can match (none
    /// asked for when there is no subscription), else all of them; and the node's answer they
    /// were parsed from.
    async fn block_logs(
        &self,
        conn: &mut Connection,
        header: &Header,
    ) -> Result<(Option<Answer>, Vec<Arc<ChainLog>>), IngestError> {
        let params = if self.limits.filter_at_node {
            let filter = (self.filter)();
            if filter.nothing {
                return Ok((None, Vec::new()));
            }
            filter.block_request(header.hash)
        } else {
            json!([{"blockHash": header.hash}])
        };
        let answer = conn.request_raw("eth_getLogs", params).await?;
        let logs = check::shared_block_logs(&answer, header, self.limits.max_logs_bytes)?;
        Ok((Some(answer), logs))
    }

    pub(super) async fn emit(&self, block: BlockLogs) -> Result<(), IngestError> {
        self.output
            .blocks
            .send(block)
            .await
            .map_err(|_| IngestError::Stopped)
    }
}
