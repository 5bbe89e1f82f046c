//! The canary's own task: the matcher offers it each batch a subscription with a canary decided
//! (events and live decisions); it runs the candidate on a blocking thread, compares, and adds
//! the batch's tally to the store. The live path never waits for it: a full queue counts the batch
//! as skipped, and nothing flows back to the matcher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{CanaryBinding, FailureKind, Skipped, compare, with_skipped};
use crate::event::ChainLog;
use crate::matcher::{Candidate, Subscription, SubscriptionSet};
use crate::metrics::Metrics;
use crate::plugin::{Decision, Decisions, Output, PluginInstance, PluginRuntime};
use crate::store::{CanaryExample, CanaryTally, MAX_CANARY_EXAMPLES, Store};

/// Batches waiting for the canary task; past this a batch is skipped, not waited for.
pub const QUEUE_CAPACITY: usize = 64;
/// A store write of a canary's results that takes longer is given up (and logged).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One subscription's share of a batch, as the live plugin decided it.
pub struct CanaryJob {
    canary: CanaryBinding,
    subscription_id: String,
    events: Vec<Candidate>,
    live: Vec<Decision>,
}

type SkippedMap = Arc<Mutex<HashMap<String, Skipped>>>;

/// The matcher's end: offers batches without ever waiting.
#[derive(Clone)]
pub struct CanaryFeed {
    tx: Option<mpsc::Sender<CanaryJob>>,
    skipped: SkippedMap,
    metrics: Option<Metrics>,
}

impl CanaryFeed {
    /// A feed that takes nothing (tests, benchmarks).
    pub fn off() -> CanaryFeed {
        CanaryFeed {
            tx: None,
            skipped: SkippedMap::default(),
            metrics: None,
        }
    }

    /// Hands a decided batch to the subscription's canary, if it has one. Never blocks.
    pub fn offer(&self, sub: &Subscription, events: &[Candidate], live: &Decisions) {
        let (Some(tx), Some(canary)) = (&self.tx, &sub.canary) else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let job = CanaryJob {
            canary: canary.clone(),
            subscription_id: sub.id.clone(),
            events: events.to_vec(),
            live: live.to_vec(),
        };
        if let Err(mpsc::error::TrySendError::Full(job)) = tx.try_send(job) {
            let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
            let entry = skipped.entry(job.canary.id).or_default();
            entry.batches += 1;
            entry.events += job.events.len() as i64;
            if let Some(metrics) = &self.metrics {
                metrics
                    .canary_events
                    .with_label_values(&["skipped"])
                    .inc_by(job.events.len() as u64);
            }
        }
    }
}

/// The task that runs the candidates (one batch at a time) and writes their results.
pub struct CanaryWorker {
    rx: mpsc::Receiver<CanaryJob>,
    skipped: SkippedMap,
    store: Store,
    runtime: PluginRuntime,
    metrics: Metrics,
    subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
    /// The candidate's instance per canary, reused like the live plugin's.
    instances: HashMap<String, PluginInstance>,
    /// Examples written per canary by this process (the store caps them too).
    examples_written: HashMap<String, usize>,
}

/// The feed for the matcher and the task that serves it.
pub fn channel(
    store: Store,
    runtime: PluginRuntime,
    metrics: Metrics,
    subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
) -> (CanaryFeed, CanaryWorker) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let skipped = SkippedMap::default();
    let feed = CanaryFeed {
        tx: Some(tx),
        skipped: skipped.clone(),
        metrics: Some(metrics.clone()),
    };
    let worker = CanaryWorker {
        rx,
        skipped,
        store,
        runtime,
        metrics,
        subscriptions,
        instances: HashMap::new(),
        examples_written: HashMap::new(),
    };
    (feed, worker)
}

/// What running the candidate on one job gave.
struct Ran {
    instance: Option<PluginInstance>,
    tally: CanaryTally,
    examples: Vec<CanaryExample>,
    failure: Option<FailureKind>,
}

impl CanaryWorker {
    /// Runs until the matcher drops its feed and the queue is drained.
    pub async fn run(mut self) {
        while let Some(job) = self.rx.recv().await {
            self.forget_gone();
            let canary_id = job.canary.id.clone();
            let subscription_id = job.subscription_id.clone();
            let instance = self.instances.remove(&canary_id);
            let written = self.examples_written.get(&canary_id).copied().unwrap_or(0);
            let room = (MAX_CANARY_EXAMPLES as usize).saturating_sub(written);
            let runtime = self.runtime.clone();
            let ran =
                tokio::task::spawn_blocking(move || run_candidate(&runtime, instance, &job, room))
                    .await
                    .unwrap_or_else(|error| Ran {
                        instance: None,
                        tally: FailureKind::Other.tally(format!("canary task failed: {error}")),
                        examples: Vec::new(),
                        failure: Some(FailureKind::Other),
                    });
            self.count(&ran);
            if let Some(kind) = ran.failure {
                tracing::warn!(subscription = %subscription_id, canary = %canary_id, kind = kind.label(), "canary batch failed (live plugin unaffected)");
            }
            if let Some(instance) = ran.instance {
                self.instances.insert(canary_id.clone(), instance);
            }
            let skipped = self.take_skipped(&canary_id);
            let tally = with_skipped(ran.tally, skipped);
            if self.write(&canary_id, &tally, &ran.examples).await {
                *self.examples_written.entry(canary_id).or_default() += ran.examples.len();
            }
            self.write_other_skipped().await;
        }
        tracing::debug!("matcher closed; canary worker drained");
    }

    fn count(&self, ran: &Ran) {
        let events = &self.metrics.canary_events;
        let t = &ran.tally;
        for (outcome, n) in [
            ("same", t.same),
            ("only_live_kept", t.only_live_kept),
            ("only_canary_kept", t.only_canary_kept),
            ("data_differs", t.data_differs),
        ] {
            events.with_label_values(&[outcome]).inc_by(n.max(0) as u64);
        }
        if let Some(kind) = ran.failure {
            self.metrics
                .canary_failures
                .with_label_values(&[kind.label()])
                .inc();
        }
    }

    /// Drops the instances of canaries no longer in the live snapshot (discarded, promoted).
    fn forget_gone(&mut self) {
        if !self.subscriptions.has_changed().unwrap_or(false) {
            return;
        }
        let set = self.subscriptions.borrow_and_update().clone();
        let live: std::collections::HashSet<&str> = set
            .subscriptions
            .iter()
            .filter_map(|s| s.canary.as_ref().map(|c| c.id.as_str()))
            .collect();
        self.instances.retain(|id, _| live.contains(id.as_str()));
        self.examples_written
            .retain(|id, _| live.contains(id.as_str()));
    }

    fn take_skipped(&self, canary_id: &str) -> Skipped {
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.remove(canary_id).unwrap_or_default()
    }

    /// Skipped batches of other canaries, so they show even if their canary gets no more jobs.
    async fn write_other_skipped(&self) {
        let others: Vec<(String, Skipped)> = {
            let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
            skipped.drain().collect()
        };
        for (canary_id, skipped) in others {
            let tally = with_skipped(CanaryTally::default(), skipped);
            self.write(&canary_id, &tally, &[]).await;
        }
    }

    /// Adds a tally to the store; false when it was not written.
    async fn write(
        &self,
        canary_id: &str,
        tally: &CanaryTally,
        examples: &[CanaryExample],
    ) -> bool {
        let write = self.store.record_canary(canary_id, tally, examples);
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(written)) => written,
            Ok(Err(error)) => {
                self.metrics.db_errors.with_label_values(&["canary"]).inc();
                tracing::warn!(canary = %canary_id, %error, "canary results not stored");
                false
            }
            Err(_) => {
                self.metrics.db_errors.with_label_values(&["canary"]).inc();
                tracing::warn!(canary = %canary_id, "canary results not stored: the store timed out");
                false
            }
        }
    }
}

/// Runs the candidate on the job's events (on a blocking thread) and compares its decisions.
fn run_candidate(
    runtime: &PluginRuntime,
    instance: Option<PluginInstance>,
    job: &CanaryJob,
    room: usize,
) -> Ran {
    let binding = &job.canary.binding;
    let instance = match instance {
        Some(instance) => Ok(instance),
        None => runtime.instantiate(binding.plugin.clone(), &binding.config_json),
    };
    let logs: Vec<&ChainLog> = job.events.iter().map(|e| &*e.log).collect();
    let outcome = instance.and_then(|mut instance| {
        let report = instance.process(&logs);
        crate::plugin::priority::restore_current_thread();
        report.map(|report| (instance, report.output))
    });
    let failed = |kind: FailureKind, message: String| Ran {
        instance: None,
        tally: kind.tally(message),
        examples: Vec::new(),
        failure: Some(kind),
    };
    match outcome {
        Ok((instance, Output::Decisions(decisions))) => {
            let (tally, examples) =
                compare::compare(&job.events, &job.live, &decisions.to_vec(), room);
            Ran {
                instance: Some(instance),
                tally,
                examples,
                failure: None,
            }
        }
        Ok((_, Output::Failed { message, .. })) => {
            failed(FailureKind::Other, format!("plugin error: {message}"))
        }
        Err(error) => failed(FailureKind::of(&error), error.to_string()),
    }
}

#[cfg(test)]
mod tests;
