//! The pure comparison of a canary's decisions with the live plugin's, per event.

use serde_json::{Value, json};

use crate::matcher::Candidate;
use crate::plugin::Decision;
use crate::store::{CanaryExample, CanaryTally};

/// How one event's two decisions compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Both dropped, or both kept with the same `data`.
    Same,
    OnlyLiveKept,
    OnlyCanaryKept,
    /// Both kept, with different `data`.
    DataDiffers,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Same,
        Verdict::OnlyLiveKept,
        Verdict::OnlyCanaryKept,
        Verdict::DataDiffers,
    ];

    /// The `outcome` label of `pipeline_canary_events_total`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::OnlyLiveKept => "only_live_kept",
            Verdict::OnlyCanaryKept => "only_canary_kept",
            Verdict::DataDiffers => "data_differs",
        }
    }
}

/// Compares two decisions on one event. `data` is compared as JSON values, so two plugins that
/// write the same object with keys in another order agree.
pub fn verdict(live: &Decision, canary: &Decision) -> Verdict {
    match (live.is_kept(), canary.is_kept()) {
        (false, false) => Verdict::Same,
        (true, false) => Verdict::OnlyLiveKept,
        (false, true) => Verdict::OnlyCanaryKept,
        (true, true) if data(live) == data(canary) => Verdict::Same,
        (true, true) => Verdict::DataDiffers,
    }
}

/// The `data` a kept event carries: `null` for a plain keep.
fn data(decision: &Decision) -> Value {
    match decision {
        Decision::KeepWith(raw) => {
            serde_json::from_str(raw.get()).unwrap_or_else(|_| Value::from(raw.get()))
        }
        Decision::Keep | Decision::Drop => Value::Null,
    }
}

/// A decision as an example shows it.
pub fn output(decision: &Decision) -> Value {
    json!({"kept": decision.is_kept(), "data": data(decision)})
}

/// The tally of one batch, and its differing events while `room` lasts (the store keeps the
/// first [`crate::store::MAX_CANARY_EXAMPLES`] of a canary).
pub fn compare(
    events: &[Candidate],
    live: &[Decision],
    canary: &[Decision],
    room: usize,
) -> (CanaryTally, Vec<CanaryExample>) {
    let mut tally = CanaryTally {
        batches_compared: 1,
        ..CanaryTally::default()
    };
    let mut examples = Vec::new();
    for ((event, live), canary) in events.iter().zip(live).zip(canary) {
        let verdict = verdict(live, canary);
        add(&mut tally, verdict, 1);
        if verdict != Verdict::Same && examples.len() < room {
            examples.push(example(event, live, canary));
        }
    }
    (tally, examples)
}

/// Adds `n` events of `verdict` to `tally`.
pub fn add(tally: &mut CanaryTally, verdict: Verdict, n: i64) {
    tally.events_compared += n;
    let count = match verdict {
        Verdict::Same => &mut tally.same,
        Verdict::OnlyLiveKept => &mut tally.only_live_kept,
        Verdict::OnlyCanaryKept => &mut tally.only_canary_kept,
        Verdict::DataDiffers => &mut tally.data_differs,
    };
    *count += n;
}

fn example(event: &Candidate, live: &Decision, canary: &Decision) -> CanaryExample {
    let log = &event.log;
    CanaryExample {
        block_number: crate::matcher::db_int(log.block_number),
        block_hash: format!("{:#x}", log.block_hash),
        tx_hash: format!("{:#x}", log.transaction_hash),
        log_index: crate::matcher::db_int(log.log_index),
        event_type: event.event_type.as_str().to_string(),
        live: output(live).to_string(),
        canary: output(canary).to_string(),
    }
}

#[cfg(test)]
mod tests;
