//! Writes attempt outcomes back to the store in batches: one UPDATE and one INSERT for however
//! many outcomes are waiting, so delivery bookkeeping stays off the per-event cost.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::store::{AttemptResult, Store};

const MAX_BATCH: usize = 500;
const WRITE_ATTEMPTS: u32 = 5;
/// How long the first outcome of a group waits for more. Recording is off the latency path (the
/// webhook is already answered; rows stay leased for minutes), so waiting a little turns a block's
/// many answers into one UPDATE + one INSERT instead of a few small ones.
const LINGER: Duration = Duration::from_millis(25);

/// Runs until every worker has dropped its sender, flushing what remains.
pub async fn run(store: Store, mut results: mpsc::Receiver<AttemptResult>, metrics: Metrics) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = results.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some(result)) => batch.push(result),
                // Closed (write what we have; the outer loop then ends) or lingered long enough.
                Ok(None) | Err(_) => break,
            }
        }
        write(&store, &batch, &metrics).await;
        batch.clear();
    }
    tracing::debug!("delivery workers closed; recorder drained");
}

async fn write(store: &Store, batch: &[AttemptResult], metrics: &Metrics) {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.record_results(batch).await {
            Ok(statements) => {
                metrics
                    .db_statements
                    .with_label_values(&["delivery_results"])
                    .inc_by(statements);
                return;
            }
            Err(error) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(%error, results = batch.len(), "recording delivery results failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(error) => {
                // The rows keep their lease; when it expires they are attempted again, and the
                // receiver deduplicates by webhook-id. Nothing is lost, at worst sent twice.
                tracing::error!(%error, results = batch.len(), "recording delivery results failed; deliveries will be retried");
            }
        }
    }
}
