//! Ordered deliveries in the store (issue 12): claimed one at a time per key, in order, and a
//! dead head halts or is skipped as the subscription says. On both stores.

use super::modes::setup;
use super::*;
use crate::modes::{DeliveryMode, OnDead, Ordering, OrderingKey};

fn ordered(id: &str, key: &str) -> NewDelivery {
    NewDelivery {
        ordering_key: Some(key.into()),
        ..delivery(id)
    }
}

async fn claim_ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .claim_due(100, i64::MAX, 60_000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids
}

async fn record(store: &Store, id: &str, status: &str) {
    let (row, _) = store.get_delivery(id).await.unwrap().unwrap();
    let lease: (i64,) = sqlx::query_as("SELECT lease_until FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(store.test_pool())
        .await
        .unwrap();
    let result = AttemptResult {
        id: id.into(),
        seq: row.seq,
        status: status.parse().unwrap(),
        attempts: row.attempts + 1,
        next_attempt_at: now_ms() - 1,
        status_code: Some(if status == "delivered" { 200 } else { 500 }),
        latency_ms: 1,
        error: (status != "delivered").then(|| "HTTP 500".to_string()),
        response_body: None,
        at: now_ms(),
        attempted: true,
        lease: lease.0,
        ordered: true,
        pending_seq: None,
    };
    store.record_results(&[result]).await.unwrap();
}

#[tokio::test]
async fn an_ordered_key_goes_one_at_a_time_in_order_and_a_dead_head_halts_until_skipped() {
    each_store(async |store: Store| {
        let mode = DeliveryMode {
            batch: None,
            ordering: Ordering::Chain {
                key: OrderingKey::Address,
                on_dead: OnDead::Halt,
            },
        };
        setup(&store, mode).await;
        let write = OutboxWrite {
            deliveries: vec![
                ordered("msg_a1", "sub_1/a"),
                ordered("msg_b1", "sub_1/b"),
                ordered("msg_a2", "sub_1/a"),
                ordered("msg_a3", "sub_1/a"),
                delivery("msg_free"),
            ],
            ..OutboxWrite::default()
        };
        store.write_batch(&write, 60_000).await.unwrap();
        // Unordered rows are leased to the writer as before; ordered ones wait for the poller.
        assert_eq!(claim_ids(&store).await, ["msg_a1", "msg_b1"]);
        assert!(claim_ids(&store).await.is_empty(), "a1 and b1 in flight");
        record(&store, "msg_a1", "retrying").await;
        record(&store, "msg_b1", "delivered").await;
        assert_eq!(
            claim_ids(&store).await,
            ["msg_a1"],
            "a retries its head; b is done"
        );
        // Its retry in flight, the key is still shown blocked by its failing head.
        let blocked = store.blocked_keys(Some("sub_1")).await.unwrap();
        assert_eq!((blocked.len(), blocked[0].attempts), (1, 1));
        record(&store, "msg_a1", "dead").await;
        assert!(
            claim_ids(&store).await.is_empty(),
            "halted behind the dead a1"
        );
        let blocked = store.blocked_keys(Some("sub_1")).await.unwrap();
        assert_eq!(blocked.len(), 1);
        assert_eq!(
            (blocked[0].key.as_str(), blocked[0].delivery_id.as_str()),
            ("sub_1/a", "msg_a1")
        );
        assert_eq!(blocked[0].attempts, 2);
        assert!(blocked[0].since.is_some());
        // The operator's policy change releases the key (read as it is now).
        let skip = SubscriptionPatch {
            mode: Some(
                DeliveryMode {
                    batch: None,
                    ordering: Ordering::Chain {
                        key: OrderingKey::Address,
                        on_dead: OnDead::Skip,
                    },
                }
                .columns(),
            ),
            updated_at: 2,
            ..SubscriptionPatch::default()
        };
        assert!(store.patch_subscription("sub_1", &skip).await.unwrap());
        assert!(store.blocked_keys(None).await.unwrap().is_empty());
        assert_eq!(claim_ids(&store).await, ["msg_a2"]);
        record(&store, "msg_a2", "delivered").await;
        assert_eq!(claim_ids(&store).await, ["msg_a3"]);
    })
    .await;
}

#[tokio::test]
async fn a_retried_dead_head_goes_first_and_releases_a_halted_key() {
    each_store(async |store: Store| {
        let mode = DeliveryMode {
            batch: None,
            ordering: Ordering::Chain {
                key: OrderingKey::Subscription,
                on_dead: OnDead::Halt,
            },
        };
        setup(&store, mode).await;
        let write = OutboxWrite {
            deliveries: vec![ordered("msg_1", "sub_1"), ordered("msg_2", "sub_1")],
            ..OutboxWrite::default()
        };
        store.write_batch(&write, 60_000).await.unwrap();
        assert_eq!(claim_ids(&store).await, ["msg_1"]);
        record(&store, "msg_1", "dead").await;
        assert!(claim_ids(&store).await.is_empty());
        assert!(store.retry_delivery("msg_1").await.unwrap());
        assert_eq!(
            claim_ids(&store).await,
            ["msg_1"],
            "the head again, not msg_2"
        );
        record(&store, "msg_1", "delivered").await;
        assert_eq!(claim_ids(&store).await, ["msg_2"]);
    })
    .await;
}

#[tokio::test]
async fn a_reorgs_removal_goes_after_the_log_it_withdraws() {
    each_store(async |store: Store| {
        let mode = DeliveryMode {
            batch: None,
            ordering: Ordering::Chain {
                key: OrderingKey::Subscription,
                on_dead: OnDead::Halt,
            },
        };
        setup(&store, mode).await;
        // The log, then (a later batch: the reorg) its removal and the new branch's log.
        let log = OutboxWrite {
            deliveries: vec![ordered("msg_log", "sub_1")],
            ..OutboxWrite::default()
        };
        store.write_batch(&log, 60_000).await.unwrap();
        let reorg = OutboxWrite {
            deliveries: vec![
                NewDelivery {
                    event_type: "log.removed".into(),
                    ..ordered("msg_removed", "sub_1")
                },
                ordered("msg_new_branch", "sub_1"),
            ],
            ..OutboxWrite::default()
        };
        store.write_batch(&reorg, 60_000).await.unwrap();
        assert_eq!(claim_ids(&store).await, ["msg_log"]);
        record(&store, "msg_log", "retrying").await;
        assert_eq!(
            claim_ids(&store).await,
            ["msg_log"],
            "the removal waits for its log"
        );
        record(&store, "msg_log", "delivered").await;
        assert_eq!(claim_ids(&store).await, ["msg_removed"]);
        record(&store, "msg_removed", "delivered").await;
        assert_eq!(claim_ids(&store).await, ["msg_new_branch"]);
    })
    .await;
}
