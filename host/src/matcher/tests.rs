//! Test module: compiled only under #[cfg(test)], from its parent module.
use std::sync::Arc;

use alloy_primitives::B256;

use super::*;
use crate::config::PluginLimits;
use crate::event::{BlockKind, BlockLogs};
use crate::matcher::index::PluginBinding;

const TRANSFER: &str = r#"{"address":"0xf4eced2f682ce333f96f2d8966c613ded8fc95dd","topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef","0x0000000000000000000000001b63142628311395ceafeea5667e7c9026c862ca","0x000000000000000000000000ac4df82fe37ea2187bc8c011a23d743b4f39019a"],"data":"0x00000000000000000000000000000000000000000000000000000000000186a0","blockNumber":"0x76250","blockHash":"0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae","blockTimestamp":"0x5638c858","transactionHash":"0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#;

const TRAP: &str = r#"(module (memory (export "memory") 2) (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param i32) (result i64) unreachable))"#;

fn batch() -> Batch {
    batch_at(0x76250)
}

fn batch_at(number: u64) -> Batch {
    let log = Arc::new(ChainLog::from_json(TRANSFER).unwrap());
    Batch {
        blocks: vec![BlockLogs {
            chain_id: 1,
            number,
            hash: log.block_hash,
            kind: BlockKind::Canonical,
            logs: vec![log],
            received_at: Instant::now(),
            in_flight: Default::default(),
            window_row: None,
        }],
        n_events: 1,
    }
}

/// The batch with its block's row of the stored reorg window, as ingest sends a block near the head.
fn with_window_row(mut batch: Batch) -> Batch {
    for block in &mut batch.blocks {
        block.window_row = Some(crate::event::WindowRow {
            block: crate::store::StoredBlock {
                number: block.number as i64,
                hash: format!("{:#x}", block.hash),
                parent_hash: format!("{:#x}", B256::ZERO),
                logs: "[]".into(),
            },
            written: Default::default(),
        });
    }
    batch
}

fn sub(id: &str, plugin: Option<PluginBinding>) -> Arc<Subscription> {
    Arc::new(Subscription {
        id: id.into(),
        endpoint_id: "ep_1".into(),
        chain_id: 1,
        addresses: None,
        topics: vec![],
        plugin,
        status: SubscriptionStatus::Active,
        confirmations: 0,
        load_error: None,
        canary: None,
        mode: Default::default(),
    })
}

fn matcher(subs: Vec<Arc<Subscription>>, runtime: &PluginRuntime) -> Matcher {
    let (_tx, rx) = watch::channel(Arc::new(SubscriptionSet::new(subs)));
    Matcher::new(
        runtime.clone(),
        rx,
        HashMap::new(),
        PluginLogBook::default(),
        Metrics::new().unwrap(),
    )
}

#[tokio::test]
async fn a_plain_subscription_gets_the_design_body_and_a_stable_id() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let mut m = matcher(vec![sub("sub_a", None)], &runtime);
    let out = m.process(batch()).await;
    assert_eq!(out.write.deliveries.len(), 1);
    assert_eq!(out.write.cursors.len(), 1);
    assert_eq!(out.write.cursors[0].block_number, 0x76250);
    let d = &out.write.deliveries[0];
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["id"], d.id.as_str());
    assert_eq!(body["type"], "log");
    assert_eq!(body["subscription_id"], "sub_a");
    assert_eq!(body["chain_id"], 1);
    assert_eq!(body["data"], serde_json::Value::Null);
    assert_eq!(
        body["log"],
        serde_json::from_str::<serde_json::Value>(TRANSFER).unwrap()
    );
    // The same event gives the same id; another subscription or type another id.
    let again = m.process(batch()).await;
    assert_eq!(again.write.deliveries[0].id, d.id);
    let log = ChainLog::from_json(TRANSFER).unwrap();
    assert_ne!(delivery_id("sub_b", 1, &log, EventType::Log), d.id);
    assert_ne!(delivery_id("sub_a", 1, &log, EventType::LogRemoved), d.id);
    assert_ne!(B256::ZERO, log.block_hash);
}

/// Ids sort by block (bytewise, as both stores' indexes compare them), keep the length of 36
/// characters, and still differ for every log of a block.
#[test]
fn delivery_ids_sort_by_block_and_differ_within_one() {
    let log = ChainLog::from_json(TRANSFER).unwrap();
    let id = delivery_id("sub_a", 1, &log, EventType::Log);
    assert_eq!(id.len(), 36, "{id}");
    assert!(id.starts_with("msg_000000076250"), "{id}");
    assert!(
        id[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let at = |number: u64, index: u64| {
        let mut log = log.clone();
        log.block_number = number;
        log.log_index = index;
        delivery_id("sub_a", 1, &log, EventType::Log)
    };
    let ids: Vec<String> = [(9, 0), (10, 5), (10, 0), (255, 1), (256, 0), (1 << 40, 0)]
        .iter()
        .map(|&(n, i)| at(n, i))
        .collect();
    for pair in [(0, 1), (0, 2), (2, 3), (1, 3), (3, 4), (4, 5)] {
        assert!(
            ids[pair.0] < ids[pair.1],
            "{} !< {}",
            ids[pair.0],
            ids[pair.1]
        );
    }
    let one_block: std::collections::HashSet<String> = (0..1000).map(|i| at(7, i)).collect();
    assert_eq!(one_block.len(), 1000);
}

/// The removal of a log held for confirmations cancels the held delivery under either form of
/// its id: this version's and the one written before 2026-12-04 (both values computed apart from
/// this code, with Python's hashlib, over the same inputs).
#[test]
fn a_held_removal_names_both_forms_of_the_held_id() {
    let mut held = (*sub("sub_a", None)).clone();
    held.confirmations = 12;
    let candidate = |event_type| Candidate {
        log: Arc::new(ChainLog::from_json(TRANSFER).unwrap()),
        chain_id: 1,
        event_type,
        received_at: std::time::Instant::now(),
    };
    let removal = delivery::new_delivery(&held, &candidate(EventType::LogRemoved), 0, None);
    assert_eq!(
        removal.supersedes,
        vec![
            "msg_0000000762500a82b36bebac352d3049".to_string(),
            "msg_0a82b36bebac352d3049c82ed5d38da4".to_string(),
        ]
    );
    let log = delivery::new_delivery(&held, &candidate(EventType::Log), 0, None);
    assert_eq!(log.id, removal.supersedes[0]);
    assert!(log.supersedes.is_empty() && log.release_block.is_some());
}

/// The batch's write with the results of its calls that outlived the matcher's patience folded
/// in: on a loaded machine a call may take longer than 20 ms and arrive as a straggler, which is
/// correct behaviour and not what a test of outcomes should depend on.
async fn process_whole(m: &mut Matcher, batch: Batch) -> MatchedBatch {
    let mut out = m.process(batch).await;
    while m.calls.has_running() {
        if let Some(late) = m.next_straggler().await {
            out.write.deliveries.extend(late.write.deliveries);
            out.write.parked.extend(late.write.parked);
            out.write.status_changes.extend(late.write.status_changes);
        }
    }
    out
}

#[tokio::test]
async fn a_trapping_plugin_parks_its_events_quarantines_and_spares_the_others() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let compiled = runtime.compile(&wat::parse_str(TRAP).unwrap()).unwrap();
    let binding = PluginBinding {
        plugin: compiled,
        config_json: "null".into(),
    };
    let mut m = matcher(
        vec![sub("sub_trap", Some(binding)), sub("sub_ok", None)],
        &runtime,
    );
    let mut statuses = Vec::new();
    for _ in 0..quarantine::QUARANTINE_AFTER {
        let out = process_whole(&mut m, batch()).await;
        assert_eq!(
            out.write.deliveries.len(),
            1,
            "the healthy subscription is delivered"
        );
        assert_eq!(out.write.deliveries[0].subscription_id, "sub_ok");
        assert_eq!(out.write.parked.len(), 1);
        assert!(
            out.write.parked[0].error.contains("trap"),
            "{}",
            out.write.parked[0].error
        );
        statuses.extend(out.write.status_changes.into_iter().map(|c| c.status));
    }
    assert_eq!(statuses.last(), Some(&SubscriptionStatus::Quarantined));
    // While quarantined the plugin is not called, and events are still parked, not lost.
    let out = process_whole(&mut m, batch()).await;
    assert_eq!(out.write.parked.len(), 1);
    assert!(out.write.parked[0].error.contains("quarantined"));
    // Once the backoff (30 s) is over the next batch probes the plugin again: it traps, so the
    // events are parked with the trap and the backoff starts over. Time is moved, not waited for,
    // and runs on again before the batch so the matcher's own short waits behave as in production.
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    tokio::time::resume();
    let out = process_whole(&mut m, batch()).await;
    assert_eq!(out.write.parked.len(), 1);
    assert!(
        out.write.parked[0].error.contains("trap"),
        "{}",
        out.write.parked[0].error
    );
    assert!(out.write.status_changes.is_empty(), "still quarantined");
    let out = process_whole(&mut m, batch()).await;
    assert!(out.write.parked[0].error.contains("quarantined"));
}

#[tokio::test]
async fn a_subscription_whose_plugin_cannot_load_parks_its_events() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let broken = Arc::new(Subscription {
        load_error: Some("plugin cannot be loaded: database unavailable".into()),
        ..(*sub("sub_broken", None)).clone()
    });
    let mut m = matcher(vec![broken], &runtime);
    let out = m.process(batch()).await;
    assert!(
        out.write.deliveries.is_empty(),
        "never delivered unfiltered"
    );
    assert_eq!(out.write.parked.len(), 1);
    assert!(out.write.parked[0].error.contains("database unavailable"));
}

const SPIN: &str = r#"(module (memory (export "memory") 2) (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param i32) (result i64) (loop $l (br $l)) (i64.const 0)))"#;

/// A matcher with `sub_slow`, whose plugin spins until its 300 ms wall clock, and `sub_ok`.
fn beside_a_spinning_plugin() -> Matcher {
    let runtime = PluginRuntime::new(PluginLimits {
        fuel_base: u64::MAX / 4,
        call_timeout_ms: 300,
        ..PluginLimits::default()
    })
    .unwrap();
    let spin = PluginBinding {
        plugin: runtime.compile(&wat::parse_str(SPIN).unwrap()).unwrap(),
        config_json: "null".into(),
    };
    matcher(
        vec![sub("sub_slow", Some(spin)), sub("sub_ok", None)],
        &runtime,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_holds_back_only_its_own_subscription_and_the_cursor() {
    let mut m = beside_a_spinning_plugin();
    // Both batches are written for the healthy subscription without waiting for the spinning
    // call; neither may move the cursor while that call has their events.
    for block in [1, 2] {
        let out = m.process(with_window_row(batch_at(block))).await;
        assert_eq!(out.write.deliveries.len(), 1, "block {block}");
        assert_eq!(out.write.deliveries[0].subscription_id, "sub_ok");
        assert!(out.write.cursors.is_empty(), "block {block}: cursor held");
        assert!(out.write.parked.is_empty());
        // The block's row of the stored window goes with its deliveries, ahead of its cursor.
        assert_eq!(out.write.chain_blocks.len(), 1, "block {block}");
        assert_eq!(out.write.chain_blocks[0].block.number, block as i64);
        assert_eq!(out.written.len(), 1);
    }
    // The first call hits the wall clock (once, not retried): block 1's event is parked with
    // that error and block 1's cursor is released with it. Block 2's event waited and goes to
    // the plugin in its own call.
    let first = m.next_straggler().await.unwrap();
    assert!(
        first.write.chain_blocks.is_empty(),
        "already in the earlier write"
    );
    assert_eq!(first.write.parked.len(), 1);
    assert!(first.write.parked[0].error.contains("wall-clock"));
    assert_eq!(first.write.cursors.len(), 1);
    assert_eq!(first.write.cursors[0].block_number, 1);
    let second = m.next_straggler().await.unwrap();
    assert_eq!(second.write.parked.len(), 1);
    assert_eq!(second.write.cursors[0].block_number, 2);
    assert!(m.next_straggler().await.is_none(), "nothing left running");
    // Now known to be slow, the subscription is not waited for at all.
    let out = m.process(batch_at(3)).await;
    assert_eq!(out.write.deliveries.len(), 1);
    assert!(out.write.cursors.is_empty());
    let last = m.next_straggler().await.unwrap();
    assert_eq!(last.write.cursors[0].block_number, 3);
}

mod budget;
mod canary;
mod modes;
