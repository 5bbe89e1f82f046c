//! One task per chain: follow `newHeads`, fetch each block's logs with `eth_getLogs {blockHash}`,
//! fill gaps from the durable cursor, walk reorgs back to the common ancestor and withdraw orphaned
//! logs. Reconnects (rotating through the chain's URLs) with backoff and jitter, and never gives up.

mod chain;
mod ownership;
pub mod rpc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{B256, U64};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ChainConfig;
use crate::event::{BlockKind, BlockLogs, ChainLog, InFlight};
use crate::metrics::Metrics;
use crate::store::{ChainLock, Store, now_ms};
use chain::{Window, WindowBlock};
use rpc::{Connection, Header, RpcError};

/// Every request to a node is bounded by this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A node silent this long is reconnected (a dev node without traffic may be idle for a while).
const HEAD_SILENCE: Duration = Duration::from_secs(300);
/// Reorgs deeper than this many blocks cannot withdraw logs (they are rare after the merge).
const REORG_WINDOW: usize = 64;
/// The window's logs take at most this much memory: at high matched rates the oldest blocks keep
/// only their headers (a reorg reaching them is reported as an error).
const REORG_WINDOW_BYTES: usize = 16 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What readiness and metrics know about one chain.
#[derive(Debug, Default)]
pub struct ChainHealth {
    pub chain_id: u64,
    pub name: String,
    pub connected: AtomicBool,
    /// Another replica owns the chain; this one is ready to take over.
    pub standby: AtomicBool,
    pub last_head_at_ms: AtomicI64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl ChainHealth {
    pub fn new(chain: &ChainConfig) -> Arc<ChainHealth> {
        Arc::new(ChainHealth {
            chain_id: chain.chain_id,
            name: chain.name.clone(),
            ..ChainHealth::default()
        })
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("node reports chain id {actual}, configured {expected}")]
    WrongChain { expected: u64, actual: u64 },
    #[error("node sent a malformed log for block {block}: {reason}")]
    BadLog { block: u64, reason: String },
    #[error("pipeline stopped")]
    Stopped,
    #[error("lost ownership of the chain (database session ended)")]
    LostOwnership,
}

/// Whether a log could have been delivered (some subscription's address/topic filter matches it):
/// only such logs need withdrawing after a reorg, so only they are kept in the reorg window.
pub type Relevance = Arc<dyn Fn(&ChainLog) -> bool + Send + Sync>;

/// Where ingest sends blocks, and the in-flight memory budget (KiB permits) they are charged to.
#[derive(Clone)]
pub struct Downstream {
    blocks: mpsc::Sender<BlockLogs>,
    budget: Arc<tokio::sync::Semaphore>,
    budget_kib: u32,
}

impl Downstream {
    /// A downstream with a budget of `mib` MiB.
    pub fn with_budget(blocks: mpsc::Sender<BlockLogs>, mib: usize) -> Downstream {
        let kib = u32::try_from(mib.saturating_mul(1024)).unwrap_or(u32::MAX);
        Downstream::with_budget_kib(blocks, kib)
    }

    pub fn with_budget_kib(blocks: mpsc::Sender<BlockLogs>, kib: u32) -> Downstream {
        Downstream {
            blocks,
            budget: Arc::new(tokio::sync::Semaphore::new(kib as usize)),
            budget_kib: kib,
        }
    }

    /// Waits for room in the budget for `logs`. A block larger than the whole budget waits for
    /// all of it, so it still passes, alone. `None`: the budget is closed (never, in practice).
    async fn reserve(&self, logs: &[Arc<ChainLog>]) -> Option<InFlight> {
        let wanted = InFlight::kib_for(logs).min(self.budget_kib);
        let permit = self.budget.clone().acquire_many_owned(wanted).await.ok()?;
        Some(InFlight(Some(permit)))
    }
}

/// Follows one chain until `shutdown`; dropping `output` on return tells the next stage to drain.
pub async fn run(
    chain: ChainConfig,
    store: Store,
    output: Downstream,
    metrics: Metrics,
    health: Arc<ChainHealth>,
    relevant: Relevance,
    shutdown: CancellationToken,
) {
    let mut ingest = ChainIngest {
        relevant,
        window: Window::new(REORG_WINDOW, REORG_WINDOW_BYTES),
        chain,
        output,
        metrics,
        health,
        lock: None,
        lock_checked_at: Instant::now(),
    };
    let mut backoff = BACKOFF_MIN;
    let mut attempt: usize = 0;
    loop {
        if ingest.lock.is_none() {
            let Some(lock) = ownership::acquire(&store, &ingest.health, &shutdown).await else {
                break;
            };
            ingest.lock = Some(lock);
            // Another replica may have moved the cursor while this one stood by.
            ingest.window.clear();
        }
        if ingest.window.tip().is_none() {
            ingest.seed_from_cursor(&store).await;
        }
        let url = ingest.chain.ws_urls[attempt % ingest.chain.ws_urls.len()].clone();
        let started = Instant::now();
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            result = ingest.follow(&url) => result,
        };
        ingest.health.connected.store(false, Ordering::Relaxed);
        let Err(error) = result else { break };
        if matches!(error, IngestError::Stopped) {
            break;
        }
        if matches!(error, IngestError::LostOwnership) {
            tracing::warn!(chain = %ingest.chain.name, "lost the chain lock; waiting to own it again");
            ingest.lock = None;
            continue;
        }
        // A connection that worked for a while earns a fresh backoff.
        if started.elapsed() > Duration::from_secs(60) {
            backoff = BACKOFF_MIN;
        }
        let delay = jittered(backoff);
        tracing::warn!(chain = %ingest.chain.name, url = %url, error = %error, retry_in_ms = delay.as_millis() as u64, "chain connection failed; reconnecting");
        ingest.health.set_error(Some(error.to_string()));
        ingest
            .metrics
            .ws_reconnects
            .with_label_values(&[&ingest.chain.name])
            .inc();
        attempt += 1;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    if let Some(lock) = ingest.lock.take() {
        lock.release().await;
    }
    tracing::info!(chain = %ingest.chain.name, "ingest stopped");
}

/// Full jitter in [d/2, d): spreads reconnects of many hosts after a node outage.
fn jittered(d: Duration) -> Duration {
    d / 2 + d.mul_f64(rand::random::<f64>() / 2.0)
}

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

struct ChainIngest {
    chain: ChainConfig,
    /// Holds the headers of the last blocks and only their relevant logs: its memory follows the
    /// matched volume, not the chain's.
    window: Window,
    relevant: Relevance,
    output: Downstream,
    metrics: Metrics,
    health: Arc<ChainHealth>,
    lock: Option<ChainLock>,
    lock_checked_at: Instant,
}

impl ChainIngest {
    /// Stops following when the database session holding the chain lock is gone: another replica
    /// may own the chain by now.
    async fn check_ownership(&mut self) -> Result<(), IngestError> {
        if self.lock_checked_at.elapsed() < ownership::OWNERSHIP_CHECK {
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

    /// Starts the window at the durable cursor, so the first head fills the gap since.
    async fn seed_from_cursor(&mut self, store: &Store) {
        match store.get_cursor(self.chain.chain_id).await {
            Ok(Some(cursor)) => match cursor.block_hash.parse::<B256>() {
                Ok(hash) => self.window.push(WindowBlock::new(
                    cursor.block_number as u64,
                    hash,
                    Vec::new(),
                )),
                Err(error) => {
                    tracing::error!(chain = %self.chain.name, %error, "stored cursor hash is invalid; starting from the head")
                }
            },
            Ok(None) => {}
            Err(error) => {
                tracing::error!(chain = %self.chain.name, %error, "cannot read the chain cursor")
            }
        }
    }

    async fn follow(&mut self, url: &str) -> Result<(), IngestError> {
        let mut conn = Connection::connect(url, REQUEST_TIMEOUT).await?;
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
            let before: Header = conn
                .request(
                    "eth_getBlockByNumber",
                    json!([format!("{:#x}", start - 1), false]),
                )
                .await?;
            self.window
                .push(WindowBlock::new(before.number, before.hash, Vec::new()));
        }
        self.health.connected.store(true, Ordering::Relaxed);
        self.health.set_error(None);
        tracing::info!(chain = %self.chain.name, url, "following new heads");
        // Catch up at once rather than at the next head: after a restart or reconnect the node
        // may stay quiet for a while (a dev chain mines only on demand).
        let latest: Header = conn
            .request("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        self.on_head(&mut conn, latest).await?;
        loop {
            let head = conn.next_head(HEAD_SILENCE).await?;
            self.check_ownership().await?;
            self.on_head(&mut conn, head).await?;
        }
    }

    async fn on_head(&mut self, conn: &mut Connection, head: Header) -> Result<(), IngestError> {
        let chain = self.chain.name.as_str();
        self.health
            .last_head_at_ms
            .store(now_ms(), Ordering::Relaxed);
        self.metrics
            .chain_head
            .with_label_values(&[chain])
            .set(head.number as i64);
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
        loop {
            let next = match self.window.tip() {
                Some(tip) if tip.number >= target => return Ok(()),
                Some(tip) => tip.number + 1,
                None => target,
            };
            catch_up.report(next, target);
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

    async fn header_by_number(
        &self,
        conn: &mut Connection,
        number: u64,
    ) -> Result<Header, IngestError> {
        Ok(conn
            .request(
                "eth_getBlockByNumber",
                json!([format!("{number:#x}"), false]),
            )
            .await?)
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
            branch.push(header);
        };
        let orphans = match ancestor {
            Some(number) => self.window.rollback_above(number),
            None => {
                tracing::error!(chain = %self.chain.name, depth = branch.len(), "reorg deeper than the window; orphaned logs cannot be withdrawn");
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
            .filter(|o| o.logs_dropped)
            .map(|o| o.number)
            .collect();
        if let (Some(newest), Some(oldest)) = (dropped.first(), dropped.last()) {
            tracing::error!(chain = %self.chain.name, blocks = dropped.len(), oldest, newest, window_mib = REORG_WINDOW_BYTES >> 20, "reorg reached blocks whose logs the window had dropped to stay within its memory budget; their delivered logs cannot be withdrawn");
        }
        for orphan in orphans.into_iter().filter(|o| !o.logs.is_empty()) {
            let logs = orphan
                .logs
                .iter()
                .map(|l| Arc::new(l.as_removed()))
                .collect();
            self.emit(BlockLogs {
                chain_id: self.chain.chain_id,
                number: orphan.number,
                hash: orphan.hash,
                kind: BlockKind::Orphaned,
                logs,
                received_at: Instant::now(),
                in_flight: Default::default(),
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
        let raw: Vec<Box<RawValue>> = conn
            .request("eth_getLogs", json!([{"blockHash": header.hash}]))
            .await?;
        let mut logs = Vec::with_capacity(raw.len());
        for item in &raw {
            let log = ChainLog::from_raw(item).map_err(|e| IngestError::BadLog {
                block: header.number,
                reason: e.to_string(),
            })?;
            if log.block_hash != header.hash {
                return Err(IngestError::BadLog {
                    block: header.number,
                    reason: "log belongs to another block".into(),
                });
            }
            logs.push(Arc::new(log));
        }
        self.metrics
            .events_received
            .with_label_values(&[&self.chain.name])
            .inc_by(logs.len() as u64);
        let in_flight = self
            .output
            .reserve(&logs)
            .await
            .ok_or(IngestError::Stopped)?;
        let block = BlockLogs {
            chain_id: self.chain.chain_id,
            number: header.number,
            hash: header.hash,
            kind: BlockKind::Canonical,
            logs: logs.clone(),
            received_at,
            in_flight,
        };
        self.emit(block).await?;
        let relevant = &self.relevant;
        let relevant_logs = logs.into_iter().filter(|log| relevant(log)).collect();
        self.window
            .push(WindowBlock::new(header.number, header.hash, relevant_logs));
        Ok(())
    }

    async fn emit(&self, block: BlockLogs) -> Result<(), IngestError> {
        self.output
            .blocks
            .send(block)
            .await
            .map_err(|_| IngestError::Stopped)
    }
}

#[cfg(test)]
mod tests;
