//! Plugin calls in flight, so that a slow plugin holds back only its own subscription.
//!
//! Every call runs as its own task, on the few threads of `pool.rs` (or a thread of its own when
//! they are busy or the subscription is known to be slow). A batch waits for its calls at most
//! [`PATIENCE`] (and not at all for subscriptions whose last call was slow); a call still running
//! then becomes a *straggler*: the batch's other results are written without it, and its own
//! results are written when it finishes. Meanwhile that subscription's events of later batches
//! wait behind it, in chain order, and go to the plugin together in one call when it is free
//! again.
//!
//! The cursor invariant is kept: a batch's cursor is released (written) only once every call of
//! that batch and of every earlier batch has its results in the same or an earlier write. A batch
//! keeps its in-flight permits until then, so the bytes held for stragglers stay inside the
//! ingest budget (`[batch] max_in_flight_mib`), and ingest waits when it is spent; the permits
//! then go with the released cursors to the write, and return when it has committed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinSet};

use super::Candidate;
use super::index::{PluginBinding, Subscription};
use super::plugins::PluginJob;
use super::pool::{self, CallPool};
use crate::event::InFlight;
use crate::plugin::PluginRuntime;
use crate::store::Cursor;

/// How long a batch waits for a plugin call before writing the rest of its results without it.
/// Healthy calls take well under a millisecond per event; a call past this is very likely stuck
/// in a loop or far slower than the others.
pub const PATIENCE: Duration = Duration::from_millis(20);
/// Events of one subscription that may wait behind its running call; past this they are parked
/// (the plugin cannot keep up) rather than held in memory.
pub const MAX_WAITING_EVENTS: usize = 10_000;

/// A call that finished, with the batches it answered for.
pub struct Finished {
    pub job: PluginJob,
    pub seqs: Vec<u64>,
}

/// Events that wait behind a subscription's running call.
#[derive(Default)]
pub struct Waiting {
    pub seqs: Vec<u64>,
    pub events: Vec<Candidate>,
    /// The newest snapshot of the subscription and its plugin: the merged call uses it.
    pub latest: Option<(Arc<Subscription>, PluginBinding)>,
}

struct Running {
    seqs: Vec<u64>,
    subscription_id: String,
    /// Enough to park the events should the task itself be lost.
    fallback: (Arc<Subscription>, PluginBinding, Vec<Candidate>),
}

/// A batch whose cursor waits for calls still running.
struct Pending {
    seq: u64,
    cursors: Vec<Cursor>,
    outstanding: usize,
    in_flight: Vec<InFlight>,
}

/// A plugin call as the pool runs it.
struct PluginCall {
    job: PluginJob,
    runtime: PluginRuntime,
}

impl pool::Call for PluginCall {
    fn run(&mut self) {
        self.job.run_here(&self.runtime);
    }

    fn known_slow(&self) -> bool {
        self.job.known_slow()
    }

    fn thread_spoiled(&self) -> bool {
        crate::plugin::priority::is_demoted()
    }
}

pub struct Calls {
    runtime: PluginRuntime,
    pool: CallPool<PluginCall>,
    tasks: JoinSet<Result<PluginJob, String>>,
    running: HashMap<Id, Running>,
    /// Subscriptions with a call running, and what waits behind it.
    busy: HashMap<String, Waiting>,
    pending: VecDeque<Pending>,
    next_seq: u64,
}

impl Calls {
    pub fn new(runtime: PluginRuntime) -> Calls {
        Calls {
            runtime,
            pool: CallPool::new(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            busy: HashMap::new(),
            pending: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Opens a batch; its cursor is held until [`Calls::close`] and every call of it is done.
    pub fn open(&mut self, cursors: Vec<Cursor>, in_flight: Vec<InFlight>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending {
            seq,
            cursors,
            // The batch itself counts until it is closed.
            outstanding: 1,
            in_flight,
        });
        seq
    }

    /// Whether `subscription` has a call running (its events must queue behind it).
    pub fn is_busy(&self, subscription_id: &str) -> bool {
        self.busy.contains_key(subscription_id)
    }

    /// Queues `events` of batch `seq` behind the subscription's running call. Returns the events
    /// that no longer fit (the caller parks them).
    pub fn enqueue(
        &mut self,
        seq: u64,
        sub: &Arc<Subscription>,
        binding: &PluginBinding,
        events: Vec<Candidate>,
    ) -> Option<Vec<Candidate>> {
        let waiting = self.busy.entry(sub.id.clone()).or_default();
        if waiting.events.len() + events.len() > MAX_WAITING_EVENTS {
            return Some(events);
        }
        waiting.seqs.push(seq);
        waiting.events.extend(events);
        waiting.latest = Some((sub.clone(), binding.clone()));
        self.add_outstanding(seq);
        None
    }

    /// Starts `job` for batch `seq`.
    pub fn spawn(&mut self, job: PluginJob, seq: u64) -> Id {
        self.add_outstanding(seq);
        self.start(job, vec![seq])
    }

    /// Starts the call for events that waited behind the subscription's previous call: the
    /// batches they came from keep counting them, now as this call.
    pub fn resume(&mut self, job: PluginJob, seqs: Vec<u64>) -> Id {
        self.start(job, seqs)
    }

    fn start(&mut self, job: PluginJob, seqs: Vec<u64>) -> Id {
        let subscription_id = job.subscription.id.clone();
        self.busy.entry(subscription_id.clone()).or_default();
        let fallback = (
            job.subscription.clone(),
            job.binding().clone(),
            job.events().to_vec(),
        );
        let pool = self.pool.clone();
        let call = PluginCall {
            job,
            runtime: self.runtime.clone(),
        };
        let handle = self
            .tasks
            .spawn(async move { pool.run(call).await.map(|call| call.job) });
        self.running.insert(
            handle.id(),
            Running {
                seqs,
                subscription_id,
                fallback,
            },
        );
        handle.id()
    }

    pub fn has_running(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// The next call to finish (any batch's). Cancel-safe. `None` when nothing runs.
    pub async fn next_finished(&mut self) -> Option<(Id, Finished)> {
        let joined = self.tasks.join_next_with_id().await?;
        let (id, answered) = match joined {
            Ok((id, answered)) => (id, answered),
            Err(error) => (error.id(), Err(error.to_string())),
        };
        let running = self.running.remove(&id)?;
        let job = match answered {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, subscription = %running.subscription_id, "plugin task failed; its events are parked");
                let (sub, binding, events) = running.fallback;
                PluginJob::lost(sub, binding, events, &error)
            }
        };
        Some((
            id,
            Finished {
                job,
                seqs: running.seqs,
            },
        ))
    }

    /// After a finished call is settled: its batches count one call fewer, and what waited
    /// behind it comes out, to be started as one call.
    pub fn done(&mut self, subscription_id: &str, seqs: &[u64]) -> Option<Waiting> {
        for &seq in seqs {
            self.sub_outstanding(seq);
        }
        let waiting = self.busy.remove(subscription_id)?;
        (!waiting.events.is_empty()).then_some(waiting)
    }

    /// Queued events that will not be run: their batches no longer wait for them.
    pub fn unqueue(&mut self, seqs: &[u64]) {
        for &seq in seqs {
            self.sub_outstanding(seq);
        }
    }

    /// Closes batch `seq`: from now on only its calls hold its cursor.
    pub fn close(&mut self, seq: u64) {
        self.sub_outstanding(seq);
    }

    /// Cursors of the oldest batches that have nothing outstanding, merged per chain (the
    /// latest wins), in the order they must be written; and those batches' in-flight permits,
    /// which the write carrying the cursors holds until it has committed.
    pub fn release(&mut self) -> (Vec<Cursor>, Vec<InFlight>) {
        let mut released: HashMap<i64, Cursor> = HashMap::new();
        let mut in_flight = Vec::new();
        while self.pending.front().is_some_and(|p| p.outstanding == 0) {
            if let Some(batch) = self.pending.pop_front() {
                for cursor in batch.cursors {
                    released.insert(cursor.chain_id, cursor);
                }
                in_flight.extend(batch.in_flight);
            }
        }
        (released.into_values().collect(), in_flight)
    }

    /// Batches whose cursor is still held back.
    pub fn pending_batches(&self) -> usize {
        self.pending.len()
    }

    fn add_outstanding(&mut self, seq: u64) {
        if let Some(batch) = self.pending.iter_mut().find(|p| p.seq == seq) {
            batch.outstanding += 1;
        }
    }

    fn sub_outstanding(&mut self, seq: u64) {
        if let Some(batch) = self.pending.iter_mut().find(|p| p.seq == seq) {
            batch.outstanding = batch.outstanding.saturating_sub(1);
        }
    }
}

/// The ids a batch waits for: its calls for subscriptions not known to be slow.
pub type Awaited = HashSet<Id>;
