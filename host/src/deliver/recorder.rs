//! Writes attempt outcomes back to the store in batches: one UPDATE and one INSERT for however
//! many outcomes are waiting, so delivery bookkeeping stays off the per-event cost.
//!
//! One outcome the database refuses must not cost the others theirs: a refused batch is split
//! in halves, down to single rows, and each part written on its own; a single row that is still
//! refused is written without its response body (the only receiver-controlled text) and with an
//! error saying why. An outcome that is not recorded keeps its row leased, and when the lease
//! expires the delivery is sent again — so dropping a batch for one bad row re-sent hundreds of
//! healthy deliveries.

use std::time::Duration;

use tokio::sync::mpsc;

use super::client::sanitise;
use super::poller::Wake;
use crate::metrics::Metrics;
use crate::store::{AttemptResult, Store, StoreError};

/// Outcomes written in one transaction at most (four statements' worth of rows each way). When
/// the store is behind, a larger transaction records more per commit: at 20K events/s offered on
/// SQLite, 500 → 2,000 delivered 8.5–10.2K → 11.4–12.0K webhooks/s while the chain ran and drained
/// the backlog in 9–10 s instead of 12–15 s (BENCHMARKS.md, "Session of 2026-12-03"). At lower
/// rates `LINGER` ends a group long before it is this large.
const MAX_BATCH: usize = 4 * crate::store::MAX_ROWS_PER_STATEMENT;
const WRITE_ATTEMPTS: u32 = 5;
/// How long the first outcome of a group waits for more. Recording is off the latency path (the
/// webhook is already answered; rows stay leased for minutes), so waiting a little turns a block's
/// many answers into one UPDATE + one INSERT instead of a few small ones.
const LINGER: Duration = Duration::from_millis(25);
/// How long an outcome waits for its batch's write to commit (`[delivery] send_before_commit`).
const SEQ_PATIENCE: Duration = Duration::from_secs(30);
/// Bytes of the database's refusal kept in the attempt's error.
const MAX_REFUSAL_TEXT: usize = 300;

/// Runs until every worker has dropped its sender, flushing what remains.
/// `poller` is woken after a write that recorded an ordered delivery's outcome: the next
/// delivery of its key may go now.
pub async fn run(
    store: Store,
    mut results: mpsc::Receiver<AttemptResult>,
    metrics: Metrics,
    poller: Wake,
) {
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
        number_pending(&mut batch).await;
        write(&store, &batch, &metrics).await;
        if batch.iter().any(|r| r.ordered) {
            poller.notify_one();
        }
        batch.clear();
    }
    tracing::debug!("delivery workers closed; recorder drained");
}

/// Gives each outcome of a job sent before its batch's write committed the seq of its row, once
/// that write has committed, and leaves out those whose row the write did not insert (an id
/// already stored, a chain now another replica's): no row carries their lease. A write that does
/// not commit within [`SEQ_PATIENCE`] loses its outcomes here; its rows keep their lease and are
/// sent again when it ends.
async fn number_pending(batch: &mut Vec<AttemptResult>) {
    if batch.iter().all(|result| result.pending_seq.is_none()) {
        return;
    }
    let mut numbered = Vec::with_capacity(batch.len());
    for mut result in batch.drain(..) {
        if let Some(mut pending) = result.pending_seq.take() {
            let Some(seq) = pending.seq_of(&result.id, SEQ_PATIENCE).await else {
                tracing::debug!(delivery = %result.id, "its batch's write did not insert it; outcome not recorded");
                continue;
            };
            result.seq = seq;
        }
        numbered.push(result);
    }
    *batch = numbered;
}

/// How one write of a part ended.
enum Written {
    Recorded,
    /// The database answered and refused the statement: retrying the same rows cannot help.
    Refused(StoreError),
    /// The database could not be reached for all attempts; the rows keep their lease.
    Unavailable,
}

/// Writes `batch`, splitting what the database refuses until the row at fault is alone.
async fn write(store: &Store, batch: &[AttemptResult], metrics: &Metrics) {
    // A stack of parts, first half on top, so outcomes are written in the order they came.
    let mut parts: Vec<&[AttemptResult]> = vec![batch];
    while let Some(part) = parts.pop() {
        match write_part(store, part, metrics).await {
            Written::Recorded => {}
            Written::Unavailable => return,
            Written::Refused(error) => match part {
                [single] => write_without_body(store, single, &error, metrics).await,
                _ => {
                    tracing::warn!(%error, results = part.len(), "the database refused a batch of delivery results; splitting it");
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push(second);
                    parts.push(first);
                }
            },
        }
    }
}

/// The last resort for one refused outcome: no response body, and an error that says why.
async fn write_without_body(
    store: &Store,
    result: &AttemptResult,
    refusal: &StoreError,
    metrics: &Metrics,
) {
    let why = sanitise(refusal.to_string().as_bytes(), MAX_REFUSAL_TEXT);
    let note = format!("response body not stored: the database refused it ({why})");
    let error = match &result.error {
        Some(error) => format!("{}; {note}", sanitise(error.as_bytes(), usize::MAX)),
        None => note,
    };
    let stripped = AttemptResult {
        error: Some(error),
        response_body: None,
        ..result.clone()
    };
    tracing::warn!(delivery = %result.id, error = %refusal, "delivery result refused by the database; recording it without its response body");
    if let Written::Refused(error) =
        write_part(store, std::slice::from_ref(&stripped), metrics).await
    {
        // Only our own ids, numbers and escaped text remain: this is not expected to happen.
        tracing::error!(delivery = %result.id, %error, "delivery result refused even without its body; the delivery will be retried when its lease expires");
    }
}

/// One write of `part`, retried with backoff while the database is unreachable.
async fn write_part(store: &Store, part: &[AttemptResult], metrics: &Metrics) -> Written {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.record_results(part).await {
            Ok(statements) => {
                metrics
                    .db_statements
                    .with_label_values(&["delivery_results"])
                    .inc_by(statements);
                return Written::Recorded;
            }
            Err(error) if is_refusal(&error) => {
                metrics
                    .db_errors
                    .with_label_values(&["delivery_results"])
                    .inc();
                return Written::Refused(error);
            }
            Err(error) if attempt < WRITE_ATTEMPTS => {
                metrics
                    .db_errors
                    .with_label_values(&["delivery_results"])
                    .inc();
                tracing::warn!(%error, results = part.len(), "recording delivery results failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(error) => {
                metrics
                    .db_errors
                    .with_label_values(&["delivery_results"])
                    .inc();
                // The rows keep their lease; when it expires they are attempted again, and the
                // receiver deduplicates by webhook-id. Nothing is lost, at worst sent twice.
                tracing::error!(%error, results = part.len(), "recording delivery results failed; deliveries will be retried");
            }
        }
    }
    Written::Unavailable
}

/// The database received the statement and refused it (a value it cannot hold, a constraint),
/// as opposed to not being reachable.
fn is_refusal(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Database(sqlx::Error::Database(_))
            | StoreError::Sqlite(rusqlite::Error::SqliteFailure(..))
    )
}

#[cfg(test)]
mod tests;
