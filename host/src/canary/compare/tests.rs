//! Test module: compiled only under #[cfg(test)], from its parent module.
use std::sync::Arc;
use std::time::Instant;

use crate::plugin::Payload;

use super::*;
use crate::event::{ChainLog, EventType};

fn event(block: u64, index: u64) -> Candidate {
    let json = format!(
        r#"{{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"{block:#x}","blockHash":"0x{block:064x}","transactionHash":"0x{:064x}","transactionIndex":"0x0","logIndex":"{index:#x}","removed":false}}"#,
        block * 1000 + index
    );
    Candidate {
        log: Arc::new(ChainLog::from_json(&json).unwrap()),
        chain_id: 1,
        event_type: EventType::Log,
        received_at: Instant::now(),
    }
}

fn with(data: &str) -> Decision {
    Decision::KeepWith(Payload::parse(data.as_bytes()).unwrap())
}

#[test]
fn verdicts_of_kept_dropped_and_data() {
    use Decision::{Drop, Keep};
    assert_eq!(verdict(&Drop, &Drop), Verdict::Same);
    assert_eq!(verdict(&Keep, &Keep), Verdict::Same);
    assert_eq!(verdict(&Keep, &Drop), Verdict::OnlyLiveKept);
    assert_eq!(verdict(&with("1"), &Drop), Verdict::OnlyLiveKept);
    assert_eq!(verdict(&Drop, &with("1")), Verdict::OnlyCanaryKept);
    assert_eq!(
        verdict(&with(r#"{"a":1,"b":2}"#), &with(r#"{ "b": 2, "a": 1 }"#)),
        Verdict::Same,
        "data is compared as JSON, not as text"
    );
    assert_eq!(
        verdict(&with(r#"{"a":1}"#), &with(r#"{"a":2}"#)),
        Verdict::DataDiffers
    );
    // A plain keep carries `data: null`.
    assert_eq!(verdict(&Keep, &with("null")), Verdict::Same);
    assert_eq!(verdict(&Keep, &with("{}")), Verdict::DataDiffers);
}

#[test]
fn a_batch_is_tallied_per_event_with_its_differing_events() {
    let events: Vec<Candidate> = (0..5).map(|i| event(10, i)).collect();
    let live = vec![
        Decision::Drop,
        with(r#"{"v":"1"}"#),
        with(r#"{"v":"2"}"#),
        Decision::Keep,
        Decision::Drop,
    ];
    let canary = vec![
        Decision::Drop,
        with(r#"{"v":"1"}"#),
        with(r#"{"v":"X"}"#),
        Decision::Drop,
        with(r#"{"v":"4"}"#),
    ];
    let (tally, examples) = compare(&events, &live, &canary, 100);
    assert_eq!(
        tally,
        CanaryTally {
            events_compared: 5,
            same: 2,
            only_live_kept: 1,
            only_canary_kept: 1,
            data_differs: 1,
            batches_compared: 1,
            ..CanaryTally::default()
        }
    );
    let indexes: Vec<i64> = examples.iter().map(|e| e.log_index).collect();
    assert_eq!(indexes, vec![2, 3, 4]);
    let first = &examples[0];
    assert_eq!(first.block_number, 10);
    assert_eq!(first.tx_hash, format!("0x{:064x}", 10_002));
    assert_eq!(first.event_type, "log");
    let live: Value = serde_json::from_str(&first.live).unwrap();
    let canary: Value = serde_json::from_str(&first.canary).unwrap();
    assert_eq!(live, json!({"kept": true, "data": {"v": "2"}}));
    assert_eq!(canary, json!({"kept": true, "data": {"v": "X"}}));
    assert_eq!(
        serde_json::from_str::<Value>(&examples[1].canary).unwrap(),
        json!({"kept": false, "data": null})
    );
}

#[test]
fn examples_stop_at_the_room_left_but_counts_do_not() {
    let events: Vec<Candidate> = (0..150).map(|i| event(7, i)).collect();
    let live = vec![Decision::Keep; 150];
    let canary = vec![Decision::Drop; 150];
    let (tally, examples) = compare(&events, &live, &canary, 100);
    assert_eq!(tally.only_live_kept, 150);
    assert_eq!(examples.len(), 100);
    assert_eq!(
        examples.last().unwrap().log_index,
        99,
        "the first ones are kept"
    );
    let (_, none) = compare(&events, &live, &canary, 0);
    assert!(none.is_empty());
}
