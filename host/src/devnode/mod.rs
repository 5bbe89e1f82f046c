//! A local replay node for newcomers, experiments and load tests (`pipeline dev-node`, `pipeline
//! dev`, the load harness): it serves a [`Chain`] of recorded mainnet logs over WebSocket JSON-RPC —
//! `newHeads`, `eth_getLogs` (by block hash or over a range, filtered), `eth_getBlockByNumber`,
//! `eth_getBlockByHash`, `eth_chainId`, `eth_blockNumber` — and publishes a new head every block
//! interval, so the host's real ingest path runs against it.

pub mod chain;
mod rpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use chain::{Chain, ChainSpec, LogSource};

/// Heads a slow subscriber may fall behind before it skips some (the host fills gaps by number).
const HEAD_BUFFER: usize = 1024;

/// The node's state shared by the publisher and every connection.
pub struct DevNode {
    chain: Chain,
    head: AtomicU64,
    heads: broadcast::Sender<u64>,
}

/// A published head: its number and the moment it was sent to subscribers.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub number: u64,
    pub at: Instant,
}

impl DevNode {
    pub fn new(chain: Chain) -> Arc<DevNode> {
        let (heads, _) = broadcast::channel(HEAD_BUFFER);
        Arc::new(DevNode {
            chain,
            head: AtomicU64::new(0),
            heads,
        })
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Makes block `number` the head and notifies every `newHeads` subscriber.
    pub fn publish(&self, number: u64) -> Published {
        self.head.store(number, Ordering::SeqCst);
        let at = Instant::now();
        // No subscriber yet is fine: a host that connects later catches up from `latest`.
        let _ = self.heads.send(number);
        Published { number, at }
    }

    /// Serves JSON-RPC on `listener` until `shutdown`; each connection is its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let node = self.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(
                        async move { rpc::connection(node, stream, peer, shutdown).await },
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "dev-node: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Publishes blocks `head + 1 ..` every `interval` (on a fixed schedule, so a late tick does not
    /// slow the rate), calling `on_publish` for each, until `blocks` were published or `shutdown`.
    pub async fn run_chain(
        &self,
        interval: Duration,
        blocks: Option<u64>,
        shutdown: CancellationToken,
        mut on_publish: impl FnMut(Published),
    ) {
        let first = self.head() + 1;
        let started = tokio::time::Instant::now();
        for i in 0u64.. {
            if blocks.is_some_and(|limit| i >= limit) {
                return;
            }
            let due = started + interval.saturating_mul(u32::try_from(i + 1).unwrap_or(u32::MAX));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
            on_publish(self.publish(first + i));
        }
    }
}

/// Binds the node's listener; `addr` with port 0 picks a free port.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("dev-node cannot listen on {addr}: {e}"))?;
    let url = format!("ws://{}", listener.local_addr()?);
    Ok((listener, url))
}

/// `pipeline dev-node` options.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeOptions {
    #[arg(long, default_value = "127.0.0.1:8546")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 1)]
    pub chain_id: u64,
    /// Every recorded log, or only ERC-20 transfers spread over --tokens contracts.
    #[arg(long, value_enum, default_value_t = LogSource::Recorded)]
    pub source: LogSource,
    #[arg(long, default_value_t = 100)]
    pub tokens: usize,
    /// Events per second (logs per block = rate × block interval).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 100)]
    pub block_ms: u64,
    /// Stop publishing after this many blocks (the node keeps answering).
    #[arg(long)]
    pub blocks: Option<u64>,
    /// Block hashes derive from it (default: random, so every run is a new chain).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// How often the standalone node reports its head.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Runs the node alone until `shutdown`, printing its URL and, periodically, its head.
pub async fn run_standalone(
    options: NodeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spec = ChainSpec::paced(
        options.chain_id,
        options.source,
        options.tokens,
        options.rate,
        options.block_ms,
        options.seed.unwrap_or_else(rand::random),
    )?;
    let logs_per_block = spec.logs_per_block;
    let node = DevNode::new(Chain::starting_now(spec)?);
    let (listener, url) = bind(options.listen).await?;
    println!(
        "dev-node: serving {url} — chain {}, {logs_per_block} {:?} logs per block every {} ms ({:.0} events/s)",
        options.chain_id,
        options.source,
        options.block_ms,
        logs_per_block as f64 * 1000.0 / options.block_ms as f64
    );
    if options.source == LogSource::Transfers {
        let tokens = node.chain().token_addresses();
        println!(
            "dev-node: token contracts {} … {}",
            tokens.first().map_or("", String::as_str),
            tokens.last().map_or("", String::as_str)
        );
    }
    tokio::spawn(node.clone().serve(listener, shutdown.clone()));
    let mut last_report = Instant::now();
    node.run_chain(
        Duration::from_millis(options.block_ms),
        options.blocks,
        shutdown.clone(),
        |published| {
            if last_report.elapsed() >= REPORT_EVERY {
                last_report = Instant::now();
                println!("dev-node: head {}", published.number);
            }
        },
    )
    .await;
    println!(
        "dev-node: published {} blocks; still answering until stopped",
        node.head()
    );
    shutdown.cancelled().await;
    Ok(())
}
