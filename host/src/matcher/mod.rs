//! Turns a batch of blocks into outbox writes: the native index picks candidate subscriptions
//! per log, then each subscription with a plugin gets one WASM call for the batch, each its own
//! task on the call pool (`pool`: one thread per core, a thread of its own for a call the pool
//! cannot start within 2 ms). A call that outlives the batch's patience is finished later on its own
//! (`calls`): a slow plugin holds back only its own subscription, never the others' deliveries.

mod batches;
mod calls;
mod delivery;
pub mod index;
mod logbook;
mod plugins;
mod pool;
mod quarantine;
mod select;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::canary::CanaryFeed;
use crate::event::{Batch, Budget, ChainLog, EventType, InFlight, Written};
use crate::metrics::Metrics;
use crate::modes::BatchPolicy;
use crate::modes::batching::BodyPart;
use crate::plugin::{Decision, DecisionRef, Decisions, PluginRuntime};
use crate::store::{ChainBlock, OutboxWrite};
use calls::{Calls, Finished};
pub use delivery::{db_int, delivery_id, new_delivery, webhook_body};
pub use index::{Subscription, SubscriptionSet, SubscriptionStatus};
pub use logbook::{LogEntry, PluginLogBook};
use plugins::{PluginJob, PluginStates};
use select::{candidates, cursors, release_chains};

/// What the outbox receives: the write, plus when each event arrived (for end-to-end latency).
#[derive(Debug, Default)]
pub struct MatchedBatch {
    pub write: OutboxWrite,
    /// Arrival time per delivery, in the same order as `write.deliveries`.
    pub received_at: Vec<Instant>,
    /// `"block"` batches being assembled; they become deliveries before the batch is sent on.
    block_batches: Vec<batches::BlockBatch>,
    /// This batch's share of the matched-batch budget, returned when the outbox drops it.
    pub in_flight: InFlight,
    /// The ingest budget's permits of the blocks whose cursors this batch writes, also returned
    /// when the outbox drops it once the write has committed: until then the reorg window holds
    /// those blocks' logs (`WindowLogs::Writing`), and with these permits they stay inside
    /// `[batch] max_in_flight_mib`. Released at the end of matching instead, at 100K events/s
    /// with every event matched, they were ~57 MB of logs where the budget was 16 MiB.
    pub logs_in_flight: Vec<InFlight>,
    /// Per chain, the flags of the blocks whose `chain_blocks` rows are in `write.chain_blocks`:
    /// the outbox sets them once the write has committed (not for a fenced chain).
    pub written: Vec<(i64, Written)>,
}

impl MatchedBatch {
    /// About how much memory the batch holds: its rows' text plus a fixed cost per row.
    pub fn memory_bytes(&self) -> usize {
        const ROW: usize = 256;
        let w = &self.write;
        let deliveries: usize = w.deliveries.iter().map(|d| d.body.len() + ROW).sum();
        let events: usize = w
            .batch_events
            .iter()
            .map(|e| e.element.text_len() + ROW)
            .sum();
        let parked: usize = w.parked.iter().map(|p| p.log.len() + ROW).sum();
        let blocks: usize = w
            .chain_blocks
            .iter()
            .map(|b| b.block.logs.len() + ROW)
            .sum();
        deliveries + events + parked + blocks
    }

    /// Nothing to write: no rows, no cursor, no status change.
    pub fn is_empty(&self) -> bool {
        let w = &self.write;
        w.deliveries.is_empty()
            && w.batch_events.is_empty()
            && w.parked.is_empty()
            && w.cursors.is_empty()
            && w.status_changes.is_empty()
            && w.chain_blocks.is_empty()
    }
}

/// One candidate event for one subscription.
#[derive(Clone)]
pub struct Candidate {
    pub log: Arc<ChainLog>,
    pub chain_id: u64,
    pub event_type: EventType,
    pub received_at: Instant,
}

pub struct Matcher {
    subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
    states: PluginStates,
    /// The subscription snapshot last seen, to notice deletions.
    last_set: Option<Arc<SubscriptionSet>>,
    confirmations: HashMap<u64, u64>,
    metrics: Metrics,
    calls: Calls,
    /// Where decided batches of subscriptions with a canary go (never waited for).
    canary: CanaryFeed,
    /// Bytes of matched batches not yet through the outbox (`with_budget`); none: unbounded.
    budget: Option<Budget>,
}

impl Matcher {
    pub fn new(
        runtime: PluginRuntime,
        subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
        confirmations: HashMap<u64, u64>,
        log_book: PluginLogBook,
        metrics: Metrics,
    ) -> Matcher {
        Matcher {
            calls: Calls::new(runtime),
            subscriptions,
            states: PluginStates::new(log_book),
            last_set: None,
            confirmations,
            metrics,
            canary: CanaryFeed::off(),
            budget: None,
        }
    }

    /// Offers every decided batch of a subscription with a canary to `feed`.
    pub fn with_canary(self, feed: CanaryFeed) -> Matcher {
        Matcher {
            canary: feed,
            ..self
        }
    }

    /// Bounds the matched batches between this stage and the end of the outbox's write in bytes:
    /// when the outbox falls behind (a slow store), the matcher waits here, and ingest behind it,
    /// instead of queueing deliveries in memory (8 batches of a 10,000-log block each held
    /// ~130 MB of bodies at 100K events/s).
    pub fn with_budget(mut self, budget: Budget) -> Matcher {
        self.budget = Some(budget);
        self
    }

    /// Runs until the batch stage closes its sender and every straggling call has finished.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Batch>,
        output: mpsc::Sender<MatchedBatch>,
    ) {
        let mut input_open = true;
        while input_open || self.calls.has_running() {
            let matched = tokio::select! {
                batch = input.recv(), if input_open => match batch {
                    Some(batch) => {
                        let started = Instant::now();
                        let matched = self.process(batch).await;
                        self.metrics.batch_latency.observe(started.elapsed().as_secs_f64());
                        matched
                    }
                    None => {
                        input_open = false;
                        continue;
                    }
                },
                Some(matched) = self.next_straggler(), if self.calls.has_running() => matched,
            };
            if matched.is_empty() {
                continue;
            }
            let mut matched = matched;
            if let Some(budget) = &self.budget {
                matched.in_flight = budget.charge(matched.memory_bytes()).await;
            }
            if output.send(matched).await.is_err() {
                tracing::warn!("outbox stopped; matcher ends");
                return;
            }
        }
        tracing::debug!("batch stage closed; matcher drained");
    }

    /// Waits for the next straggling call and returns its results, with the cursors it was
    /// holding back. `None` when no call is running.
    pub async fn next_straggler(&mut self) -> Option<MatchedBatch> {
        let (_, finished) = self.calls.next_finished().await?;
        let mut matched = MatchedBatch::default();
        let set = self.subscriptions.borrow().clone();
        self.finish_call(&mut matched, finished);
        self.release_cursors(&mut matched, &set);
        Some(matched)
    }

    /// Matches and filters one batch.
    pub async fn process(&mut self, batch: Batch) -> MatchedBatch {
        let set = self.subscriptions.borrow().clone();
        if !self
            .last_set
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, &set))
        {
            let live: std::collections::HashSet<&str> =
                set.subscriptions.iter().map(|s| s.id.as_str()).collect();
            self.states.retain_live(&live, &self.metrics);
            self.last_set = Some(set.clone());
        }
        let mut matched = MatchedBatch::default();
        let per_subscription = candidates(&set, &batch);
        let cursors = cursors(&batch.blocks);
        let mut in_flight = Vec::with_capacity(batch.blocks.len());
        for mut block in batch.blocks {
            in_flight.push(std::mem::take(&mut block.in_flight));
            if let Some(row) = block.window_row.take() {
                let chain_id = i64::try_from(block.chain_id).unwrap_or(i64::MAX);
                matched.written.push((chain_id, row.written));
                let block = row.block;
                matched
                    .write
                    .chain_blocks
                    .push(ChainBlock { chain_id, block });
            }
        }
        let seq = self.calls.open(cursors, in_flight);
        let mut awaited = calls::Awaited::new();
        for (index, events) in per_subscription {
            let sub = set.subscriptions[index].clone();
            match &sub.plugin {
                None => match &sub.load_error {
                    Some(error) => {
                        self.metrics
                            .events_processed
                            .with_label_values(&["parked"])
                            .inc_by(events.len() as u64);
                        matched
                            .write
                            .parked
                            .extend(plugins::park(&sub, &events, error, None));
                    }
                    None => {
                        for event in &events {
                            self.push_delivery(&mut matched, &sub, event, None);
                        }
                        if sub.canary.is_some() {
                            // No plugin: every event is kept unchanged.
                            let live = Decisions::from(vec![Decision::Keep; events.len()]);
                            self.canary.offer(&sub, &events, &live);
                        }
                    }
                },
                Some(binding) => {
                    self.submit(&mut matched, seq, &sub, binding, events, &mut awaited)
                }
            }
        }
        self.await_calls(&mut matched, awaited).await;
        self.calls.close(seq);
        self.release_cursors(&mut matched, &set);
        matched
    }

    /// Starts the subscription's call for batch `seq`, or queues the events behind its running
    /// one (parking them if too many already wait). Calls of subscriptions not known to be slow
    /// go into `awaited`.
    fn submit(
        &mut self,
        matched: &mut MatchedBatch,
        seq: u64,
        sub: &Arc<Subscription>,
        binding: &index::PluginBinding,
        events: Vec<Candidate>,
        awaited: &mut calls::Awaited,
    ) {
        if self.calls.is_busy(&sub.id) {
            if let Some(overflow) = self.calls.enqueue(seq, sub, binding, events) {
                self.park_too_slow(matched, sub, &overflow);
            }
            return;
        }
        let job = self.states.job(sub, binding, events, &self.metrics);
        let slow = job.known_slow();
        let id = self.calls.spawn(job, seq);
        if !slow {
            awaited.insert(id);
        }
    }

    /// Waits for the batch's awaited calls, at most `calls::PATIENCE`; whatever else finishes
    /// meanwhile is taken too. Calls still running after that finish on their own.
    async fn await_calls(&mut self, matched: &mut MatchedBatch, mut awaited: calls::Awaited) {
        let deadline = tokio::time::Instant::now() + calls::PATIENCE;
        while !awaited.is_empty() {
            match tokio::time::timeout_at(deadline, self.calls.next_finished()).await {
                Ok(Some((id, finished))) => {
                    awaited.remove(&id);
                    self.finish_call(matched, finished);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Settles a finished call into `matched` and starts the call for what waited behind it.
    fn finish_call(&mut self, matched: &mut MatchedBatch, finished: Finished) {
        let sub_id = finished.job.subscription.id.clone();
        self.finish_job(matched, finished.job);
        let Some(waiting) = self.calls.done(&sub_id, &finished.seqs) else {
            return;
        };
        let still_live = self
            .subscriptions
            .borrow()
            .subscriptions
            .iter()
            .any(|s| s.id == sub_id);
        match waiting.latest {
            Some((sub, binding)) if still_live => {
                let job = self
                    .states
                    .job(&sub, &binding, waiting.events, &self.metrics);
                self.calls.resume(job, waiting.seqs);
            }
            // Deleted while its events waited: nothing to deliver them to.
            _ => self.calls.unqueue(&waiting.seqs),
        }
    }

    /// Cursors of batches with nothing outstanding go into this write, with the chains whose
    /// held deliveries they may release.
    fn release_cursors(&mut self, matched: &mut MatchedBatch, set: &SubscriptionSet) {
        let confirmations = &self.confirmations;
        batches::finish_block_batches(matched, |chain| {
            confirmations.get(&chain).copied().unwrap_or(0)
        });
        let (cursors, logs_in_flight) = self.calls.release();
        matched.write.cursors = cursors;
        matched.logs_in_flight.extend(logs_in_flight);
        matched.write.release_chains =
            release_chains(set, &self.confirmations, &matched.write.cursors);
        self.metrics
            .queue_depth
            .with_label_values(&["matcher_held_cursors"])
            .set(self.calls.pending_batches() as i64);
        self.metrics
            .events_processed
            .with_label_values(&["matched"])
            .inc_by(matched.write.deliveries.len() as u64);
    }

    /// Events that could not even wait behind their subscription's slow call: parked.
    fn park_too_slow(
        &mut self,
        matched: &mut MatchedBatch,
        sub: &Subscription,
        events: &[Candidate],
    ) {
        let message = format!(
            "plugin too slow: more than {} events waited behind its running call",
            calls::MAX_WAITING_EVENTS
        );
        tracing::warn!(subscription = %sub.id, events = events.len(), "{message}; events parked");
        self.metrics
            .plugin_failures
            .with_label_values(&["too_slow"])
            .inc();
        self.metrics
            .events_processed
            .with_label_values(&["parked"])
            .inc_by(events.len() as u64);
        matched
            .write
            .parked
            .extend(plugins::park(sub, events, &message, None));
    }

    fn finish_job(&mut self, matched: &mut MatchedBatch, job: PluginJob) {
        let sub = job.subscription.clone();
        let outcome = self.states.settle(job, &self.metrics);
        if let Some(change) = outcome.status_change {
            matched.write.status_changes.push(change);
        }
        match outcome.decisions {
            Ok(decisions) => {
                // The canary gets a copy; nothing it does comes back here.
                self.canary.offer(&sub, &outcome.events, &decisions);
                for (event, decision) in outcome.events.iter().zip(decisions.iter()) {
                    match decision {
                        DecisionRef::Drop => self
                            .metrics
                            .events_processed
                            .with_label_values(&["dropped"])
                            .inc(),
                        DecisionRef::Keep => self.push_delivery(matched, &sub, event, None),
                        DecisionRef::KeepWith(data) => {
                            self.push_delivery(matched, &sub, event, Some(data))
                        }
                    }
                }
            }
            Err(parked) => {
                self.metrics
                    .events_processed
                    .with_label_values(&["parked"])
                    .inc_by(parked.len() as u64);
                matched.write.parked.extend(parked);
            }
        }
    }

    /// A kept event: its own delivery, or its place in a batch (`batches`).
    fn push_delivery(
        &self,
        matched: &mut MatchedBatch,
        sub: &Arc<Subscription>,
        event: &Candidate,
        data: Option<&str>,
    ) {
        let confirmations = self
            .confirmations
            .get(&event.chain_id)
            .copied()
            .unwrap_or(0);
        match sub.mode.batch {
            None => {}
            Some(BatchPolicy::Block) => {
                return batches::push_block_event(matched, sub, event, data);
            }
            Some(BatchPolicy::Count {
                max_events,
                max_wait_ms,
            }) => {
                let event =
                    batches::batch_event(sub, event, data, confirmations, max_events, max_wait_ms);
                return matched.write.batch_events.push(event);
            }
        }
        matched
            .write
            .deliveries
            .push(new_delivery(sub, event, confirmations, data));
        matched.received_at.push(event.received_at);
    }
}

#[cfg(test)]
mod tests;
