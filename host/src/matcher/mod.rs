//! Turns a batch of blocks into an outbox write: the native index picks candidate subscriptions
//! per log, then each subscription with a plugin gets one WASM call for the batch. All plugin calls
//! of a batch run on one blocking task per core (a thread hop per batch and core, not per subscription).

pub mod index;
mod logbook;
mod plugins;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::event::{Batch, ChainLog, EventType};
use crate::metrics::Metrics;
use crate::plugin::{Decision, PluginRuntime};
use crate::store::{Cursor, NewDelivery, OutboxWrite};
pub use index::{Subscription, SubscriptionSet, SubscriptionStatus};
pub use logbook::{LogEntry, PluginLogBook};
use plugins::{PluginJob, PluginStates};

/// What the outbox receives: the write, plus when each event arrived (for end-to-end latency).
#[derive(Debug, Default)]
pub struct MatchedBatch {
    pub write: OutboxWrite,
    /// Arrival time per delivery, in the same order as `write.deliveries`.
    pub received_at: Vec<Instant>,
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
    runtime: PluginRuntime,
    subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
    states: PluginStates,
    /// The subscription snapshot last seen, to notice deletions.
    last_set: Option<Arc<SubscriptionSet>>,
    confirmations: HashMap<u64, u64>,
    metrics: Metrics,
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
            runtime,
            subscriptions,
            states: PluginStates::new(log_book),
            last_set: None,
            confirmations,
            metrics,
        }
    }

    /// Runs until the batch stage closes its sender.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Batch>,
        output: mpsc::Sender<MatchedBatch>,
    ) {
        while let Some(batch) = input.recv().await {
            let started = Instant::now();
            let matched = self.process(batch).await;
            self.metrics
                .batch_latency
                .observe(started.elapsed().as_secs_f64());
            if output.send(matched).await.is_err() {
                tracing::warn!("outbox stopped; matcher ends");
                return;
            }
        }
        tracing::debug!("batch stage closed; matcher drained");
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
        matched.write.cursors = cursors(&batch);
        let per_subscription = candidates(&set, &batch);
        let mut jobs = Vec::new();
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
                    }
                },
                Some(binding) => jobs.push(self.states.job(&sub, binding, events, &self.metrics)),
            }
        }
        if !jobs.is_empty() {
            let finished = plugins::run_jobs(&self.runtime, jobs).await;
            for job in finished {
                self.finish_job(&mut matched, job);
            }
        }
        matched.write.release_chains =
            release_chains(&set, &self.confirmations, &matched.write.cursors);
        let n_delivered = matched.write.deliveries.len() as u64;
        self.metrics
            .events_processed
            .with_label_values(&["matched"])
            .inc_by(n_delivered);
        matched
    }

    fn finish_job(&mut self, matched: &mut MatchedBatch, job: PluginJob) {
        let sub = job.subscription.clone();
        let outcome = self.states.settle(job, &self.metrics);
        if let Some(change) = outcome.status_change {
            matched.write.status_changes.push(change);
        }
        match outcome.decisions {
            Ok(decisions) => {
                for (event, decision) in outcome.events.iter().zip(decisions) {
                    match decision {
                        Decision::Drop => self
                            .metrics
                            .events_processed
                            .with_label_values(&["dropped"])
                            .inc(),
                        Decision::Keep => self.push_delivery(matched, &sub, event, None),
                        Decision::KeepWith(data) => {
                            self.push_delivery(matched, &sub, event, Some(data.get()))
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

    fn push_delivery(
        &self,
        matched: &mut MatchedBatch,
        sub: &Subscription,
        event: &Candidate,
        data: Option<&str>,
    ) {
        let confirmations = self
            .confirmations
            .get(&event.chain_id)
            .copied()
            .unwrap_or(0);
        matched
            .write
            .deliveries
            .push(new_delivery(sub, event, confirmations, data));
        matched.received_at.push(event.received_at);
    }
}

/// The delivery row for one kept event: deterministic id and the webhook body. The chain is
/// ingested `chain_confirmations` behind its head; a subscription asking for more has its
/// deliveries held until the cursor has moved that much further.
pub fn new_delivery(
    sub: &Subscription,
    event: &Candidate,
    chain_confirmations: u64,
    data: Option<&str>,
) -> NewDelivery {
    let id = delivery_id(&sub.id, event.chain_id, &event.log, event.event_type);
    let extra = sub.confirmations.saturating_sub(chain_confirmations);
    let body = webhook_body(
        &id,
        sub,
        event,
        chain_confirmations.max(sub.confirmations),
        data,
    );
    let held = extra > 0;
    NewDelivery {
        subscription_id: sub.id.clone(),
        endpoint_id: sub.endpoint_id.clone(),
        chain_id: event.chain_id as i64,
        event_type: event.event_type.as_str().to_string(),
        block_number: event.log.block_number as i64,
        body,
        release_block: (held && event.event_type == EventType::Log)
            .then(|| (event.log.block_number + extra) as i64),
        supersedes: (held && event.event_type == EventType::LogRemoved)
            .then(|| delivery_id(&sub.id, event.chain_id, &event.log, EventType::Log)),
        id,
    }
}

/// Chains in this batch with subscriptions that wait for more confirmations than the chain is
/// ingested with: their held deliveries may be released by the new cursor.
fn release_chains(
    set: &SubscriptionSet,
    chain_confirmations: &HashMap<u64, u64>,
    cursors: &[Cursor],
) -> Vec<u64> {
    cursors
        .iter()
        .map(|c| c.chain_id as u64)
        .filter(|chain| {
            let base = chain_confirmations.get(chain).copied().unwrap_or(0);
            set.subscriptions
                .iter()
                .any(|s| s.chain_id == *chain && s.confirmations > base)
        })
        .collect()
}

/// Candidate events per subscription index, in chain order.
fn candidates(set: &SubscriptionSet, batch: &Batch) -> Vec<(usize, Vec<Candidate>)> {
    let mut per_subscription: HashMap<usize, Vec<Candidate>> = HashMap::new();
    let mut hits = Vec::new();
    for block in &batch.blocks {
        for log in &block.logs {
            hits.clear();
            set.matching(block.chain_id, log, &mut hits);
            for &index in &hits {
                per_subscription.entry(index).or_default().push(Candidate {
                    log: log.clone(),
                    chain_id: block.chain_id,
                    event_type: block.event_type(),
                    received_at: block.received_at,
                });
            }
        }
    }
    let mut ordered: Vec<_> = per_subscription.into_iter().collect();
    ordered.sort_unstable_by_key(|(index, _)| *index);
    ordered
}

/// The last canonical block per chain in the batch: the cursor the outbox writes with it.
fn cursors(batch: &Batch) -> Vec<Cursor> {
    let mut last: HashMap<u64, Cursor> = HashMap::new();
    for block in batch
        .blocks
        .iter()
        .filter(|b| b.kind == crate::event::BlockKind::Canonical)
    {
        last.insert(
            block.chain_id,
            Cursor {
                chain_id: block.chain_id as i64,
                block_number: block.number as i64,
                block_hash: format!("{:#x}", block.hash),
            },
        );
    }
    last.into_values().collect()
}

/// Deterministic webhook id: the same subscription, chain, block, log and type always give the
/// same id, across retries, replays and restarts.
pub fn delivery_id(
    subscription_id: &str,
    chain_id: u64,
    log: &ChainLog,
    event_type: EventType,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(subscription_id.as_bytes());
    hasher.update(chain_id.to_be_bytes());
    hasher.update(log.block_hash.as_slice());
    hasher.update(log.log_index.to_be_bytes());
    hasher.update(event_type.as_str().as_bytes());
    let digest = hasher.finalize();
    format!("msg_{}", hex::encode(&digest[..16]))
}

/// The webhook body of DESIGN §5, with the node's log object embedded verbatim.
pub fn webhook_body(
    id: &str,
    sub: &Subscription,
    event: &Candidate,
    confirmations: u64,
    data: Option<&str>,
) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"id\":{},\"type\":{},\"subscription_id\":{},\"chain_id\":{},\"confirmations\":{},\"log\":{},\"data\":{}}}",
        quote(id),
        quote(event.event_type.as_str()),
        quote(&sub.id),
        event.chain_id,
        confirmations,
        event.log.raw,
        data.unwrap_or("null"),
    )
}

#[cfg(test)]
mod tests;
