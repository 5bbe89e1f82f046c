//! The room for delivery jobs in memory, in all: a count of the jobs the dispatcher holds, and a
//! byte budget of the bodies of every job handed to it — in its channel or in its hands. A job's
//! share of the budget is taken before it enters the channel ([`JobSender`]) and rides with it
//! (`DeliveryJob::room`) until its attempt is over, so the channel's 4,096 places are not a
//! multiple of a body's size: a sealed or per-block batch can be megabytes.

use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc};

use crate::event::Budget;
use crate::outbox::DeliveryJob;

/// Jobs the dispatcher holds in memory at most, in all (per endpoint: `dispatch/lane.rs`);
/// beyond that they wait in the store.
const MAX_PENDING_JOBS: usize = 10_000;
/// The bodies of the jobs handed to the dispatcher at most, in all (MiB; per endpoint: half of
/// it, `dispatch/lane.rs`).
const MAX_PENDING_BODY_MIB: usize = 64;

/// Shared by the dispatcher, its senders and the retry poller, which claims only what fits.
/// When either part is spent, senders wait: that is backpressure, all the way to ingest.
#[derive(Debug, Clone)]
pub struct JobRoom {
    pub jobs: Arc<Semaphore>,
    pub bodies: Budget,
}

impl Default for JobRoom {
    fn default() -> JobRoom {
        JobRoom {
            jobs: Arc::new(Semaphore::new(MAX_PENDING_JOBS)),
            bodies: Budget::mib(MAX_PENDING_BODY_MIB),
        }
    }
}

impl JobRoom {
    /// A sender into the dispatcher's channel that takes each job's body's room first.
    pub fn sender(&self, jobs: mpsc::Sender<DeliveryJob>) -> JobSender {
        JobSender {
            jobs,
            bodies: self.bodies.clone(),
        }
    }
}

/// The dispatcher's channel, behind its byte budget.
#[derive(Debug, Clone)]
pub struct JobSender {
    jobs: mpsc::Sender<DeliveryJob>,
    bodies: Budget,
}

/// Why a job was not handed on; the job is dropped with it (the outbox makes it again from its
/// delivery, and the store keeps the row in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// No room for it now ([`JobSender::try_send`] only).
    Full,
    /// The dispatcher is gone.
    Closed,
}

impl JobSender {
    /// Waits for room for the job's body, then for a place in the channel.
    pub async fn send(&self, mut job: DeliveryJob) -> Result<(), NotSent> {
        job.room = self.bodies.charge(job.body.len()).await;
        self.jobs.send(job).await.map_err(|_| NotSent::Closed)
    }

    /// Hands the job on only if its body's room and a place in the channel are free now.
    pub fn try_send(&self, mut job: DeliveryJob) -> Result<(), NotSent> {
        if self.jobs.is_closed() {
            return Err(NotSent::Closed);
        }
        job.room = self
            .bodies
            .try_charge(job.body.len())
            .ok_or(NotSent::Full)?;
        self.jobs.try_send(job).map_err(|refused| match refused {
            TrySendError::Full(_) => NotSent::Full,
            TrySendError::Closed(_) => NotSent::Closed,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Jobs waiting in the channel.
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }
}
