//! Groups blocks of logs into batches: up to `max_events`, or whatever is queued when the input runs
//! dry — large batches under load, no added latency when idle. Does no I/O.

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::event::{Batch, BlockLogs};
use crate::metrics::Metrics;

/// Runs until every ingest sender is dropped, then flushes what it holds and returns.
pub async fn run(
    config: BatchConfig,
    mut input: mpsc::Receiver<BlockLogs>,
    output: mpsc::Sender<Batch>,
    metrics: Metrics,
) {
    while let Some(first) = input.recv().await {
        let batch = fill(&config, first, &mut input);
        metrics.batch_size.observe(batch.n_events as f64);
        metrics
            .queue_depth
            .with_label_values(&["batch_input"])
            .set(input.len() as i64);
        if output.send(batch).await.is_err() {
            tracing::warn!("matcher stopped; batch stage ends");
            return;
        }
    }
    tracing::debug!("ingest closed; batch stage drained");
}

/// Takes queued blocks after `first` without waiting: stops at `max_events`, at `max_wait` or when
/// the queue is empty. A block is never split, so a batch may exceed `max_events` by one block.
pub fn fill(
    config: &BatchConfig,
    first: BlockLogs,
    input: &mut mpsc::Receiver<BlockLogs>,
) -> Batch {
    let started = Instant::now();
    let mut batch = Batch::default();
    push(&mut batch, first);
    while batch.n_events < config.max_events && started.elapsed() < config.max_wait() {
        match input.try_recv() {
            Ok(block) => push(&mut batch, block),
            Err(_) => break,
        }
    }
    batch
}

fn push(batch: &mut Batch, block: BlockLogs) {
    batch.n_events += block.logs.len();
    batch.blocks.push(block);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BlockKind;
    use alloy_primitives::B256;

    fn block(number: u64, n_logs: usize) -> BlockLogs {
        let log = crate::event::ChainLog::from_json(
            r#"{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"0x1","blockHash":"0x0000000000000000000000000000000000000000000000000000000000000001","transactionHash":"0x0000000000000000000000000000000000000000000000000000000000000002","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#,
        )
        .unwrap();
        BlockLogs {
            chain_id: 1,
            number,
            hash: B256::ZERO,
            kind: BlockKind::Canonical,
            logs: (0..n_logs)
                .map(|_| std::sync::Arc::new(log.clone()))
                .collect(),
            received_at: std::time::Instant::now(),
            in_flight: Default::default(),
            window_row: None,
        }
    }

    fn config(max_events: usize) -> BatchConfig {
        BatchConfig {
            max_events,
            max_wait_ms: 100,
            max_in_flight_mib: 16,
        }
    }

    #[tokio::test]
    async fn flushes_at_once_when_the_queue_is_empty() {
        let (_tx, mut rx) = mpsc::channel(10);
        let batch = fill(&config(100), block(1, 3), &mut rx);
        assert_eq!(batch.n_events, 3);
        assert_eq!(batch.blocks.len(), 1);
    }

    #[tokio::test]
    async fn takes_queued_blocks_up_to_max_events_without_splitting_one() {
        let (tx, mut rx) = mpsc::channel(10);
        for n in 2..=5 {
            tx.try_send(block(n, 40)).unwrap();
        }
        let batch = fill(&config(100), block(1, 40), &mut rx);
        // 40 + 40 = 80 < 100, so a third block is taken whole (120); the rest stay queued.
        assert_eq!(batch.blocks.len(), 3);
        assert_eq!(batch.n_events, 120);
        assert_eq!(rx.len(), 2);
    }

    #[tokio::test]
    async fn run_drains_and_ends_when_input_closes() {
        let (tx, rx) = mpsc::channel(10);
        let (out_tx, mut out_rx) = mpsc::channel(10);
        tx.try_send(block(1, 1)).unwrap();
        tx.try_send(block(2, 1)).unwrap();
        drop(tx);
        run(config(100), rx, out_tx, Metrics::new().unwrap()).await;
        let batch = out_rx.recv().await.unwrap();
        assert_eq!(batch.n_events, 2);
        assert!(out_rx.recv().await.is_none());
    }
}
