//! Test module: compiled only under #[cfg(test)], from its parent module.
//! The canary worker against a real SQLite store and plugin runtime: tallies and examples land on
//! the canary's row, a trapping candidate is counted, a full queue skips without waiting.

use std::time::Instant;

use super::*;
use crate::config::PluginLimits;
use crate::event::EventType;
use crate::matcher::SubscriptionStatus;
use crate::matcher::index::PluginBinding;
use crate::store::CanaryRow;

/// Drops its one event.
const DROP_ONE: &str = r#"(module (memory (export "memory") 2) (data (i32.const 8192) "\01\00\00\00\00\00")
  (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param i32) (result i64) (i64.const 35184372088838)))"#;

const TRAP: &str = r#"(module (memory (export "memory") 2) (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param i32) (result i64) unreachable))"#;

async fn store() -> Store {
    let dir = std::env::temp_dir().join(format!("pipeline-canary-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/c.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn event(n: u64) -> Candidate {
    let json = format!(
        r#"{{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"{n:#x}","blockHash":"0x{n:064x}","transactionHash":"0x{n:064x}","transactionIndex":"0x0","logIndex":"0x0","removed":false}}"#
    );
    Candidate {
        log: Arc::new(ChainLog::from_json(&json).unwrap()),
        chain_id: 1,
        event_type: EventType::Log,
        received_at: Instant::now(),
    }
}

/// A subscription whose canary `canary_id` runs `wat`; the canary row stored.
async fn with_canary(
    store: &Store,
    runtime: &PluginRuntime,
    canary_id: &str,
    wat: &str,
) -> Subscription {
    let plugin = runtime.compile(&wat::parse_str(wat).unwrap()).unwrap();
    let row = CanaryRow {
        id: canary_id.into(),
        subscription_id: format!("sub_{canary_id}"),
        plugin_id: plugin.id.clone(),
        ..CanaryRow::default()
    };
    assert!(store.insert_canary(&row).await.unwrap());
    Subscription {
        id: row.subscription_id,
        endpoint_id: "ep_1".into(),
        chain_id: 1,
        addresses: None,
        topics: vec![],
        plugin: None,
        status: SubscriptionStatus::Active,
        confirmations: 0,
        load_error: None,
        canary: Some(CanaryBinding {
            id: canary_id.into(),
            binding: PluginBinding {
                plugin,
                config_json: "null".into(),
            },
        }),
        mode: Default::default(),
    }
}

fn setup(store: &Store) -> (PluginRuntime, Metrics, CanaryFeed, CanaryWorker) {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let metrics = Metrics::new().unwrap();
    let (_tx, rx) = watch::channel(Arc::new(SubscriptionSet::default()));
    let (feed, worker) = channel(store.clone(), runtime.clone(), metrics.clone(), rx);
    (runtime, metrics, feed, worker)
}

#[tokio::test]
async fn decisions_are_compared_and_failures_counted_without_touching_the_live_side() {
    let store = store().await;
    let (runtime, metrics, feed, worker) = setup(&store);
    let dropping = with_canary(&store, &runtime, "can_drop", DROP_ONE).await;
    let trapping = with_canary(&store, &runtime, "can_trap", TRAP).await;
    for n in 1..=3 {
        feed.offer(&dropping, &[event(n)], &vec![Decision::Keep].into());
    }
    feed.offer(&dropping, &[event(4)], &vec![Decision::Drop].into());
    feed.offer(&trapping, &[event(5)], &vec![Decision::Keep].into());
    let mut without = dropping.clone();
    without.canary = None;
    feed.offer(&without, &[event(6)], &vec![Decision::Keep].into());
    drop(feed);
    tokio::time::timeout(Duration::from_secs(30), worker.run())
        .await
        .unwrap();

    let row = store.get_canary("sub_can_drop").await.unwrap().unwrap();
    let t = &row.tally;
    assert_eq!(
        (
            t.events_compared,
            t.only_live_kept,
            t.same,
            t.batches_compared
        ),
        (4, 3, 1, 4)
    );
    let examples = store.list_canary_examples("can_drop").await.unwrap();
    let blocks: Vec<i64> = examples.iter().map(|e| e.block_number).collect();
    assert_eq!(blocks, vec![1, 2, 3]);
    let output = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        output(&examples[0].live),
        serde_json::json!({"kept": true, "data": null})
    );
    assert_eq!(
        output(&examples[0].canary),
        serde_json::json!({"kept": false, "data": null})
    );

    let trapped = store.get_canary("sub_can_trap").await.unwrap().unwrap();
    assert_eq!((trapped.tally.traps, trapped.tally.events_compared), (1, 0));
    assert!(trapped.tally.last_failure.unwrap().contains("unreachable"));
    let text = metrics.render();
    assert!(
        text.contains("pipeline_canary_failures_total{kind=\"trap\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pipeline_canary_events_total{outcome=\"only_live_kept\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_full_queue_skips_batches_instead_of_waiting() {
    let store = store().await;
    let (runtime, metrics, feed, worker) = setup(&store);
    let sub = with_canary(&store, &runtime, "can_1", DROP_ONE).await;
    // Nothing runs the worker yet: the queue fills, and offers beyond it return at once.
    for n in 0..(QUEUE_CAPACITY as u64 + 3) {
        feed.offer(&sub, &[event(n + 1)], &vec![Decision::Drop].into());
    }
    drop(feed);
    tokio::time::timeout(Duration::from_secs(60), worker.run())
        .await
        .unwrap();
    let row = store.get_canary("sub_can_1").await.unwrap().unwrap();
    let t = &row.tally;
    assert_eq!(t.batches_compared, QUEUE_CAPACITY as i64);
    assert_eq!((t.batches_skipped, t.events_skipped), (3, 3));
    assert_eq!(t.same, QUEUE_CAPACITY as i64);
    assert!(
        metrics
            .render()
            .contains("pipeline_canary_events_total{outcome=\"skipped\"} 3")
    );
}
