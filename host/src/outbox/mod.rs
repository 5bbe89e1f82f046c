//! Makes each matched batch durable in one transaction (deliveries + parked events + the stored
//! reorg window's blocks + cursor),
//! then hands the new deliveries to the delivery workers straight from memory. Nothing goes out
//! before it is durable; a write that fails is retried, holding back (not dropping) the pipeline.
//! Ordered deliveries and sealed batches are left to the poller (woken at once): an ordered one
//! may go only when it heads its key, and a batch's body is built in the store.

pub mod sealer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::deliver::poller::Wake;
use crate::matcher::MatchedBatch;
use crate::metrics::Metrics;
use crate::store::{InsertedDelivery, Store, WriteStats};

/// A delivery ready to attempt, as the workers receive it.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub id: String,
    /// The delivery row's key, which its outcome is written back by.
    pub seq: i64,
    pub endpoint_id: String,
    pub body: Arc<str>,
    /// Attempts already made.
    pub attempts: i64,
    /// When the chain event arrived, for first attempts from the hot path.
    pub received_at: Option<Instant>,
    /// The row's lease when this job was written or claimed: the job may be sent only well
    /// before it, and its outcome is recorded only while the row still carries it.
    pub lease_until: i64,
    /// An ordered delivery (claimed by the poller only when it heads its key).
    pub ordered: bool,
}

/// Runs until the matcher closes its sender.
pub async fn run(
    store: Store,
    mut input: mpsc::Receiver<MatchedBatch>,
    deliveries: mpsc::Sender<DeliveryJob>,
    metrics: Metrics,
    lease_ms: i64,
    poller: Wake,
) {
    while let Some(batch) = input.recv().await {
        let (inserted, stats) = write_until_durable(&store, &batch, lease_ms, &metrics).await;
        for (chain_id, written) in &batch.written {
            if !stats.fenced.contains(chain_id) {
                written.set(); // ingest's window may now let go of the block's logs
            }
        }
        let lease_until = stats.lease_until;
        let mut for_poller = stats.sealed > 0;
        let seq_of: HashMap<String, i64> = inserted.into_iter().map(|d| (d.id, d.seq)).collect();
        let received = batch
            .received_at
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat(None));
        for (delivery, received_at) in batch.write.deliveries.into_iter().zip(received) {
            let Some(&seq) = seq_of.get(&delivery.id) else {
                continue; // a replay of a delivery that already exists
            };
            if delivery.is_held() {
                continue; // awaiting confirmations
            }
            if delivery.ordering_key.is_some() {
                for_poller = true; // sent when it heads its key: the poller claims it
                continue;
            }
            let job = DeliveryJob {
                id: delivery.id,
                seq,
                endpoint_id: delivery.endpoint_id,
                body: Arc::from(delivery.body),
                attempts: 0,
                received_at,
                lease_until,
                ordered: false,
            };
            if deliveries.send(job).await.is_err() {
                // The row is durable and leased; once the lease ends the retry poller sends it.
                tracing::warn!("delivery stage stopped; outbox ends");
                return;
            }
        }
        if for_poller {
            poller.notify_one();
        }
        metrics
            .queue_depth
            .with_label_values(&["deliver_input"])
            .set((deliveries.max_capacity() - deliveries.capacity()) as i64);
    }
    tracing::debug!("matcher closed; outbox drained");
}

async fn write_until_durable(
    store: &Store,
    batch: &MatchedBatch,
    lease_ms: i64,
    metrics: &Metrics,
) -> (Vec<InsertedDelivery>, WriteStats) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.write_batch(&batch.write, lease_ms).await {
            Ok((inserted, stats)) => {
                metrics
                    .db_statements
                    .with_label_values(&["outbox"])
                    .inc_by(stats.statements);
                if !stats.fenced.is_empty() {
                    // Not an error of this replica's: it lost the chain and the new owner ingests
                    // these blocks again from its own cursor.
                    tracing::warn!(chains = ?stats.fenced, "another replica owns these chains now; this batch's cursor and deliveries for them were not written");
                    metrics
                        .cursor_writes_fenced
                        .inc_by(stats.fenced.len() as u64);
                }
                return (inserted, stats);
            }
            Err(error) => {
                metrics.db_errors.with_label_values(&["outbox"]).inc();
                tracing::error!(%error, deliveries = batch.write.deliveries.len(), retry_in_ms = backoff.as_millis() as u64, "outbox write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
