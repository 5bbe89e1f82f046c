//! The threads plugin calls run on: at most one per core, with a thread of its own for a call
//! that cannot get one of them quickly.
//!
//! A batch starts one call per plugin subscription at once (50 at 10K events/s in the load
//! harness), and healthy calls take microseconds. Given a blocking thread each, as before, the
//! process kept ~50 threads for them — each with a stack, a signal stack, per-thread allocator
//! caches and wasmtime's thread state — to run work that two threads finish in well under a
//! millisecond. Here calls wait in a queue, in the order they were started, and at most one
//! thread per core takes them, so a batch's calls still use every core. A pool thread is started
//! when calls are queued and ends when it finds the queue empty (a few per batch).
//!
//! Containment is kept: a call that has waited [`GRACE`] without a pool thread taking it (the
//! pool is busy, e.g. with hostile plugins' first slow calls) runs on a thread of its own, as
//! every call did before; a subscription whose last call was slow
//! (`PluginJob::known_slow`) never enters the pool; and a pool thread that a long call left at
//! the lowest CPU priority (`plugin::priority`) hands the queue to a new thread and ends. A
//! healthy subscription beside hostile ones waits at most `GRACE` more than it used to.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// How long a call waits for a pool thread before it is given a thread of its own. Long against
/// a healthy call (tens of microseconds for `erc20-transfers`' share of a 100-event batch), short
/// against the batch's `calls::PATIENCE` (20 ms).
pub const GRACE: Duration = Duration::from_millis(2);

/// Blocking work the pool runs: a plugin call (`calls::PluginCall`).
pub trait Call: Send + 'static {
    /// Runs the call on the current (blocking) thread.
    fn run(&mut self);
    /// Whether the last call of its subscription was slow: then it gets a thread of its own.
    fn known_slow(&self) -> bool;
    /// Whether the thread this call ran on should run no more pool calls: a plugin call that ran
    /// long has its thread demoted to the lowest CPU priority, and where the process may not
    /// raise it again (no `CAP_SYS_NICE`, the usual unprivileged deployment) the thread stays low.
    fn thread_spoiled(&self) -> bool;
}

/// A started call: whoever takes the job out first runs it (a pool thread, or the call's own
/// thread once `GRACE` is over).
type Slot<C> = Arc<Mutex<Option<C>>>;

struct Queued<C> {
    slot: Slot<C>,
    done: oneshot::Sender<C>,
}

struct Queue<C> {
    calls: VecDeque<Queued<C>>,
    /// Pool threads taking calls from `calls`; at most `CallPool::threads`.
    draining: usize,
}

impl<C> Queue<C> {
    /// Counts one more pool thread if calls wait and there is room for it; whether to start it.
    fn count_new_thread(&mut self, threads: usize) -> bool {
        let start = !self.calls.is_empty() && self.draining < threads;
        if start {
            self.draining += 1;
        }
        start
    }
}

pub struct CallPool<C> {
    queue: Arc<Mutex<Queue<C>>>,
    threads: usize,
    grace: Duration,
}

impl<C> Clone for CallPool<C> {
    fn clone(&self) -> Self {
        CallPool {
            queue: self.queue.clone(),
            threads: self.threads,
            grace: self.grace,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: Call> CallPool<C> {
    /// A pool of one thread per core.
    pub fn new() -> CallPool<C> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        CallPool::with(threads, GRACE)
    }

    pub fn with(threads: usize, grace: Duration) -> CallPool<C> {
        CallPool {
            queue: Arc::new(Mutex::new(Queue {
                calls: VecDeque::new(),
                draining: 0,
            })),
            threads: threads.max(1),
            grace,
        }
    }

    /// Runs `call` and returns it, done; `Err` says why the call was lost (its thread died), so
    /// the caller can park its events.
    pub async fn run(&self, call: C) -> Result<C, String> {
        if call.known_slow() {
            return own_thread(call).await;
        }
        let slot: Slot<C> = Arc::new(Mutex::new(Some(call)));
        let (done, mut answer) = oneshot::channel();
        self.submit(Queued {
            slot: slot.clone(),
            done,
        });
        if let Ok(answered) = tokio::time::timeout(self.grace, &mut answer).await {
            return answered.map_err(|_| LOST.to_string());
        }
        let still_queued = lock(&slot).take();
        match still_queued {
            Some(call) => own_thread(call).await,
            // A pool thread has it: the call's own limits (fuel, the wall-clock backstop) bound
            // the wait.
            None => answer.await.map_err(|_| LOST.to_string()),
        }
    }

    fn submit(&self, queued: Queued<C>) {
        let start_one = {
            let mut queue = lock(&self.queue);
            queue.calls.push_back(queued);
            queue.count_new_thread(self.threads)
        };
        if start_one {
            self.start_thread();
        }
    }

    /// Starts a pool thread (already counted in `draining`). Its own OS thread, not one of
    /// tokio's blocking threads: a thread left at the lowest priority by a long call ends
    /// instead of going back to a pool that would hand it more work.
    fn start_thread(&self) {
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("plugin-calls".into())
            .spawn(move || pool.drain());
        if let Err(error) = started {
            // The queued calls still run: each on a thread of its own once its grace is over.
            tracing::warn!(%error, "could not start a plugin call thread");
            let mut queue = lock(&self.queue);
            queue.draining = queue.draining.saturating_sub(1);
        }
    }

    /// A pool thread: takes calls until the queue is empty, then ends. The count of pool threads
    /// falls in the same critical section that finds the queue empty, so a call queued after it
    /// is seen by a thread that `submit` starts.
    fn drain(&self) {
        let mut count = Draining {
            pool: self,
            counted: true,
        };
        loop {
            let next = {
                let mut queue = lock(&self.queue);
                match queue.calls.pop_front() {
                    Some(next) => next,
                    None => {
                        queue.draining = queue.draining.saturating_sub(1);
                        count.counted = false;
                        return;
                    }
                }
            };
            let taken = lock(&next.slot).take();
            if let Some(mut call) = taken {
                call.run();
                let spoiled = call.thread_spoiled();
                // The caller may have gone (the matcher stopping): nothing to answer.
                let _ = next.done.send(call);
                if spoiled {
                    // Healthy calls must not run at the lowest priority behind this thread: the
                    // queue goes to a new pool thread, and this one ends.
                    count.counted = false;
                    self.hand_over();
                    return;
                }
            }
        }
    }

    /// Counts the calling pool thread out and starts another if calls are waiting.
    fn hand_over(&self) {
        let start_one = {
            let mut queue = lock(&self.queue);
            queue.draining = queue.draining.saturating_sub(1);
            queue.count_new_thread(self.threads)
        };
        if start_one {
            self.start_thread();
        }
    }
}

/// Runs `call` on a new thread that ends with it, so a thread a long call left demoted is never
/// handed other work (as one of tokio's blocking threads would be).
async fn own_thread<C: Call>(mut call: C) -> Result<C, String> {
    let (done, answer) = oneshot::channel();
    std::thread::Builder::new()
        .name("plugin-call".into())
        .spawn(move || {
            call.run();
            let _ = done.send(call);
        })
        .map_err(|error| format!("could not start a thread for the plugin call: {error}"))?;
    answer.await.map_err(|_| LOST.to_string())
}

const LOST: &str = "plugin call lost: its thread stopped without an answer";

/// Hands the queue over should a pool thread end by a panic (which `PluginJob::run_here` guards
/// against): the pool does not lose a thread to one, and calls queued meanwhile — the caller of
/// the lost call may already have queued its next one — are not left to wait out their grace.
struct Draining<'a, C: Call> {
    pool: &'a CallPool<C>,
    counted: bool,
}

impl<C: Call> Drop for Draining<'_, C> {
    fn drop(&mut self) {
        if self.counted {
            self.pool.hand_over();
        }
    }
}

#[cfg(test)]
mod tests;
