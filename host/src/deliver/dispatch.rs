//! The delivery workers: a global concurrency cap, a per-endpoint cap and circuit breaker (one bad
//! endpoint never starves the others), and the outcome of every attempt sent to the recorder.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use super::attempt::{self, Verdict};
use super::breaker::{Admission, Breaker, BreakerConfig};
use super::client::WebhookClient;
use super::room::JobRoom;
use super::schedule::RetrySchedule;
use crate::metrics::Metrics;
use crate::outbox::DeliveryJob;
use crate::registry::Endpoints;
use crate::store::{AttemptResult, EndpointRow, EndpointStatus, Store, now_ms};

mod lane;
#[cfg(test)]
use lane::ROOM_WAIT;
use lane::{Lane, Queued};

/// How long a job that found no room waits in the store before the poller offers it again.
const DEFER_MS: i64 = 1_000;
/// How long the store is asked about an endpoint the snapshot does not show as enabled.
const ENDPOINT_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A job whose endpoint could not be read is postponed this long rather than judged.
const UNREADABLE_ENDPOINT_DELAY_MS: i64 = 5_000;
/// How often the open-breaker gauge (open or probing: [`Breaker::is_failing`]) is counted. Counting walks every endpoint's breaker, so it
/// runs on a clock, not on each attempt: with 10,000 endpoints, counting on each attempt was
/// 22 % of the host's CPU at 10K webhooks/s (BENCHMARKS.md, "Session of 2026-12-05 (fifth)").
/// The clock also lets the gauge fall when an open period ends with no attempt after it.
const BREAKER_GAUGE_EVERY: Duration = Duration::from_secs(1);
/// How often endpoints' state that a new one would equal is forgotten: lanes with no job and no
/// worker, breakers at rest. Without it both maps would keep an entry for every endpoint ever
/// delivered to (deleted ones too) for the life of the process.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

pub struct Dispatcher {
    pub client: WebhookClient,
    pub schedule: RetrySchedule,
    pub endpoints: watch::Receiver<Endpoints>,
    pub metrics: Metrics,
    pub workers: usize,
    pub per_endpoint: usize,
    /// Endpoints a 410 asked to disable; the app disables them in the store.
    pub gone: mpsc::Sender<String>,
    /// Room for jobs in memory, shared with the retry poller so it claims only what fits. The
    /// jobs' bodies hold their room since they were sent (`room.rs`).
    pub room: JobRoom,
    /// Where an endpoint the registry snapshot does not show as enabled is looked up before a
    /// delivery is judged dead for it: the snapshot may be up to a reload period old.
    pub store: Store,
    /// A job is sent only while its lease has at least this long left (the request timeout), so
    /// its attempt ends, and its outcome is recorded, under its own claim. A job that waited in
    /// memory longer is dropped unsent: the poller has claimed it again or will once it expires.
    pub lease_margin: Duration,
    /// Each endpoint's circuit breaker, shared with the console, which shows their states.
    pub breakers: BreakerBoard,
}

/// The circuit breakers by endpoint id (created on an endpoint's first attempt).
pub type BreakerBoard = Arc<Mutex<HashMap<String, Breaker>>>;

#[derive(Clone)]
struct Shared {
    client: WebhookClient,
    schedule: RetrySchedule,
    metrics: Metrics,
    results: mpsc::Sender<AttemptResult>,
    gone: mpsc::Sender<String>,
    workers: Arc<Semaphore>,
    breakers: BreakerBoard,
    store: Store,
    lease_margin_ms: i64,
}

/// Where a job can go, once the store has had its say.
enum Target {
    Endpoint(Arc<EndpointRow>),
    /// Missing or disabled in the store itself: the delivery is dead, with this reason.
    Refused(String),
    /// The store could not be read: judge later.
    Unknown,
}

impl Dispatcher {
    /// Runs until every job sender (outbox and retry poller) is dropped and every attempt is done.
    pub async fn run(
        self,
        mut jobs: mpsc::Receiver<DeliveryJob>,
        results: mpsc::Sender<AttemptResult>,
    ) {
        let shared = Shared {
            client: self.client,
            schedule: self.schedule,
            metrics: self.metrics,
            results,
            gone: self.gone,
            workers: Arc::new(Semaphore::new(self.workers)),
            breakers: self.breakers,
            store: self.store,
            lease_margin_ms: i64::try_from(self.lease_margin.as_millis()).unwrap_or(i64::MAX),
        };
        let _gauge = AbortOnDropHandle::new(tokio::spawn(tend_breakers(
            shared.breakers.clone(),
            shared.metrics.clone(),
        )));
        let mut lanes_tended = Instant::now();
        let room = self.room.clone();
        let mut lanes: HashMap<String, Arc<Lane>> = HashMap::new();
        // A job whose lease ran out while it waited here may be claimed and queued again: it is
        // sent once, by whichever copy got here first.
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let tracker = TaskTracker::new();
        while let Some(job) = jobs.recv().await {
            if lanes_tended.elapsed() >= FORGET_IDLE_EVERY {
                forget_idle_lanes(&mut lanes, Instant::now());
                lanes_tended = Instant::now();
            }
            let lane = lanes
                .entry(job.endpoint_id.clone())
                .or_insert_with(|| Arc::new(Lane::new()))
                .clone();
            // A job over its endpoint's share goes back to the store (it is durable there) and
            // returns through the poller: one slow endpoint cannot fill the queue for the others.
            // A fast endpoint frees room at once, so its overflow waits briefly instead (see
            // `ROOM_WAIT`, and `Lane::room` for when the store is what holds it up). When the whole
            // queue is full, wait: that is backpressure, all the way
            // to ingest.
            let recorder_backed_up = || backed_up(&shared.results);
            let Some(lane_room) = lane.room(job.body.len(), recorder_backed_up).await else {
                shared
                    .metrics
                    .deliveries_attempted
                    .with_label_values(&["deferred"])
                    .inc();
                let postponed =
                    attempt::postponed(&job, now_ms() + DEFER_MS, "endpoint queue full");
                shared.finish(postponed).await;
                continue;
            };
            let Ok(pending_permit) = room.jobs.clone().acquire_owned().await else {
                break;
            };
            if !lock(&in_flight).insert(job.id.clone()) {
                continue;
            }
            let queued = Queued {
                job,
                _room: (pending_permit, lane_room),
            };
            if lane.push(queued, self.per_endpoint) {
                let (shared, in_flight, endpoints) =
                    (shared.clone(), in_flight.clone(), self.endpoints.clone());
                tracker.spawn(async move { shared.drain(&lane, &endpoints, &in_flight).await });
            }
        }
        tracker.close();
        tracker.wait().await;
        tracing::debug!("delivery inputs closed; workers drained");
    }
}

/// Whether the recorder's queue of outcomes is more than half full: the store is behind.
fn backed_up<T>(results: &mpsc::Sender<T>) -> bool {
    results.capacity() < results.max_capacity() / 2
}

/// Sets the open-breaker gauge every [`BREAKER_GAUGE_EVERY`] and forgets breakers at rest every
/// [`FORGET_IDLE_EVERY`], until aborted with the dispatcher.
async fn tend_breakers(breakers: BreakerBoard, metrics: Metrics) {
    let mut tick = tokio::time::interval(BREAKER_GAUGE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut forgotten = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut board = lock(&breakers);
        if forgotten.elapsed() >= FORGET_IDLE_EVERY {
            board.retain(|_, breaker| !breaker.is_at_rest());
            forgotten = tokio::time::Instant::now();
        }
        let open = board.values().filter(|b| b.is_failing(now)).count();
        drop(board);
        metrics.breaker_open.set(open as i64);
    }
}

/// Drops the lanes a new one would equal: no worker task holds them (so no job is queued) and
/// they do not mark their endpoint slow.
fn forget_idle_lanes(lanes: &mut HashMap<String, Arc<Lane>>, now: Instant) {
    lanes.retain(|_, lane| Arc::strong_count(lane) > 1 || lane.is_slow(now));
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// One worker of a lane: sends its jobs one after another until the lane is empty.
    async fn drain(
        &self,
        lane: &Lane,
        endpoints: &watch::Receiver<Endpoints>,
        in_flight: &Mutex<HashSet<String>>,
    ) {
        while let Some(queued) = lane.pop() {
            let id = queued.job.id.clone();
            if let Ok(_worker) = self.workers.clone().acquire_owned().await
                && self.lease_left(&queued.job)
            {
                let target = self.target(&queued.job.endpoint_id, endpoints).await;
                let outcome = self.deliver(queued.job, target).await;
                // While this waits, the lane's slot is held by the store, not by the endpoint.
                lane.recording.fetch_add(1, Ordering::Relaxed);
                self.finish(outcome).await;
                lane.recording.fetch_sub(1, Ordering::Relaxed);
            }
            lock(in_flight).remove(&id);
        }
    }

    /// Whether the job's lease leaves room for a whole attempt. One that does not is dropped
    /// unsent and without an outcome: the row is (or soon will be) claimed again by the poller,
    /// and sending it here too would send it twice.
    fn lease_left(&self, job: &DeliveryJob) -> bool {
        if now_ms().saturating_add(self.lease_margin_ms) < job.lease_until {
            return true;
        }
        self.metrics
            .deliveries_attempted
            .with_label_values(&["lease_expired"])
            .inc();
        tracing::debug!(delivery = %job.id, "lease ran out while queued; left to the poller");
        false
    }

    /// The job's endpoint: from the registry snapshot when it shows it enabled, otherwise from
    /// the store. The snapshot is rebuilt only on this replica's admin changes and every reload
    /// period, so an endpoint created or re-enabled through another replica may be missing or
    /// disabled in it; only the store may make a delivery dead.
    async fn target(&self, endpoint_id: &str, endpoints: &watch::Receiver<Endpoints>) -> Target {
        let snapshot = endpoints.borrow().get(endpoint_id).cloned();
        if let Some(endpoint) = snapshot.filter(|e| e.status == EndpointStatus::Enabled) {
            return Target::Endpoint(endpoint);
        }
        let read =
            tokio::time::timeout(ENDPOINT_READ_TIMEOUT, self.store.get_endpoint(endpoint_id));
        match read.await {
            Ok(Ok(Some(e))) if e.status == EndpointStatus::Enabled => Target::Endpoint(Arc::new(e)),
            Ok(Ok(Some(e))) => Target::Refused(format!("endpoint {} is disabled", e.id)),
            Ok(Ok(None)) => Target::Refused(format!("endpoint {endpoint_id} does not exist")),
            Ok(Err(error)) => {
                tracing::warn!(endpoint = %endpoint_id, %error, "cannot read endpoint; delivery postponed");
                Target::Unknown
            }
            Err(_) => Target::Unknown,
        }
    }

    /// One attempt (or the judgement that none is to be made), as the outcome to record.
    async fn deliver(&self, job: DeliveryJob, target: Target) -> AttemptResult {
        let endpoint = match target {
            Target::Endpoint(endpoint) => endpoint,
            Target::Refused(reason) => {
                return attempt::dead(&job, reason).result;
            }
            Target::Unknown => {
                let until = now_ms() + UNREADABLE_ENDPOINT_DELAY_MS;
                let reason = "endpoint could not be read from the store";
                return attempt::postponed(&job, until, reason);
            }
        };
        let admission = self.with_breaker(&endpoint.id, |b| b.allow(Instant::now()));
        if let Admission::Rejected { retry_at } = admission {
            let wait = retry_at.saturating_duration_since(Instant::now());
            self.metrics
                .deliveries_attempted
                .with_label_values(&["breaker_open"])
                .inc();
            let until = now_ms() + wait.as_millis() as i64;
            return attempt::postponed(&job, until, "circuit breaker open");
        }
        let attempted = attempt::attempt(&self.client, &self.schedule, &endpoint, &job).await;
        if let (true, Some(received)) = (attempted.answered, job.received_at) {
            self.metrics
                .e2e_latency
                .observe(received.elapsed().as_secs_f64());
        }
        let label = match attempted.verdict {
            Verdict::Delivered => "success",
            Verdict::Retry => "retry",
            Verdict::Dead => "dead",
            Verdict::Gone => "gone",
        };
        self.metrics
            .deliveries_attempted
            .with_label_values(&[label])
            .inc();
        match attempted.verdict {
            Verdict::Delivered => self.with_breaker(&endpoint.id, |b| b.on_success()),
            Verdict::Retry => self.with_breaker(&endpoint.id, |b| b.on_failure(Instant::now())),
            Verdict::Gone => {
                let _ = self.gone.try_send(endpoint.id.clone());
            }
            Verdict::Dead => {}
        }
        if attempted.verdict != Verdict::Delivered {
            tracing::debug!(delivery = %job.id, endpoint = %endpoint.id, status = %attempted.result.status, error = ?attempted.result.error, "delivery attempt failed");
        }
        attempted.result
    }

    fn with_breaker<T>(&self, endpoint_id: &str, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breakers = lock(&self.breakers);
        // Looked up before inserted: no key allocated on every attempt.
        match breakers.get_mut(endpoint_id) {
            Some(breaker) => f(breaker),
            None => f(breakers
                .entry(endpoint_id.to_string())
                .or_insert_with(|| Breaker::new(BreakerConfig::default()))),
        }
    }

    async fn finish(&self, result: AttemptResult) {
        if self.results.send(result).await.is_err() {
            tracing::error!(
                "attempt recorder stopped; outcome not recorded (the lease will expire and the delivery be retried)"
            );
        }
    }
}

#[cfg(test)]
mod tests;
