//! Test module: compiled only under #[cfg(test)], from its parent module.
use super::*;
use crate::canary::compare::{Verdict, add};

#[test]
fn failures_are_classified_into_the_reported_kinds() {
    let kinds = [
        (PluginError::Trap("unreachable".into()), FailureKind::Trap),
        (PluginError::Panic("boom".into()), FailureKind::Trap),
        (PluginError::StackOverflow, FailureKind::Trap),
        (PluginError::OutOfFuel, FailureKind::OutOfFuel),
        (
            PluginError::BadOutput("short".into()),
            FailureKind::BadOutput,
        ),
        (PluginError::ErrorCode(3), FailureKind::BadOutput),
        (PluginError::Timeout, FailureKind::Other),
        (PluginError::MemoryLimit(1), FailureKind::Other),
        (PluginError::ConfigRejected("no".into()), FailureKind::Other),
    ];
    for (error, kind) in kinds {
        assert_eq!(FailureKind::of(&error), kind, "{error}");
    }
    let labels: Vec<&str> = FailureKind::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(labels, ["trap", "out_of_fuel", "bad_output", "other"]);
}

#[test]
fn a_failed_batch_counts_once_under_its_kind_with_its_message() {
    let tally = FailureKind::OutOfFuel.tally("out of fuel".into());
    assert_eq!(
        tally,
        CanaryTally {
            out_of_fuel: 1,
            last_failure: Some("out of fuel".into()),
            ..CanaryTally::default()
        }
    );
    assert_eq!(tally.events_compared, 0, "a failed batch compares nothing");
    assert_eq!(FailureKind::Trap.tally(String::new()).traps, 1);
    assert_eq!(FailureKind::BadOutput.tally(String::new()).bad_output, 1);
    assert_eq!(FailureKind::Other.tally(String::new()).other_failures, 1);
}

#[test]
fn skipped_batches_add_to_a_tally() {
    let mut tally = CanaryTally::default();
    add(&mut tally, Verdict::DataDiffers, 3);
    add(&mut tally, Verdict::Same, 2);
    let tally = with_skipped(
        tally,
        Skipped {
            batches: 2,
            events: 9,
        },
    );
    assert_eq!(tally.events_compared, 5);
    assert_eq!(tally.data_differs, 3);
    assert_eq!(tally.same, 2);
    assert_eq!((tally.batches_skipped, tally.events_skipped), (2, 9));
    let labels: Vec<&str> = Verdict::ALL.iter().map(|v| v.label()).collect();
    assert_eq!(
        labels,
        ["same", "only_live_kept", "only_canary_kept", "data_differs"]
    );
}
