//! Per-subscription plugin state: the reused instance, the quarantine state (`quarantine.rs`
//! decides it; this applies it: status writes, metrics, logs), and the recent plugin logs. The
//! failure policy of DESIGN §4.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Candidate;
use super::index::{PluginBinding, Subscription, SubscriptionStatus};
use super::logbook::PluginLogBook;
use super::quarantine::{Event, Health};
use crate::event::ChainLog;
use crate::metrics::Metrics;
use crate::plugin::{Decisions, Output, PluginError, PluginInstance, PluginLog, PluginRuntime};
use crate::store::{ParkedEvent, StatusChange};

#[derive(Default)]
struct SubState {
    instance: Option<PluginInstance>,
    plugin_id: String,
    config_json: String,
    health: Health,
    last_error: Option<String>,
    /// The last call ran past the batch's patience or hit the wall clock.
    slow: bool,
}

/// How a job's call ended.
enum Outcome {
    Decided(Decisions, u64),
    Failed(Failure),
    /// Not called: the subscription is quarantined and its backoff is not over.
    Quarantined,
}

enum Failure {
    Plugin(PluginError),
    ErrorRecord { event_index: usize, message: String },
}

impl Failure {
    /// The message its events are parked with, the event it names, and its metric label.
    fn describe(&self) -> (String, Option<i64>, &'static str) {
        match self {
            Failure::Plugin(e) => (e.to_string(), None, e.cause()),
            Failure::ErrorRecord {
                event_index,
                message,
            } => (
                format!("plugin error: {message}"),
                Some(*event_index as i64),
                "error_record",
            ),
        }
    }
}

/// One subscription's share of a batch, carried to the blocking thread and back.
pub struct PluginJob {
    pub subscription: Arc<Subscription>,
    binding: PluginBinding,
    state: SubState,
    events: Vec<Candidate>,
    /// Whether the quarantine policy lets this call run (decided when the job is made).
    admitted: bool,
    outcome: Outcome,
    logs: Vec<PluginLog>,
    /// Lines the instance dropped because one call logged too much.
    logs_dropped: u32,
    /// Time spent in the plugin for this batch.
    duration: Duration,
}

pub struct Settled {
    pub events: Vec<Candidate>,
    pub decisions: Result<Decisions, Vec<ParkedEvent>>,
    pub status_change: Option<StatusChange>,
}

pub struct PluginStates {
    states: HashMap<String, SubState>,
    log_book: PluginLogBook,
}

impl PluginStates {
    pub fn new(log_book: PluginLogBook) -> PluginStates {
        PluginStates {
            states: HashMap::new(),
            log_book,
        }
    }

    /// Takes the subscription's state out for a job; a new plugin or config starts afresh.
    pub fn job(
        &mut self,
        sub: &Arc<Subscription>,
        binding: &PluginBinding,
        events: Vec<Candidate>,
        metrics: &Metrics,
    ) -> PluginJob {
        // tokio's clock, so a test can move past a backoff with `tokio::time::advance`.
        let now = tokio::time::Instant::now();
        let mut state = self.states.remove(&sub.id).unwrap_or_default();
        if state.plugin_id != binding.plugin.id || state.config_json != binding.config_json {
            let attached = Event::Attached {
                stored_quarantined: sub.status == SubscriptionStatus::Quarantined,
            };
            let health = state.health.step(attached, now);
            count_quarantine(metrics, state.health, health);
            state = SubState {
                plugin_id: binding.plugin.id.clone(),
                config_json: binding.config_json.clone(),
                health,
                ..SubState::default()
            };
        }
        PluginJob {
            subscription: sub.clone(),
            binding: binding.clone(),
            admitted: state.health.admits(now),
            state,
            events,
            outcome: Outcome::Quarantined,
            logs: Vec::new(),
            logs_dropped: 0,
            duration: Duration::ZERO,
        }
    }

    /// Applies the failure policy to a finished job and puts its state back.
    pub fn settle(&mut self, mut job: PluginJob, metrics: &Metrics) -> Settled {
        let dropped = self
            .log_book
            .record(&job.subscription.id, &job.logs, job.logs_dropped);
        metrics.plugin_log_lines_dropped.inc_by(dropped);
        job.state.slow = job.duration >= super::calls::PATIENCE
            || matches!(
                job.outcome,
                Outcome::Failed(Failure::Plugin(PluginError::Timeout))
            );
        let now = tokio::time::Instant::now();
        let outcome = std::mem::replace(&mut job.outcome, Outcome::Quarantined);
        let (decisions, status_change) = match outcome {
            Outcome::Decided(decisions, fuel) => {
                metrics.plugin_calls.with_label_values(&["ok"]).inc();
                metrics
                    .plugin_call_latency
                    .observe(job.duration.as_secs_f64());
                metrics.plugin_fuel.inc_by(fuel);
                (
                    Ok(decisions),
                    job.step(Event::Succeeded, None, now, metrics),
                )
            }
            Outcome::Quarantined => {
                let message = format!(
                    "subscription quarantined: {}",
                    job.state.last_error.as_deref().unwrap_or("plugin failures")
                );
                (Err(job.park(&message, None)), None)
            }
            Outcome::Failed(failure) => {
                let (message, event_index, cause) = failure.describe();
                metrics.plugin_calls.with_label_values(&["failed"]).inc();
                metrics.plugin_failures.with_label_values(&[cause]).inc();
                tracing::warn!(subscription = %job.subscription.id, error = %message, events = job.events.len(), "plugin batch failed; events parked");
                job.state.last_error = Some(message.clone());
                let change = job.step(Event::Failed, Some(&message), now, metrics);
                (Err(job.park(&message, event_index)), change)
            }
        };
        self.put_back(job, decisions, status_change)
    }

    fn put_back(
        &mut self,
        job: PluginJob,
        decisions: Result<Decisions, Vec<ParkedEvent>>,
        status_change: Option<StatusChange>,
    ) -> Settled {
        self.states.insert(job.subscription.id.clone(), job.state);
        Settled {
            events: job.events,
            decisions,
            status_change,
        }
    }
}

/// Keeps the quarantined-subscriptions gauge in step with a transition.
fn count_quarantine(metrics: &Metrics, before: Health, after: Health) {
    match (before.is_quarantined(), after.is_quarantined()) {
        (false, true) => metrics.subscriptions_quarantined.inc(),
        (true, false) => metrics.subscriptions_quarantined.dec(),
        _ => {}
    }
}

fn change(id: &str, status: SubscriptionStatus, last_error: Option<String>) -> StatusChange {
    StatusChange {
        subscription_id: id.to_string(),
        status,
        last_error,
    }
}

pub(super) fn park(
    sub: &Subscription,
    events: &[Candidate],
    error: &str,
    event_index: Option<i64>,
) -> Vec<ParkedEvent> {
    events
        .iter()
        .map(|e| ParkedEvent {
            subscription_id: sub.id.clone(),
            chain_id: super::delivery::db_int(e.chain_id),
            event_type: e.event_type.as_str().to_string(),
            log: e.log.raw.to_string(),
            error: error.to_string(),
            event_index,
            event_key: Some(ParkedEvent::key(
                e.event_type.as_str(),
                e.log.block_hash,
                e.log.log_index,
            )),
        })
        .collect()
}

impl PluginStates {
    /// Drops the state (and the live instance) of subscriptions that no longer exist.
    pub fn retain_live(&mut self, live: &std::collections::HashSet<&str>, metrics: &Metrics) {
        self.states.retain(|id, state| {
            let keep = live.contains(id.as_str());
            if !keep && state.health.is_quarantined() {
                metrics.subscriptions_quarantined.dec();
            }
            keep
        });
    }
}

impl PluginJob {
    /// Moves the subscription's quarantine state on by `event`; the status write it calls for:
    /// quarantined on entering, active (with the error) on a failure short of it, active without
    /// an error when a quarantine is lifted.
    fn step(
        &mut self,
        event: Event,
        error: Option<&str>,
        now: tokio::time::Instant,
        metrics: &Metrics,
    ) -> Option<StatusChange> {
        let before = self.state.health;
        let after = before.step(event, now);
        self.state.health = after;
        count_quarantine(metrics, before, after);
        let id = &self.subscription.id;
        match (before.is_quarantined(), after.is_quarantined()) {
            (true, false) => {
                tracing::info!(subscription = %id, "plugin recovered; quarantine lifted");
                Some(change(id, SubscriptionStatus::Active, None))
            }
            (false, true) => {
                tracing::error!(subscription = %id, error = error.unwrap_or_default(), "subscription quarantined");
                let error = error.map(str::to_string);
                Some(change(id, SubscriptionStatus::Quarantined, error))
            }
            (false, false) => error.map(|e| change(id, SubscriptionStatus::Active, Some(e.into()))),
            (true, true) => None,
        }
    }

    fn park(&self, error: &str, event_index: Option<i64>) -> Vec<ParkedEvent> {
        park(&self.subscription, &self.events, error, event_index)
    }

    pub fn events(&self) -> &[Candidate] {
        &self.events
    }

    pub fn binding(&self) -> &PluginBinding {
        &self.binding
    }

    /// Whether this subscription's last call was slow (ran past the batch's patience or hit the
    /// wall clock): a batch does not wait for it.
    pub fn known_slow(&self) -> bool {
        self.state.slow
    }

    /// Runs the call on the calling (blocking) thread, then gives the thread its priority back
    /// if a long call demoted it.
    pub fn run_here(&mut self, runtime: &PluginRuntime) {
        let started = Instant::now();
        // wasmtime reports guest failures as errors; this only guards against a host bug taking
        // other subscriptions' results down with it.
        if std::panic::catch_unwind(AssertUnwindSafe(|| self.call(runtime))).is_err() {
            self.state.instance = None;
            self.outcome = Outcome::Failed(Failure::Plugin(PluginError::Trap(
                "host error while running the plugin".into(),
            )));
        }
        self.duration = started.elapsed();
        crate::plugin::priority::restore_current_thread();
    }

    /// A job whose task was lost: its events are parked with `error`.
    pub fn lost(
        subscription: Arc<Subscription>,
        binding: PluginBinding,
        events: Vec<Candidate>,
        error: &str,
    ) -> PluginJob {
        PluginJob {
            subscription,
            binding,
            state: SubState::default(),
            events,
            admitted: true,
            outcome: Outcome::Failed(Failure::Plugin(PluginError::Trap(format!(
                "plugin task failed: {error}"
            )))),
            logs: Vec::new(),
            logs_dropped: 0,
            duration: Duration::ZERO,
        }
    }

    fn call(&mut self, runtime: &PluginRuntime) {
        if !self.admitted {
            self.outcome = Outcome::Quarantined;
            return;
        }
        let logs: Vec<&ChainLog> = self.events.iter().map(|e| &*e.log).collect();
        let mut last_error = PluginError::Trap("not run".into());
        // A failed instance is discarded. The batch is retried once on a fresh instance only when
        // the failed one was reused (an earlier call may have left it broken) and the failure was
        // not the wall clock: a fresh instance failing is the module's own doing, and a call that
        // ran out of time would only spend that time again.
        for _attempt in 0..2 {
            let instance = match self.state.instance.take() {
                Some(instance) => Ok(instance),
                None => runtime.instantiate(self.binding.plugin.clone(), &self.binding.config_json),
            };
            let mut instance = match instance {
                Ok(instance) => instance,
                Err(error) => {
                    last_error = error;
                    break;
                }
            };
            let reused = instance.calls_served() > 0;
            match instance.process(&logs) {
                Ok(report) => {
                    self.logs.extend(report.logs);
                    self.logs_dropped += report.logs_dropped;
                    self.state.instance = Some(instance);
                    self.outcome = match report.output {
                        Output::Decisions(decisions) => {
                            Outcome::Decided(decisions, report.fuel_used)
                        }
                        Output::Failed {
                            event_index,
                            message,
                        } => Outcome::Failed(Failure::ErrorRecord {
                            event_index,
                            message,
                        }),
                    };
                    return;
                }
                Err(error) => {
                    self.logs.extend(instance.take_logs());
                    if let PluginError::Panic(message) = &error {
                        // Where it panicked belongs in the subscription's logs too, not only in
                        // `last_error`, which the next failure overwrites.
                        self.logs.push(PluginLog {
                            level: 0,
                            message: format!("panic: {message}"),
                        });
                    }
                    let retry = reused && !matches!(error, PluginError::Timeout);
                    last_error = error;
                    if !retry {
                        break;
                    }
                }
            }
        }
        self.outcome = Outcome::Failed(Failure::Plugin(last_error));
    }
}
