//! Makes each matched batch durable in one transaction (deliveries + parked events + the stored
//! reorg window's blocks + cursor),
//! then hands the new deliveries to the delivery workers straight from memory, with the batches
//! the write sealed (their bodies built by the write). By default nothing goes out before it is
//! durable; a write that fails is retried, holding back (not dropping) the pipeline. Ordered
//! deliveries and batches, and batches held for more confirmations, are left to the poller (woken
//! at once): an ordered one may go only when it heads its key.
//!
//! With `[delivery] send_before_commit` a batch's deliveries are handed on first and written
//! while they are sent: the write no longer stands between a block and its webhooks. Their
//! lease is fixed before the write (the write is given its time) and their seq is learned from
//! it ([`PendingSeq`]). What that gives up is in `send_before_commit`'s documentation
//! (`config/stages.rs`).

pub mod sealer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::deliver::poller::Wake;
use crate::deliver::{JobSender, NotSent};
use crate::event::InFlight;
use crate::matcher::MatchedBatch;
use crate::metrics::Metrics;
use crate::store::{
    InsertedDelivery, NewDelivery, PendingSeq, Store, WriteStats, now_ms, pending_seqs,
};

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
    /// Sent before its batch's write committed: `seq` is not known yet (0), and comes from here.
    pub pending_seq: Option<PendingSeq>,
    /// Its body's share of the room for jobs in memory, taken by the [`JobSender`] that handed
    /// it to the dispatcher and returned when the job is dropped, after its attempt.
    pub room: InFlight,
}

/// The outbox's settings (from `[delivery]`).
#[derive(Debug, Clone, Copy)]
pub struct OutboxConfig {
    pub lease_ms: i64,
    /// Hand a batch's deliveries to the workers before its write rather than after.
    pub send_before_commit: bool,
}

/// Runs until the matcher closes its sender.
pub async fn run(
    store: Store,
    mut input: mpsc::Receiver<MatchedBatch>,
    deliveries: JobSender,
    metrics: Metrics,
    config: OutboxConfig,
    poller: Wake,
) {
    while let Some(batch) = input.recv().await {
        let sent = if config.send_before_commit {
            send_before_commit(&store, batch, &deliveries, &metrics, config.lease_ms).await
        } else {
            send_after_commit(&store, batch, &deliveries, &metrics, config.lease_ms).await
        };
        let Some(for_poller) = sent else {
            // The rows are durable and leased; once the leases end the retry poller sends them.
            tracing::warn!("delivery stage stopped; outbox ends");
            return;
        };
        if for_poller {
            poller.notify_one();
        }
        metrics
            .queue_depth
            .with_label_values(&["deliver_input"])
            .set(deliveries.queued() as i64);
    }
    tracing::debug!("matcher closed; outbox drained");
}

/// Writes `batch`, then hands on its new deliveries. Returns whether the poller has work from
/// it (batches sealed for it, ordered deliveries), or `None` once the delivery stage has stopped.
async fn send_after_commit(
    store: &Store,
    batch: MatchedBatch,
    deliveries: &JobSender,
    metrics: &Metrics,
    lease_ms: i64,
) -> Option<bool> {
    let (inserted, mut stats) = write_until_durable(store, &batch, metrics, None, lease_ms).await;
    settle(&batch, &stats);
    let seq_of: HashMap<String, i64> = inserted.into_iter().map(|d| (d.id, d.seq)).collect();
    let (sendable, ordered) = sendable(&batch);
    for (delivery, received_at) in sendable {
        let Some(&seq) = seq_of.get(&delivery.id) else {
            continue; // a replay of a delivery that already exists
        };
        let job = DeliveryJob::new(delivery, seq, stats.lease_until, received_at, None);
        deliveries.send(job).await.ok()?;
    }
    let for_poller = ordered || stats.sealed > stats.sealed_to_send.len();
    send_sealed(&mut stats, deliveries).await?;
    Some(for_poller)
}

/// Hands on the batches the write sealed that go from memory ([`WriteStats::sealed_to_send`]),
/// after the write's single-event deliveries.
async fn send_sealed(stats: &mut WriteStats, deliveries: &JobSender) -> Option<()> {
    for sealed in std::mem::take(&mut stats.sealed_to_send) {
        let job = DeliveryJob {
            id: sealed.id,
            seq: sealed.seq,
            endpoint_id: sealed.endpoint_id,
            body: sealed.body,
            attempts: 0,
            received_at: None,
            lease_until: stats.lease_until,
            ordered: false,
            pending_seq: None,
            room: InFlight::default(),
        };
        deliveries.send(job).await.ok()?;
    }
    Some(())
}

/// Hands on `batch`'s deliveries, then writes it, then tells their jobs the rows' seqs. Returns
/// what [`send_after_commit`] does.
///
/// Only into free room: a delivery the workers' queue has no room for waits for the write and goes
/// after it with its seq, as by default. The outbox never waits for the workers before the write,
/// so the recorder, which waits for the write before recording an early job's outcome, can never
/// be what the write is waiting for.
async fn send_before_commit(
    store: &Store,
    batch: MatchedBatch,
    deliveries: &JobSender,
    metrics: &Metrics,
    lease_ms: i64,
) -> Option<bool> {
    // One time for every attempt of the write, so the rows carry the lease the jobs were given.
    let now = now_ms();
    let lease_until = now + lease_ms;
    let (promise, pending) = pending_seqs();
    let (sendable, ordered) = sendable(&batch);
    let (early, after_commit) = hand_on_what_fits(sendable, deliveries, lease_until, &pending);
    let (inserted, mut stats) =
        write_until_durable(store, &batch, metrics, Some(now), lease_ms).await;
    settle(&batch, &stats);
    let seq_of: HashMap<&str, i64> = inserted.iter().map(|d| (d.id.as_str(), d.seq)).collect();
    let unwritten = early.iter().filter(|id| !seq_of.contains_key(*id)).count();
    if unwritten > 0 {
        tracing::debug!(
            unwritten,
            "deliveries sent before their write were not inserted by it (ids already stored, or a chain now another replica's); their outcomes are not recorded"
        );
    }
    promise.written(&inserted);
    if deliveries.is_closed() {
        return None;
    }
    for (delivery, received_at) in after_commit {
        let Some(&seq) = seq_of.get(delivery.id.as_str()) else {
            continue; // a replay of a delivery that already exists
        };
        let job = DeliveryJob::new(delivery, seq, lease_until, received_at, None);
        deliveries.send(job).await.ok()?;
    }
    let for_poller = ordered || stats.sealed > stats.sealed_to_send.len();
    send_sealed(&mut stats, deliveries).await?;
    Some(for_poller)
}

/// Hands on, as jobs waiting for their seq, the deliveries the workers' queue has room for now.
/// Returns the ids handed on and the rest in order, from the first that found no room (none
/// after the queue is closed: the batch is still written, and its rows are what the poller sends).
fn hand_on_what_fits<'a>(
    sendable: Vec<(&'a NewDelivery, Option<Instant>)>,
    deliveries: &JobSender,
    lease_until: i64,
    pending: &PendingSeq,
) -> (Vec<&'a str>, Vec<(&'a NewDelivery, Option<Instant>)>) {
    let mut early = Vec::with_capacity(sendable.len());
    let mut rest = sendable.into_iter();
    for (delivery, received_at) in rest.by_ref() {
        let job = DeliveryJob::new(delivery, 0, lease_until, received_at, Some(pending.clone()));
        match deliveries.try_send(job) {
            Ok(()) => early.push(delivery.id.as_str()),
            Err(NotSent::Full) => {
                let after_commit = std::iter::once((delivery, received_at))
                    .chain(rest)
                    .collect();
                return (early, after_commit);
            }
            Err(NotSent::Closed) => break,
        }
    }
    (early, Vec::new())
}

/// The deliveries of `batch` that go to the workers from memory, with their arrival times, and
/// whether it has ordered ones (sent when they head their key: the poller claims them). Held
/// ones wait for confirmations.
fn sendable(batch: &MatchedBatch) -> (Vec<(&NewDelivery, Option<Instant>)>, bool) {
    let received = (batch.received_at.iter().copied().map(Some)).chain(std::iter::repeat(None));
    let mut ordered = false;
    let sendable = (batch.write.deliveries.iter().zip(received))
        .filter(|(delivery, _)| {
            ordered |= delivery.ordering_key.is_some();
            !delivery.is_held() && delivery.ordering_key.is_none()
        })
        .collect();
    (sendable, ordered)
}

/// Lets ingest's window drop the batch's blocks' logs: they are stored now (not for a fenced
/// chain, whose blocks were not written).
fn settle(batch: &MatchedBatch, stats: &WriteStats) {
    for (chain_id, written) in &batch.written {
        if !stats.fenced.contains(chain_id) {
            written.set();
        }
    }
}

impl DeliveryJob {
    fn new(
        delivery: &NewDelivery,
        seq: i64,
        lease_until: i64,
        received_at: Option<Instant>,
        pending_seq: Option<PendingSeq>,
    ) -> DeliveryJob {
        DeliveryJob {
            id: delivery.id.clone(),
            seq,
            endpoint_id: delivery.endpoint_id.clone(),
            body: Arc::from(delivery.body.as_str()),
            attempts: 0,
            received_at,
            lease_until,
            ordered: false,
            pending_seq,
            room: InFlight::default(),
        }
    }
}

/// Writes `batch`, retrying until it is durable. At `now` when given (the jobs already sent
/// carry the lease it makes), else at each attempt's time.
async fn write_until_durable(
    store: &Store,
    batch: &MatchedBatch,
    metrics: &Metrics,
    now: Option<i64>,
    lease_ms: i64,
) -> (Vec<InsertedDelivery>, WriteStats) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let at = now.unwrap_or_else(now_ms);
        match store.write_batch_at(&batch.write, at, lease_ms).await {
            Ok((inserted, stats)) => {
                metrics
                    .db_statements
                    .with_label_values(&["outbox"])
                    .inc_by(stats.statements);
                // Fields are evaluated only when debug is on: nothing is collected otherwise.
                tracing::debug!(
                    inserted = inserted.len(),
                    batched_events = batch.write.batch_events.len(),
                    sealed = stats.sealed,
                    parked = batch.write.parked.len(),
                    cursors = ?batch.write.cursors.iter().map(|c| c.block_number).collect::<Vec<_>>(),
                    "batch written"
                );
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

#[cfg(test)]
mod tests;
