//! Delivery modes in the matcher: `"block"` batches, count-batch events for the store, ordering
//! keys, and a reorg's removals as their own batch.

use super::*;
use crate::modes::{BatchPolicy, DeliveryMode, OnDead, Ordering, OrderingKey};

fn with_mode(id: &str, mode: DeliveryMode) -> Arc<Subscription> {
    Arc::new(Subscription {
        mode,
        ..(*sub(id, None)).clone()
    })
}

/// One block with the recorded transfer at log indexes 0 and 1.
fn two_logs(kind: BlockKind) -> Batch {
    let logs: Vec<Arc<ChainLog>> = ["0x0", "0x1"]
        .iter()
        .map(|index| {
            let json =
                TRANSFER.replace("\"logIndex\":\"0x0\"", &format!("\"logIndex\":\"{index}\""));
            Arc::new(ChainLog::from_json(&json).unwrap())
        })
        .collect();
    Batch {
        blocks: vec![BlockLogs {
            chain_id: 1,
            number: logs[0].block_number,
            hash: logs[0].block_hash,
            kind,
            logs,
            received_at: Instant::now(),
            in_flight: Default::default(),
            window_row: None,
        }],
        n_events: 2,
    }
}

#[tokio::test]
async fn a_block_batch_carries_the_blocks_matches_and_a_reorg_sends_its_own() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let mode = DeliveryMode {
        batch: Some(BatchPolicy::Block),
        ordering: Ordering::None,
    };
    let mut m = matcher(vec![with_mode("sub_block", mode)], &runtime);
    let out = m.process(two_logs(BlockKind::Canonical)).await;
    assert_eq!(out.write.deliveries.len(), 1);
    assert_eq!(out.received_at.len(), 1);
    let d = &out.write.deliveries[0];
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["type"], "log.batch");
    assert_eq!(body["id"], d.id.as_str());
    let indexes: Vec<_> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].clone(), e["log"]["logIndex"].clone()))
        .collect();
    assert_eq!(
        indexes,
        vec![
            (serde_json::json!("log"), serde_json::json!("0x0")),
            (serde_json::json!("log"), serde_json::json!("0x1"))
        ]
    );
    // The same block again (a replay) gives the same id; its removal a batch of its own.
    let again = m.process(two_logs(BlockKind::Canonical)).await;
    assert_eq!(again.write.deliveries[0].id, d.id);
    let removed = m.process(two_logs(BlockKind::Orphaned)).await;
    let r = &removed.write.deliveries[0];
    assert_ne!(r.id, d.id);
    assert_eq!(r.event_type, "log.removed");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["events"][1]["type"], "log.removed");
}

#[tokio::test]
async fn count_batches_go_to_the_store_and_ordered_deliveries_carry_their_key() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let count = DeliveryMode {
        batch: Some(BatchPolicy::Count {
            max_events: 10,
            max_wait_ms: 500,
        }),
        ordering: Ordering::None,
    };
    let ordered = DeliveryMode {
        batch: None,
        ordering: Ordering::Chain {
            key: OrderingKey::Address,
            on_dead: OnDead::Halt,
        },
    };
    let subs = vec![
        with_mode("sub_count", count),
        with_mode("sub_ordered", ordered),
        sub("sub_plain", None),
    ];
    let mut m = matcher(subs, &runtime);
    let out = m.process(two_logs(BlockKind::Canonical)).await;
    assert_eq!(out.write.batch_events.len(), 2);
    let e = &out.write.batch_events[0];
    assert_eq!((e.max_events, e.max_wait_ms), (10, 500));
    assert!(e.element.text().starts_with("{\"type\":\"log\",\"log\":{"));
    let keys: Vec<_> = out
        .write
        .deliveries
        .iter()
        .map(|d| (d.subscription_id.as_str(), d.ordering_key.as_deref()))
        .collect();
    let key = "sub_ordered/0xf4eced2f682ce333f96f2d8966c613ded8fc95dd";
    assert_eq!(
        keys,
        vec![
            ("sub_ordered", Some(key)),
            ("sub_ordered", Some(key)),
            ("sub_plain", None),
            ("sub_plain", None)
        ]
    );
}
