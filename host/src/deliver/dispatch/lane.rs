//! One endpoint's share of the dispatcher: its queue of jobs in memory, the room they hold, and
//! the judgement of when a full queue means a slow endpoint (defer to the store) and when it means
//! a store that is behind (wait).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::lock;
use crate::outbox::DeliveryJob;

/// Jobs one endpoint may hold in memory (half of all); beyond that they wait in the store.
const MAX_QUEUED_PER_ENDPOINT: usize = 5_000;
/// Webhook bodies held in memory per endpoint at most (KiB; half of all, so one endpoint never
/// holds the whole budget): a per-block batch can be megabytes, and 5,000 of them refused by an
/// endpoint once held 1.4 GB (BENCHMARKS.md, delivery modes).
const MAX_QUEUED_BODY_KIB_PER_ENDPOINT: u32 = 32 * 1024;
/// A full endpoint queue is waited on this long before its job is deferred: a fast endpoint frees
/// a slot within microseconds, so it gets backpressure instead of a round trip through the store.
pub(super) const ROOM_WAIT: Duration = Duration::from_millis(20);
/// After a wait ran out, the endpoint counts as slow for this long: its overflow is deferred at
/// once, so a slow endpoint stalls the dispatcher at most `ROOM_WAIT` per `SLOW_FOR` (longer only
/// while the store, not the endpoint, holds its lane: `Lane::room`).
const SLOW_FOR: Duration = Duration::from_secs(1);

/// One endpoint's jobs waiting in memory, and the workers sending them. At most
/// `per_endpoint_concurrency` workers drain a lane; a job waiting here is a few hundred bytes plus
/// its body, not a task.
pub(super) struct Lane {
    queue: Mutex<LaneQueue>,
    /// Jobs queued or being sent for the endpoint (its share of the in-memory room).
    room: Arc<Semaphore>,
    /// Their bodies, in KiB (`MAX_QUEUED_BODY_KIB_PER_ENDPOINT`).
    body_room: Arc<Semaphore>,
    body_kib: u32,
    /// Set when the lane stayed full for `ROOM_WAIT`.
    pub(super) slow_until: Mutex<Option<Instant>>,
    /// The lane's workers whose attempt is over and whose outcome waits for the recorder.
    pub(super) recording: AtomicUsize,
}

#[derive(Default)]
struct LaneQueue {
    jobs: VecDeque<Queued>,
    workers: usize,
}

/// A job with the room it holds, returned when its attempt is over: its place among all jobs in
/// memory and its endpoint's share (its body's bytes in all ride with the job itself).
pub(super) struct Queued {
    pub(super) job: DeliveryJob,
    pub(super) _room: (OwnedSemaphorePermit, LaneRoom),
}

/// A job's slot and its body's KiB in its endpoint's share.
pub(super) struct LaneRoom {
    _slot: OwnedSemaphorePermit,
    _body: OwnedSemaphorePermit,
}

impl Lane {
    pub(super) fn new() -> Lane {
        Lane::with_limits(MAX_QUEUED_PER_ENDPOINT, MAX_QUEUED_BODY_KIB_PER_ENDPOINT)
    }

    pub(super) fn with_limits(jobs: usize, body_kib: u32) -> Lane {
        Lane {
            queue: Mutex::default(),
            room: Arc::new(Semaphore::new(jobs)),
            body_room: Arc::new(Semaphore::new(body_kib as usize)),
            body_kib,
            slow_until: Mutex::default(),
            recording: AtomicUsize::new(0),
        }
    }

    /// A slot, and room for a body of `body_len` bytes, in the endpoint's share: at once, after a
    /// short wait, or none (defer the job). A body larger than the whole share waits for all of it.
    ///
    /// A lane that stays full for `ROOM_WAIT` marks its endpoint slow, unless its workers are
    /// handing finished attempts' outcomes to a recorder that `recorder_backed_up` says is behind:
    /// the lane is then held up by the store, not by the endpoint, and deferring would only add
    /// writes for the store to do (each deferral is an outcome too). The wait goes on instead, in
    /// `ROOM_WAIT` steps, each judged afresh — backpressure, as with a full global queue.
    pub(super) async fn room(
        &self,
        body_len: usize,
        recorder_backed_up: impl Fn() -> bool,
    ) -> Option<LaneRoom> {
        let kib = crate::event::Budget::kib_for(body_len).min(self.body_kib);
        if let (Ok(slot), Ok(body)) = (
            self.room.clone().try_acquire_owned(),
            self.body_room.clone().try_acquire_many_owned(kib),
        ) {
            return Some(LaneRoom {
                _slot: slot,
                _body: body,
            });
        }
        if self.is_slow(Instant::now()) {
            return None;
        }
        loop {
            let both = async {
                let slot = self.room.clone().acquire_owned().await.ok()?;
                let body = self.body_room.clone().acquire_many_owned(kib).await.ok()?;
                Some(LaneRoom {
                    _slot: slot,
                    _body: body,
                })
            };
            match tokio::time::timeout(ROOM_WAIT, both).await {
                Ok(Some(room)) => return Some(room),
                Err(_) if self.held_by_store(&recorder_backed_up) => continue,
                Ok(None) | Err(_) => {
                    *lock(&self.slow_until) = Some(Instant::now() + SLOW_FOR);
                    return None;
                }
            }
        }
    }

    /// Whether the lane is full because its finished attempts wait for the store: some of its
    /// workers are handing over an outcome while the recorder is behind.
    fn held_by_store(&self, recorder_backed_up: impl Fn() -> bool) -> bool {
        self.recording.load(Ordering::Relaxed) > 0 && recorder_backed_up()
    }

    /// Whether the lane marks its endpoint slow at `now` (see [`Lane::room`]).
    pub(super) fn is_slow(&self, now: Instant) -> bool {
        lock(&self.slow_until).is_some_and(|until| now < until)
    }

    /// Queues a job; true when the lane should get another worker (below `max_workers`).
    pub(super) fn push(&self, queued: Queued, max_workers: usize) -> bool {
        let mut queue = lock(&self.queue);
        queue.jobs.push_back(queued);
        if queue.workers < max_workers {
            queue.workers += 1;
            true
        } else {
            false
        }
    }

    /// The next job, or `None` after the calling worker has been counted out.
    pub(super) fn pop(&self) -> Option<Queued> {
        let mut queue = lock(&self.queue);
        let next = queue.jobs.pop_front();
        if next.is_none() {
            queue.workers -= 1;
        }
        next
    }
}
