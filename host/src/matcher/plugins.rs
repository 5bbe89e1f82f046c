//! Per-subscription plugin state: the reused instance, the failure count, quarantine, and the
//! recent plugin logs. Applies the failure policy of DESIGN §4.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Candidate;
use super::index::{PluginBinding, Subscription, SubscriptionStatus};
use super::logbook::PluginLogBook;
use crate::event::ChainLog;
use crate::metrics::Metrics;
use crate::plugin::{Decision, Output, PluginError, PluginInstance, PluginLog, PluginRuntime};
use crate::store::{ParkedEvent, StatusChange};

/// Consecutive failed batches before a subscription is quarantined.
pub const QUARANTINE_AFTER: u32 = 5;
const QUARANTINE_BACKOFF_MIN: Duration = Duration::from_secs(30);
const QUARANTINE_BACKOFF_MAX: Duration = Duration::from_secs(600);

#[derive(Default)]
struct SubState {
    instance: Option<PluginInstance>,
    plugin_id: String,
    config_json: String,
    failures: u32,
    quarantined: bool,
    quarantined_until: Option<Instant>,
    quarantine_round: u32,
    last_error: Option<String>,
    /// The last call ran past the batch's patience or hit the wall clock.
    slow: bool,
}

enum Failure {
    Plugin(PluginError),
    ErrorRecord { event_index: usize, message: String },
    Quarantined,
}

/// One subscription's share of a batch, carried to the blocking thread and back.
pub struct PluginJob {
    pub subscription: Arc<Subscription>,
    binding: PluginBinding,
    state: SubState,
    events: Vec<Candidate>,
    result: Result<(Vec<Decision>, u64), Failure>,
    logs: Vec<PluginLog>,
    /// Lines the instance dropped because one call logged too much.
    logs_dropped: u32,
    /// Time spent in the plugin for this batch.
    duration: Duration,
}

pub struct Settled {
    pub events: Vec<Candidate>,
    pub decisions: Result<Vec<Decision>, Vec<ParkedEvent>>,
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
        let mut state = self.states.remove(&sub.id).unwrap_or_default();
        if state.plugin_id != binding.plugin.id || state.config_json != binding.config_json {
            if state.quarantined {
                metrics.subscriptions_quarantined.dec();
            }
            state = SubState {
                plugin_id: binding.plugin.id.clone(),
                config_json: binding.config_json.clone(),
                ..SubState::default()
            };
            if sub.status == SubscriptionStatus::Quarantined {
                // Quarantined before a restart: probe at once with the first batch.
                state.quarantined = true;
                state.failures = QUARANTINE_AFTER;
                metrics.subscriptions_quarantined.inc();
            }
        }
        PluginJob {
            subscription: sub.clone(),
            binding: binding.clone(),
            state,
            events,
            result: Err(Failure::Quarantined),
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
        let state = &mut job.state;
        state.slow = job.duration >= super::calls::PATIENCE
            || matches!(job.result, Err(Failure::Plugin(PluginError::Timeout)));
        let mut status_change = None;
        let decisions = match job.result {
            Ok((decisions, fuel)) => {
                metrics.plugin_calls.with_label_values(&["ok"]).inc();
                metrics
                    .plugin_call_latency
                    .observe(job.duration.as_secs_f64());
                metrics.plugin_fuel.inc_by(fuel);
                if state.quarantined {
                    tracing::info!(subscription = %job.subscription.id, "plugin recovered; quarantine lifted");
                    status_change = Some(change(
                        &job.subscription.id,
                        SubscriptionStatus::Active,
                        None,
                    ));
                    metrics.subscriptions_quarantined.dec();
                }
                state.failures = 0;
                state.quarantined = false;
                state.quarantined_until = None;
                state.quarantine_round = 0;
                Ok(decisions)
            }
            Err(failure) => {
                let (message, event_index) = match &failure {
                    Failure::Plugin(e) => (e.to_string(), None),
                    Failure::ErrorRecord {
                        event_index,
                        message,
                    } => (
                        format!("plugin error: {message}"),
                        Some(*event_index as i64),
                    ),
                    Failure::Quarantined => (
                        format!(
                            "subscription quarantined: {}",
                            state.last_error.as_deref().unwrap_or("plugin failures")
                        ),
                        None,
                    ),
                };
                if !matches!(failure, Failure::Quarantined) {
                    let cause = match &failure {
                        Failure::Plugin(e) => e.cause(),
                        _ => "error_record",
                    };
                    metrics.plugin_calls.with_label_values(&["failed"]).inc();
                    metrics.plugin_failures.with_label_values(&[cause]).inc();
                    tracing::warn!(subscription = %job.subscription.id, error = %message, events = job.events.len(), "plugin batch failed; events parked");
                    state.failures += 1;
                    state.last_error = Some(message.clone());
                    if state.failures >= QUARANTINE_AFTER {
                        let backoff = QUARANTINE_BACKOFF_MIN
                            .saturating_mul(1 << state.quarantine_round.min(5))
                            .min(QUARANTINE_BACKOFF_MAX);
                        state.quarantined_until = Some(Instant::now() + backoff);
                        state.quarantine_round += 1;
                        if !state.quarantined {
                            tracing::error!(subscription = %job.subscription.id, error = %message, "subscription quarantined");
                            metrics.subscriptions_quarantined.inc();
                            status_change = Some(change(
                                &job.subscription.id,
                                SubscriptionStatus::Quarantined,
                                Some(message.clone()),
                            ));
                        }
                        state.quarantined = true;
                    } else {
                        status_change = Some(change(
                            &job.subscription.id,
                            SubscriptionStatus::Active,
                            Some(message.clone()),
                        ));
                    }
                }
                Err(park(&job.subscription, &job.events, &message, event_index))
            }
        };
        self.states.insert(job.subscription.id.clone(), job.state);
        Settled {
            events: job.events,
            decisions,
            status_change,
        }
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
            if !keep && state.quarantined {
                metrics.subscriptions_quarantined.dec();
            }
            keep
        });
    }
}

impl PluginJob {
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
            self.result = Err(Failure::Plugin(PluginError::Trap(
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
            result: Err(Failure::Plugin(PluginError::Trap(format!(
                "plugin task failed: {error}"
            )))),
            logs: Vec::new(),
            logs_dropped: 0,
            duration: Duration::ZERO,
        }
    }

    fn call(&mut self, runtime: &PluginRuntime) {
        if let Some(until) = self.state.quarantined_until
            && Instant::now() < until
        {
            self.result = Err(Failure::Quarantined);
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
                    self.result = match report.output {
                        Output::Decisions(decisions) => Ok((decisions, report.fuel_used)),
                        Output::Failed {
                            event_index,
                            message,
                        } => Err(Failure::ErrorRecord {
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
        self.result = Err(Failure::Plugin(last_error));
    }
}
