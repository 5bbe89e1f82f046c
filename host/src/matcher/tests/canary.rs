//! The matcher with canaries: the canary's decisions never reach the write and its failures touch
//! nothing live; a promote (a new snapshot) takes effect from the next batch, whole.

use super::*;
use crate::canary::CanaryBinding;
use crate::store::{CanaryRow, Store};

const DROP_ONE: &str = r#"(module (memory (export "memory") 2) (data (i32.const 8192) "\01\00\00\00\00\00")
  (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param i32) (result i64) (i64.const 35184372088838)))"#;

fn binding(runtime: &PluginRuntime, wat: &str) -> PluginBinding {
    PluginBinding {
        plugin: runtime.compile(&wat::parse_str(wat).unwrap()).unwrap(),
        config_json: "null".into(),
    }
}

async fn store() -> Store {
    let dir = std::env::temp_dir().join(format!("pipeline-matcher-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/m.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn a_trapping_canary_never_changes_the_live_write() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let store = store().await;
    let row = CanaryRow {
        id: "can_1".into(),
        subscription_id: "sub_a".into(),
        plugin_id: "p".into(),
        ..CanaryRow::default()
    };
    store.insert_canary(&row).await.unwrap();
    let mut with_canary = (*sub("sub_a", None)).clone();
    with_canary.canary = Some(CanaryBinding {
        id: "can_1".into(),
        binding: binding(&runtime, TRAP),
    });
    let set = Arc::new(SubscriptionSet::new(vec![Arc::new(with_canary)]));
    let (_tx, rx) = watch::channel(set);
    let metrics = Metrics::new().unwrap();
    let (feed, worker) =
        crate::canary::worker::channel(store.clone(), runtime.clone(), metrics.clone(), rx.clone());
    let mut m = Matcher::new(
        runtime,
        rx,
        HashMap::new(),
        PluginLogBook::default(),
        metrics,
    )
    .with_canary(feed);
    // More failed batches than would quarantine a live plugin.
    for _ in 0..quarantine::QUARANTINE_AFTER + 2 {
        let out = m.process(batch()).await;
        assert_eq!(out.write.deliveries.len(), 1, "no plugin: kept unchanged");
        assert!(out.write.parked.is_empty());
        assert!(out.write.status_changes.is_empty(), "nothing quarantined");
    }
    drop(m);
    tokio::time::timeout(std::time::Duration::from_secs(30), worker.run())
        .await
        .unwrap();
    let row = store.get_canary("sub_a").await.unwrap().unwrap();
    assert_eq!(row.tally.traps, i64::from(quarantine::QUARANTINE_AFTER + 2));
}

#[tokio::test]
async fn a_new_snapshot_decides_from_the_next_batch_on() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let old = sub("sub_a", Some(binding(&runtime, DROP_ONE)));
    let (tx, rx) = watch::channel(Arc::new(SubscriptionSet::new(vec![old])));
    let mut m = Matcher::new(
        runtime,
        rx,
        HashMap::new(),
        PluginLogBook::default(),
        Metrics::new().unwrap(),
    );
    let out = m.process(batch_at(1)).await;
    assert!(out.write.deliveries.is_empty(), "the old plugin drops");
    // A promote: the registry publishes the subscription with the candidate (here: no plugin).
    tx.send(Arc::new(SubscriptionSet::new(vec![sub("sub_a", None)])))
        .unwrap();
    let out = m.process(batch_at(2)).await;
    assert_eq!(out.write.deliveries.len(), 1, "the new one keeps");
}
