//! Plugin canaries (issue 12): a candidate plugin runs in shadow on the batches a subscription's
//! live plugin decides, and its decisions are compared per event with the live ones. Its output
//! never reaches the outbox: the matcher hands the live decisions over (a clone, after deciding)
//! on a bounded channel and never reads anything back; the worker only writes tallies.
//!
//! `compare.rs`: the pure per-event comparison. `worker.rs`: the feed the matcher offers batches
//! to (full queue → the batch is counted as skipped, the live path never waits) and the task that
//! runs candidates, compares and writes the results to the store.

pub mod compare;
pub mod worker;

use crate::matcher::index::PluginBinding;
use crate::plugin::PluginError;
use crate::store::CanaryTally;
pub use worker::{CanaryFeed, CanaryWorker, QUEUE_CAPACITY};

/// A subscription's running canary, as the matcher's snapshot carries it.
#[derive(Debug, Clone)]
pub struct CanaryBinding {
    /// The canary's id (new for every canary, so a replaced one's results never mix in).
    pub id: String,
    pub binding: PluginBinding,
}

/// Why a candidate's batch produced no decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Trap,
    OutOfFuel,
    BadOutput,
    /// Memory or wall-clock limit, a config the candidate refused, its own error record.
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 4] = [
        FailureKind::Trap,
        FailureKind::OutOfFuel,
        FailureKind::BadOutput,
        FailureKind::Other,
    ];

    pub fn of(error: &PluginError) -> FailureKind {
        match error {
            PluginError::Trap(_) | PluginError::Panic(_) | PluginError::StackOverflow => {
                FailureKind::Trap
            }
            PluginError::OutOfFuel => FailureKind::OutOfFuel,
            PluginError::BadOutput(_) | PluginError::ErrorCode(_) => FailureKind::BadOutput,
            PluginError::MemoryLimit(_)
            | PluginError::Timeout
            | PluginError::ConfigRejected(_)
            | PluginError::Instantiate(_) => FailureKind::Other,
        }
    }

    /// The `kind` label of `pipeline_canary_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::BadOutput => "bad_output",
            FailureKind::Other => "other",
        }
    }

    /// One failed batch, as a write adds it to the canary's totals.
    pub fn tally(self, message: String) -> CanaryTally {
        let mut tally = CanaryTally {
            last_failure: Some(message),
            ..CanaryTally::default()
        };
        let count = match self {
            FailureKind::Trap => &mut tally.traps,
            FailureKind::OutOfFuel => &mut tally.out_of_fuel,
            FailureKind::BadOutput => &mut tally.bad_output,
            FailureKind::Other => &mut tally.other_failures,
        };
        *count = 1;
        tally
    }
}

/// A write's tally plus what the feed skipped meanwhile.
pub fn with_skipped(mut tally: CanaryTally, skipped: Skipped) -> CanaryTally {
    tally.batches_skipped += skipped.batches;
    tally.events_skipped += skipped.events;
    tally
}

/// Batches (and their events) not compared because the canary's queue was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    pub batches: i64,
    pub events: i64,
}

#[cfg(test)]
mod tests;
