//! One task per chain: follow `newHeads`, fetch each block's logs with `eth_getLogs {blockHash}`,
//! fill gaps from the durable cursor, walk reorgs back to the common ancestor and withdraw orphaned
//! logs. Reconnects (rotating through the chain's URLs) with backoff and jitter, and never gives up.
//!
//! A node is not trusted: its messages are bounded in bytes ([`NodeLimits`]), every number is
//! checked (never a wrapping cast), and an answer that disagrees with the header it was asked for
//! is refused whole — the connection is dropped and the next URL tried, nothing of it delivered.

mod backfill;
mod chain;
mod check;
mod durable;
mod filter;
mod follow;
mod health;
mod ownership;
pub mod rpc;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ChainConfig;
use crate::event::{BlockLogs, Budget, ChainLog, InFlight};
use crate::metrics::Metrics;
use crate::store::Store;
use chain::Window;
pub use filter::{FilterSource, LogFilter};
use follow::ChainIngest;
pub use health::{ChainHealth, LastError};
use rpc::RpcError;

/// Every request to a node is bounded by this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Reorgs deeper than this many blocks cannot withdraw logs (they are rare after the merge).
pub const REORG_WINDOW: usize = 64;
/// The window's logs take at most this much memory: at high matched rates the oldest blocks keep
/// only their headers (a reorg reaching them is reported as an error).
const REORG_WINDOW_BYTES: usize = 16 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How many bytes a node may make the host hold at once (`[ingest]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// One WebSocket message or frame; tungstenite refuses a larger one before buffering it.
    pub max_message_bytes: usize,
    /// One block's `eth_getLogs` answer (its JSON text), checked before its logs are parsed.
    pub max_logs_bytes: usize,
    /// Most blocks in one `eth_getLogs` range of a catch-up.
    pub max_range_blocks: u64,
    /// A block's `eth_getLogs` asks only for the subscriptions' union (see `LogFilter`).
    pub filter_at_node: bool,
}

#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("node reports chain id {actual}, configured {expected}")]
    WrongChain { expected: u64, actual: u64 },
    #[error("node sent a malformed log for block {block}: {reason}")]
    BadLog { block: u64, reason: String },
    #[error("node answered {method} with a header that disagrees with the request: {reason}")]
    BadHeader {
        method: &'static str,
        reason: String,
    },
    #[error(
        "eth_getLogs answer for block {block} is {bytes} bytes, over the budget of {limit} bytes (ingest.max_logs_mib)"
    )]
    LogsTooLarge {
        block: u64,
        bytes: usize,
        limit: usize,
    },
    #[error("stored cursor is unusable: {0}")]
    BadCursor(String),
    #[error("pipeline stopped")]
    Stopped,
    #[error("lost ownership of the chain (database session ended)")]
    LostOwnership,
    #[error("cannot store the block for the reorg window: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("no new head for {silent_s} s (stale after {limit_s} s)")]
    Stale { silent_s: u64, limit_s: u64 },
}

/// Whether a log could have been delivered (some subscription's address/topic filter matches it):
/// only such logs need withdrawing after a reorg, so only they are kept in the reorg window.
pub type Relevance = Arc<dyn Fn(&ChainLog) -> bool + Send + Sync>;

/// What one chain's ingest task follows and reports to.
pub struct ChainTask {
    pub chain: ChainConfig,
    pub limits: NodeLimits,
    pub health: Arc<ChainHealth>,
    pub relevant: Relevance,
    /// What a catch-up's range requests ask for: the union of the subscriptions' filters.
    pub filter: FilterSource,
}

/// Where ingest sends blocks, and the in-flight memory budget (KiB permits) they are charged to.
#[derive(Clone)]
pub struct Downstream {
    blocks: mpsc::Sender<BlockLogs>,
    budget: Budget,
}

impl Downstream {
    /// A downstream with a budget of `mib` MiB.
    pub fn with_budget(blocks: mpsc::Sender<BlockLogs>, mib: usize) -> Downstream {
        Downstream {
            blocks,
            budget: Budget::mib(mib),
        }
    }

    pub fn with_budget_kib(blocks: mpsc::Sender<BlockLogs>, kib: u32) -> Downstream {
        Downstream {
            blocks,
            budget: Budget::kib(kib),
        }
    }

    /// Waits for room in the budget for `logs` (their [`ChainLog::memory_bytes`]). A block larger
    /// than the whole budget waits for all of it, so it still passes, alone.
    async fn reserve(&self, logs: &[Arc<ChainLog>]) -> InFlight {
        let bytes = logs.iter().map(|log| log.memory_bytes()).sum();
        self.budget.charge(bytes).await
    }
}

/// Follows one chain until `shutdown`; dropping `output` on return tells the next stage to drain.
pub async fn run(
    task: ChainTask,
    store: Store,
    output: Downstream,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut ingest = ChainIngest {
        relevant: task.relevant,
        window: Window::new(REORG_WINDOW, REORG_WINDOW_BYTES),
        chain: task.chain,
        limits: task.limits,
        output,
        metrics,
        health: task.health,
        lock: None,
        lock_checked_at: Instant::now(),
        best_head: None,
        progress_at: Instant::now(),
        store: store.clone(),
        range: backfill::RangeSize::new(task.limits.max_range_blocks),
        filter: task.filter,
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
            ingest.seed_from_cursor().await;
        }
        let urls = &ingest.chain.ws_urls;
        let Some(url) = urls.get(attempt % urls.len().max(1)).cloned() else {
            tracing::error!(chain = %ingest.chain.name, "no ws_urls configured; not ingesting");
            break;
        };
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
        let shown = crate::redact::url(&url);
        // Errors quote the node's values (serde's "invalid value: string …"): kept short.
        let error = error.to_string();
        let error = rpc::clip(&error, 500);
        tracing::warn!(chain = %ingest.chain.name, url = %shown, error, retry_in_ms = delay.as_millis(), "chain connection failed; reconnecting");
        ingest.health.set_error(&shown, error);
        ingest
            .metrics
            .ws_reconnects
            .with_label_values(&[&ingest.chain.name])
            .inc();
        // The next URL: a node that misbehaves is left for the next in the list.
        attempt = attempt.wrapping_add(1);
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

#[cfg(test)]
mod tests;
