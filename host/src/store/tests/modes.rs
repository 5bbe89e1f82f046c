//! Delivery modes in the store (issue 12): count batches fill, seal and survive replays, and go
//! from the write's memory or to the poller. Ordered deliveries are in `ordering.rs`. On both
//! stores.

use super::*;
use crate::event::EventType;
use crate::modes::DeliveryMode;
use crate::modes::batching::Element;

const CHAIN: i64 = 31337;

pub(super) async fn setup(store: &Store, mode: DeliveryMode) {
    store
        .insert_endpoint(&EndpointRow {
            id: "ep_1".into(),
            url: "http://127.0.0.1:9/hook".into(),
            description: String::new(),
            secret: "whsec_x".into(),
            previous_secret: None,
            previous_secret_expires_at: None,
            status: EndpointStatus::Enabled,
            disabled_reason: None,
            created_at: 1,
            updated_at: 1,
        })
        .await
        .unwrap();
    store
        .insert_subscription(&SubscriptionRow {
            id: "sub_1".into(),
            endpoint_id: "ep_1".into(),
            chain_id: CHAIN,
            addresses: None,
            topics: None,
            plugin_id: None,
            plugin_config: None,
            confirmations: 0,
            status: SubscriptionStatus::Active,
            last_error: None,
            created_at: 1,
            updated_at: 1,
            mode: mode.columns(),
        })
        .await
        .unwrap();
}

fn event(n: i64, event_type: &str) -> BatchEvent {
    BatchEvent {
        subscription_id: "sub_1".into(),
        endpoint_id: "ep_1".into(),
        chain_id: CHAIN,
        event_id: format!("msg_ev{n}_{event_type}"),
        event_type: event_type.into(),
        block_number: n,
        element: Element::new(
            match event_type {
                "log" => EventType::Log,
                _ => EventType::LogRemoved,
            },
            format!("{{\"n\":{n}}}").into(),
            None,
        ),
        max_events: 2,
        max_wait_ms: 60_000,
        confirmations: 0,
        extra_confirmations: 0,
        ordering_key: None,
    }
}

fn events(range: std::ops::Range<i64>) -> OutboxWrite {
    OutboxWrite {
        batch_events: range.map(|n| event(n, "log")).collect(),
        ..OutboxWrite::default()
    }
}

/// The `n` of every event of each due batch, claimed in order, and their ids.
async fn claim_batches(store: &Store) -> Vec<(String, Vec<i64>)> {
    let mut due = store.claim_due(100, i64::MAX, 60_000).await.unwrap();
    due.sort_by_key(|d| d.created_at);
    due.iter()
        .map(|d| batch_events_of(&d.id, &d.body))
        .collect()
}

/// The `n` of every event of each batch a write sealed to be sent from memory, and their ids,
/// checked against the stored rows: the same body, and leased as the write said.
async fn sent_from_memory(store: &Store, stats: &WriteStats) -> Vec<(String, Vec<i64>)> {
    let mut batches = Vec::new();
    for sealed in &stats.sealed_to_send {
        let (row, body) = store.get_delivery(&sealed.id).await.unwrap().unwrap();
        assert_eq!(body, &*sealed.body, "the body sent is the body stored");
        assert_eq!((row.seq, row.endpoint_id.as_str()), (sealed.seq, "ep_1"));
        assert_eq!(row.status, DeliveryStatus::Pending);
        assert_eq!(
            lease_of(store, &sealed.id).await,
            stats.lease_until,
            "leased to this process"
        );
        batches.push(batch_events_of(&sealed.id, &body));
    }
    batches
}

async fn lease_of(store: &Store, id: &str) -> i64 {
    let (lease,): (i64,) = sqlx::query_as("SELECT lease_until FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(store.test_pool())
        .await
        .unwrap();
    lease
}

fn batch_events_of(id: &str, body: &str) -> (String, Vec<i64>) {
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["type"], "log.batch");
    assert_eq!(body["id"], id);
    let ns = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["log"]["n"].as_i64().unwrap())
        .collect();
    (id.to_owned(), ns)
}

/// The batch whose first event is `first_event`, and its body.
async fn sealed_batch(store: &Store, first_event: &str) -> (DeliveryRow, serde_json::Value) {
    let id = crate::modes::batching::batch_id_from_first(first_event);
    let (row, body) = store.get_delivery(&id).await.unwrap().unwrap();
    (row, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn count_batches_fill_in_order_seal_when_full_or_late_and_ignore_replays() {
    each_store(async |store: Store| {
        setup(&store, DeliveryMode::default()).await;
        let (_, stats) = store.write_batch(&events(1..6), 60_000).await.unwrap();
        assert_eq!(stats.sealed, 2);
        let first = sent_from_memory(&store, &stats).await;
        let contents: Vec<_> = first.iter().map(|(_, ns)| ns.clone()).collect();
        assert_eq!(contents, vec![vec![1, 2], vec![3, 4]]);
        assert!(
            claim_batches(&store).await.is_empty(),
            "leased to this process: not the poller's"
        );
        // A replay of events already batched (results written ahead of the cursor) adds nothing.
        let (_, stats) = store.write_batch(&events(1..6), 60_000).await.unwrap();
        assert_eq!((stats.sealed, stats.sealed_to_send.len()), (0, 0));
        assert_eq!(store.seal_expired_batches(now_ms()).await.unwrap(), 0);
        // The open batch (event 5) is topped up by the next write and sealed full.
        let (_, stats) = store.write_batch(&events(6..8), 60_000).await.unwrap();
        let next = sent_from_memory(&store, &stats).await;
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1, vec![5, 6]);
        assert_eq!(
            next[0].0,
            crate::modes::batching::batch_id_from_first("msg_ev5_log")
        );
        // Event 7 waits in an open batch until its wait is over.
        assert_eq!(store.seal_expired_batches(now_ms()).await.unwrap(), 0);
        assert_eq!(
            store.seal_expired_batches(now_ms() + 60_001).await.unwrap(),
            1
        );
        let (row, body) = sealed_batch(&store, "msg_ev7_log").await;
        assert_eq!(row.status, DeliveryStatus::Pending);
        assert_eq!(
            lease_of(&store, &row.id).await,
            0,
            "sealed by the sealer: the poller's to send"
        );
        assert_eq!(body["events"][0]["log"]["n"], 7);
    })
    .await;
}

#[tokio::test]
async fn a_batch_sent_from_memory_is_the_pollers_once_its_lease_runs_out_and_an_ordered_one_always()
{
    each_store(async |store: Store| {
        setup(&store, DeliveryMode::default()).await;
        // (Not the poller's while leased: the test above, with a lease of a minute.)
        let (_, stats) = store.write_batch(&events(1..3), 20).await.unwrap();
        let sent = sent_from_memory(&store, &stats).await;
        assert_eq!(sent.len(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(claim_batches(&store).await, sent, "the same batch, whole");
        // An ordered batch goes when it heads its key: the poller's, never leased by the write.
        let ordered = |n| BatchEvent {
            ordering_key: Some("k".into()),
            ..event(n, "log")
        };
        let write = OutboxWrite {
            batch_events: vec![ordered(3), ordered(4)],
            ..OutboxWrite::default()
        };
        let (_, stats) = store.write_batch(&write, 60_000).await.unwrap();
        assert_eq!((stats.sealed, stats.sealed_to_send.len()), (1, 0));
        let claimed = claim_batches(&store).await;
        assert_eq!(
            claimed.iter().map(|(_, ns)| ns.clone()).collect::<Vec<_>>(),
            vec![vec![3, 4]]
        );
    })
    .await;
}

#[tokio::test]
async fn a_removal_closes_the_open_batch_and_goes_in_one_of_its_own() {
    each_store(async |store: Store| {
        setup(&store, DeliveryMode::default()).await;
        let write = OutboxWrite {
            batch_events: vec![event(1, "log"), event(1, "log.removed")],
            ..OutboxWrite::default()
        };
        let (_, stats) = store.write_batch(&write, 60_000).await.unwrap();
        let sealed = sent_from_memory(&store, &stats).await;
        assert_eq!(sealed.len(), 1, "the log batch, sealed by the removal");
        store.seal_expired_batches(now_ms() + 60_001).await.unwrap();
        let (row, body) = sealed_batch(&store, "msg_ev1_log.removed").await;
        assert_eq!(
            (row.status.as_str(), row.event_type.as_str()),
            ("pending", "log.removed")
        );
        assert_eq!(body["events"][0]["type"], "log.removed");
    })
    .await;
}

#[tokio::test]
async fn a_batch_wanting_more_confirmations_is_held_until_its_last_block_has_them() {
    each_store(async |store: Store| {
        setup(&store, DeliveryMode::default()).await;
        let held = |n| BatchEvent {
            extra_confirmations: 2,
            ..event(n, "log")
        };
        let whole = OutboxWrite {
            batch_events: vec![held(5), held(6)],
            ..OutboxWrite::default()
        };
        store.write_batch(&whole, 60_000).await.unwrap();
        let (row, _) = sealed_batch(&store, "msg_ev5_log").await;
        assert_eq!(
            (row.status.as_str(), row.next_attempt_at, row.block_number),
            ("pending", HELD_UNTIL_RELEASED, 6)
        );
        // Sealed later by the sealer: held the same way.
        store
            .write_batch(
                &OutboxWrite {
                    batch_events: vec![held(7)],
                    ..OutboxWrite::default()
                },
                60_000,
            )
            .await
            .unwrap();
        store.seal_expired_batches(now_ms() + 60_001).await.unwrap();
        let (row, body) = sealed_batch(&store, "msg_ev7_log").await;
        assert_eq!(
            (row.next_attempt_at, row.block_number),
            (HELD_UNTIL_RELEASED, 7)
        );
        assert_eq!(body["events"][0]["log"]["n"], 7);
        let release: (Option<i64>,) =
            sqlx::query_as("SELECT release_block FROM deliveries WHERE id = $1")
                .bind(&row.id)
                .fetch_one(store.test_pool())
                .await
                .unwrap();
        assert_eq!(release.0, Some(9));
    })
    .await;
}
