//! Delivery state over time (issue 8): held deliveries follow their subscription's and chain's
//! confirmations, outcomes of expired claims are stale, and writers change only their own
//! columns. On both stores.

use super::*;

const CHAIN: u64 = 31337;

fn endpoint(id: &str) -> EndpointRow {
    EndpointRow {
        id: id.into(),
        url: "http://127.0.0.1:9/hook".into(),
        description: "d".into(),
        secret: "whsec_first".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn subscription(id: &str, confirmations: i64) -> SubscriptionRow {
    SubscriptionRow {
        id: id.into(),
        endpoint_id: "ep_1".into(),
        chain_id: CHAIN as i64,
        addresses: None,
        topics: None,
        plugin_id: None,
        plugin_config: None,
        confirmations,
        status: SubscriptionStatus::Active,
        last_error: None,
        created_at: 1,
        updated_at: 1,
        mode: Default::default(),
    }
}

/// A webhook body as the matcher writes it, saying `confirmations` (the log and the plugin's
/// data quote the field too, and must be left alone).
fn body(confirmations: i64) -> String {
    format!(
        "{{\"id\":\"msg\",\"type\":\"log\",\"subscription_id\":\"sub_1\",\"chain_id\":31337,\
         \"confirmations\":{confirmations},\"log\":{{\"data\":\",\\\"log\\\":\"}},\
         \"data\":{{\"confirmations\":10,\"log\":1}}}}"
    )
}

/// A delivery of `sub` for a log in `block`, held until the cursor reaches `release`.
fn held(id: &str, sub: &str, block: i64, release: i64) -> NewDelivery {
    NewDelivery {
        subscription_id: sub.into(),
        block_number: block,
        release_block: Some(release),
        body: body(10),
        ..delivery(id)
    }
}

fn cursor_at(block: i64) -> OutboxWrite {
    OutboxWrite {
        cursors: vec![Cursor {
            chain_id: CHAIN as i64,
            block_number: block,
            block_hash: format!("0x{block:x}"),
        }],
        release_chains: vec![CHAIN],
        ..OutboxWrite::default()
    }
}

/// The ids a claim returns now, sorted.
async fn due_ids(store: &Store) -> Vec<String> {
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

async fn release_block(store: &Store, id: &str) -> Option<i64> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT release_block FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&store.pool)
            .await
            .unwrap();
    row.and_then(|r| r.0)
}

/// Endpoint `ep_1`, subscription `sub_1` asking for `confirmations`, held deliveries in blocks 5
/// and 8 matched with that (chain confirmations 0), and the cursor at block 9.
async fn held_setup(store: &Store, confirmations: i64) {
    store.insert_endpoint(&endpoint("ep_1")).await.unwrap();
    store
        .insert_subscription(&subscription("sub_1", confirmations))
        .await
        .unwrap();
    let write = OutboxWrite {
        deliveries: vec![
            held("msg_b5", "sub_1", 5, 5 + confirmations),
            held("msg_b8", "sub_1", 8, 8 + confirmations),
        ],
        ..cursor_at(9)
    };
    store.write_batch(&write, 60_000).await.unwrap();
    assert!(due_ids(store).await.is_empty(), "both held");
}

#[tokio::test]
async fn lowering_a_subscriptions_confirmations_releases_what_is_deep_enough_at_once() {
    each_store(async |store: Store| {
        held_setup(&store, 10).await;
        let patch = SubscriptionPatch {
            confirmations: Some(3),
            updated_at: 2,
            ..SubscriptionPatch::default()
        };
        assert!(store.patch_subscription("sub_1", &patch).await.unwrap());
        let changes = store.reconcile_held(CHAIN, 0).await.unwrap();
        assert_eq!(
            changes,
            HeldChanges {
                cancelled: 0,
                rescheduled: 2,
                released: 1
            }
        );
        // Block 5 + 3 ≤ cursor 9: sent now. Block 8 + 3 = 11: still held, for the new count.
        assert_eq!(due_ids(&store).await, ["msg_b5"]);
        assert_eq!(release_block(&store, "msg_b8").await, Some(11));
        // The webhook says what it waited for; the log and the plugin's data are untouched.
        let (_, sent) = store.get_delivery("msg_b8").await.unwrap().unwrap();
        assert_eq!(sent, body(3));
        serde_json::from_str::<serde_json::Value>(&sent).unwrap();
        store.write_batch(&cursor_at(11), 60_000).await.unwrap();
        assert_eq!(due_ids(&store).await, ["msg_b8"]);
        // Idempotent: nothing is left to change.
        let again = store.reconcile_held(CHAIN, 0).await.unwrap();
        assert_eq!(again, HeldChanges::default());
    })
    .await;
}

#[tokio::test]
async fn a_changed_chain_confirmations_re_times_held_deliveries_on_start() {
    each_store(async |store: Store| {
        // Held for 10 blocks beyond a chain ingested at 0 confirmations...
        held_setup(&store, 10).await;
        // ...restarted with the chain at 6: the cursor now trails the head by 6, so 4 more
        // blocks are left to wait (block 5 → 9, released; block 8 → 12).
        let changes = store.reconcile_held(CHAIN, 6).await.unwrap();
        assert_eq!((changes.rescheduled, changes.released), (2, 1));
        assert_eq!(due_ids(&store).await, ["msg_b5"]);
        assert_eq!(release_block(&store, "msg_b8").await, Some(12));
        let (_, sent) = store.get_delivery("msg_b8").await.unwrap().unwrap();
        assert_eq!(sent, body(10), "still 10 blocks deep when sent");
        // At or above the subscription's count, the chain's own delay is enough: release all.
        store.reconcile_held(CHAIN, 10).await.unwrap();
        assert_eq!(due_ids(&store).await, ["msg_b8"]);
    })
    .await;
}

#[tokio::test]
async fn deleting_a_subscription_cancels_what_it_held_and_only_that() {
    each_store(async |store: Store| {
        held_setup(&store, 10).await;
        let due_now = OutboxWrite {
            deliveries: vec![NewDelivery {
                subscription_id: "sub_1".into(),
                ..delivery("msg_due")
            }],
            ..OutboxWrite::default()
        };
        store.write_batch(&due_now, -1).await.unwrap();
        assert!(store.delete_subscription("sub_1").await.unwrap());
        assert!(store.get_delivery("msg_b5").await.unwrap().is_none());
        assert!(store.get_delivery("msg_b8").await.unwrap().is_none());
        assert_eq!(
            due_ids(&store).await,
            ["msg_due"],
            "already due: still sent"
        );
        // A batch matched before the delete may still write a held row afterwards: the
        // periodic pass cancels it.
        let late = OutboxWrite {
            deliveries: vec![held("msg_late", "sub_1", 9, 19)],
            ..OutboxWrite::default()
        };
        store.write_batch(&late, 60_000).await.unwrap();
        let changes = store.reconcile_held(CHAIN, 0).await.unwrap();
        assert_eq!(changes.cancelled, 1);
        assert!(store.get_delivery("msg_late").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn an_outcome_under_an_expired_claim_cannot_overwrite_a_newer_one() {
    each_store(async |store: Store| {
        let write = OutboxWrite {
            deliveries: vec![delivery("msg_s")],
            ..OutboxWrite::default()
        };
        store.write_batch(&write, -1).await.unwrap();
        let first = store.claim_due(10, i64::MAX, 60_000).await.unwrap();
        assert_eq!(first.len(), 1);
        // The first claim's job waits in memory past its lease; another claim takes the row.
        sqlx::query(
            "UPDATE deliveries SET lease_until = lease_until - 120000, \
             next_attempt_at = next_attempt_at - 120000",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let second = store.claim_due(10, i64::MAX, 90_000).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_ne!(first[0].lease_until, second[0].lease_until);
        let outcome = |status: &str, lease: i64, attempted: bool| AttemptResult {
            id: "msg_s".into(),
            seq: first[0].seq,
            status: status.parse().unwrap(),
            attempts: if attempted { 1 } else { 0 },
            next_attempt_at: now_ms(),
            status_code: attempted.then_some(400),
            latency_ms: 1,
            error: Some(status.into()),
            response_body: None,
            at: now_ms(),
            attempted,
            lease,
            ordered: false,
            pending_seq: None,
        };
        // The newer claim's attempt: a final 400.
        let newer = outcome("dead", second[0].lease_until, true);
        store.record_results(&[newer]).await.unwrap();
        // Then the stale job is postponed (breaker open) and reported under its old claim.
        let stale = outcome("pending", first[0].lease_until, false);
        store.record_results(&[stale]).await.unwrap();
        let (row, _) = store.get_delivery("msg_s").await.unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.last_error.as_deref()),
            ("dead", Some("dead")),
            "a stale postponement does not revive a dead delivery"
        );
        assert!(due_ids(&store).await.is_empty());
        // Nor does a stale outcome recorded a second time under the newer, now spent, claim.
        let replay = outcome("retrying", second[0].lease_until, false);
        store.record_results(&[replay]).await.unwrap();
        let (row, _) = store.get_delivery("msg_s").await.unwrap().unwrap();
        assert_eq!(row.status, DeliveryStatus::Dead);
    })
    .await;
}

#[tokio::test]
async fn endpoint_writers_change_only_their_own_columns() {
    each_store(async |store: Store| {
        store.insert_endpoint(&endpoint("ep_1")).await.unwrap();
        // A rotation, then a 410 and a PATCH that both began before it.
        assert!(
            store
                .rotate_endpoint_secret("ep_1", "whsec_second", 5_000, 2)
                .await
                .unwrap()
        );
        assert!(
            store
                .disable_endpoint("ep_1", "receiver answered 410 Gone", 3)
                .await
                .unwrap()
        );
        assert!(
            !store.disable_endpoint("ep_1", "again", 4).await.unwrap(),
            "already disabled"
        );
        assert!(
            store
                .patch_endpoint("ep_1", None, Some("new"), None, 5)
                .await
                .unwrap()
        );
        let row = store.get_endpoint("ep_1").await.unwrap().unwrap();
        assert_eq!(row.secret, "whsec_second", "the rotation is kept");
        assert_eq!(row.previous_secret.as_deref(), Some("whsec_first"));
        assert_eq!(row.previous_secret_expires_at, Some(5_000));
        assert_eq!(
            (row.status, row.disabled_reason.as_deref()),
            (EndpointStatus::Disabled, Some("receiver answered 410 Gone"))
        );
        assert_eq!(
            (row.description.as_str(), row.url.as_str()),
            ("new", "http://127.0.0.1:9/hook")
        );
        assert!(
            !store
                .rotate_endpoint_secret("ep_missing", "whsec_x", 1, 1)
                .await
                .unwrap()
        );
    })
    .await;
}

#[tokio::test]
async fn a_subscription_patch_keeps_the_matchers_status() {
    each_store(async |store: Store| {
        store.insert_endpoint(&endpoint("ep_1")).await.unwrap();
        store
            .insert_subscription(&subscription("sub_1", 0))
            .await
            .unwrap();
        let quarantine = OutboxWrite {
            status_changes: vec![StatusChange {
                subscription_id: "sub_1".into(),
                status: SubscriptionStatus::Quarantined,
                last_error: Some("trap".into()),
            }],
            ..OutboxWrite::default()
        };
        store.write_batch(&quarantine, 60_000).await.unwrap();
        let patch = SubscriptionPatch {
            confirmations: Some(4),
            topics: Some(None),
            updated_at: 9,
            ..SubscriptionPatch::default()
        };
        assert!(store.patch_subscription("sub_1", &patch).await.unwrap());
        let row = store.get_subscription("sub_1").await.unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.last_error.as_deref()),
            ("quarantined", Some("trap"))
        );
        assert_eq!((row.confirmations, row.updated_at), (4, 9));
        let release = SubscriptionPatch {
            status: Some(SubscriptionStatus::Active),
            last_error: Some(None),
            updated_at: 10,
            ..SubscriptionPatch::default()
        };
        assert!(store.patch_subscription("sub_1", &release).await.unwrap());
        let row = store.get_subscription("sub_1").await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.last_error), ("active", None));
        assert_eq!(row.confirmations, 4);
        assert!(!store.patch_subscription("sub_x", &release).await.unwrap());
    })
    .await;
}

/// Outcomes are written back by the row's `seq`, and a row changes only when its `id` is the
/// outcome's too: an outcome carrying another row's `seq` changes neither row.
#[tokio::test]
async fn an_outcome_changes_the_row_with_its_seq_and_its_id_only() {
    each_store(async |store: Store| {
        let write = OutboxWrite {
            deliveries: vec![delivery("msg_p"), delivery("msg_q")],
            ..OutboxWrite::default()
        };
        let (inserted, stats) = store.write_batch(&write, 60_000).await.unwrap();
        let seq_of = |id: &str| inserted.iter().find(|d| d.id == id).unwrap().seq;
        let delivered = |id: &str, seq: i64| AttemptResult {
            id: id.into(),
            seq,
            status: DeliveryStatus::Delivered,
            attempts: 1,
            next_attempt_at: now_ms(),
            status_code: Some(200),
            latency_ms: 1,
            error: None,
            response_body: None,
            at: now_ms(),
            attempted: true,
            lease: stats.lease_until,
            ordered: false,
            pending_seq: None,
        };
        store
            .record_results(&[delivered("msg_p", seq_of("msg_q"))])
            .await
            .unwrap();
        for id in ["msg_p", "msg_q"] {
            let (row, _) = store.get_delivery(id).await.unwrap().unwrap();
            assert_eq!(row.status, DeliveryStatus::Pending, "{id}");
        }
        store
            .record_results(&[delivered("msg_q", seq_of("msg_q"))])
            .await
            .unwrap();
        let (row, _) = store.get_delivery("msg_q").await.unwrap().unwrap();
        assert_eq!((row.status, row.attempts), (DeliveryStatus::Delivered, 1));
        let (row, _) = store.get_delivery("msg_p").await.unwrap().unwrap();
        assert_eq!(row.status, DeliveryStatus::Pending, "untouched");
    })
    .await;
}
