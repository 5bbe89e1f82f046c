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
    duration: std::time::Duration,
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
            duration: std::time::Duration::ZERO,
        }
    }

    /// Applies the failure policy to a finished job and puts its state back.
    pub fn settle(&mut self, mut job: PluginJob, metrics: &Metrics) -> Settled {
        let dropped = self
            .log_book
            .record(&job.subscription.id, &job.logs, job.logs_dropped);
        metrics.plugin_log_lines_dropped.inc_by(dropped);
        let state = &mut job.state;
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
        status: status.as_str().to_string(),
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
            chain_id: e.chain_id as i64,
            event_type: e.event_type.as_str().to_string(),
            log: e.log.raw.to_string(),
            error: error.to_string(),
            event_index,
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

/// Runs every job of a batch on blocking threads, one group of jobs per core (a batch's plugin
/// calls use every core, not one), and returns them in their original order.
pub async fn run_jobs(runtime: &PluginRuntime, jobs: Vec<PluginJob>) -> Vec<PluginJob> {
    // Asked once: `available_parallelism` reads cgroup files on every call.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let groups = split_by_events(jobs, cores);
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let runtime = runtime.clone();
            // If the task itself were lost, these still let every event be parked, not dropped.
            let fallback: Vec<_> = group
                .iter()
                .map(|(i, j)| {
                    (
                        *i,
                        j.subscription.clone(),
                        j.binding.clone(),
                        j.events.clone(),
                    )
                })
                .collect();
            let task = tokio::task::spawn_blocking(move || run_group(&runtime, group));
            (task, fallback)
        })
        .collect();
    let mut done = Vec::new();
    for (task, fallback) in tasks {
        match task.await {
            Ok(group) => done.extend(group),
            Err(error) => {
                tracing::error!(%error, "plugin task failed; its plugin events are parked");
                done.extend(
                    fallback
                        .into_iter()
                        .map(|(i, subscription, binding, events)| {
                            (
                                i,
                                lost_job(subscription, binding, events, &error.to_string()),
                            )
                        }),
                );
            }
        }
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, job)| job).collect()
}

/// `groups` groups of (original index, job) with about the same number of events each (largest
/// job first onto the lightest group).
fn split_by_events(jobs: Vec<PluginJob>, groups: usize) -> Vec<Vec<(usize, PluginJob)>> {
    let mut indexed: Vec<(usize, PluginJob)> = jobs.into_iter().enumerate().collect();
    indexed.sort_unstable_by_key(|(_, j)| std::cmp::Reverse(j.events.len()));
    let mut out: Vec<(usize, Vec<(usize, PluginJob)>)> = (0..groups.clamp(1, indexed.len().max(1)))
        .map(|_| (0, Vec::new()))
        .collect();
    for (i, job) in indexed {
        if let Some(lightest) = out.iter_mut().min_by_key(|(events, _)| *events) {
            lightest.0 += job.events.len();
            lightest.1.push((i, job));
        }
    }
    out.into_iter().map(|(_, group)| group).collect()
}

fn run_group(
    runtime: &PluginRuntime,
    mut group: Vec<(usize, PluginJob)>,
) -> Vec<(usize, PluginJob)> {
    for (_, job) in &mut group {
        // wasmtime reports guest failures as errors; this only guards against a host bug taking
        // every other subscription's batch down with it.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job.run(runtime))).is_err() {
            job.state.instance = None;
            job.result = Err(Failure::Plugin(PluginError::Trap(
                "host error while running the plugin".into(),
            )));
        }
    }
    group
}

fn lost_job(
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
        duration: std::time::Duration::ZERO,
    }
}

impl PluginJob {
    fn run(&mut self, runtime: &PluginRuntime) {
        let started = Instant::now();
        self.call(runtime);
        self.duration = started.elapsed();
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
        // A failed instance is discarded and the batch retried once on a fresh one.
        for _attempt in 0..2 {
            let instance = match self.state.instance.take() {
                Some(instance) => Ok(instance),
                None => runtime.instantiate(self.binding.plugin.clone(), &self.binding.config_json),
            };
            let mut instance = match instance {
                Ok(instance) => instance,
                Err(error) => {
                    last_error = error;
                    continue;
                }
            };
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
                    last_error = error;
                }
            }
        }
        self.result = Err(Failure::Plugin(last_error));
    }
}
