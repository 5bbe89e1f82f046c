//! Delivery state through the admin API (issue 8): a subscription's confirmations change or its
//! deletion never strands held deliveries, and a PATCH or rotation racing another writer keeps
//! that writer's change. The races are made deterministic on PostgreSQL: the other writer's
//! UPDATE is held uncommitted until the request is seen waiting for its row lock.

use std::time::Duration;

use super::*;
use crate::store::{Cursor, NewDelivery};

/// A held delivery of `subscription_id` for a log in `block`, matched with `extra` confirmations
/// beyond the chain's, with the cursor at block 9.
async fn hold(h: &Harness, subscription_id: &str, id: &str, block: i64, extra: i64) {
    let delivery = NewDelivery {
        id: id.into(),
        subscription_id: subscription_id.into(),
        endpoint_id: "ep".into(),
        chain_id: 31337,
        event_type: "log".into(),
        block_number: block,
        body: "{}".into(),
        release_block: Some(block + extra),
        supersedes: Vec::new(),
        ordering_key: None,
    };
    let write = OutboxWrite {
        deliveries: vec![delivery],
        cursors: vec![Cursor {
            chain_id: 31337,
            block_number: 9,
            block_hash: "0x9".into(),
        }],
        release_chains: vec![31337],
        ..OutboxWrite::default()
    };
    h.state.store.write_batch(&write, 60_000).await.unwrap();
}

async fn is_held(h: &Harness, id: &str) -> bool {
    let (row, _) = h.state.store.get_delivery(id).await.unwrap().unwrap();
    row.next_attempt_at == crate::store::HELD_UNTIL_RELEASED
}

#[tokio::test]
async fn lowered_confirmations_release_held_deliveries_and_a_delete_cancels_them() {
    each_store(async |h: Harness| {
        // The harness ingests chain 31337 at 2 confirmations; the subscription wants 10.
        let body = json!({"chain_id": 31337, "confirmations": 10});
        let (status, sub) = h.subscription(body).await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        let sub = sub["id"].as_str().unwrap().to_string();
        hold(&h, &sub, "msg_b5", 5, 8).await;
        hold(&h, &sub, "msg_b8", 8, 8).await;
        let retry = |id: &str| format!("/v1/deliveries/{id}/retry");
        let (status, _) = h.json(Method::POST, &retry("msg_b5"), json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "held for confirmations");
        let uri = format!("/v1/subscriptions/{sub}");
        let (status, patched) = h
            .json(Method::PATCH, &uri, json!({"confirmations": 3}))
            .await;
        assert_eq!(
            (status, &patched["confirmations"]),
            (StatusCode::OK, &json!(3))
        );
        // Block 5 needs the cursor at 5 + 1: released at once, so it can be retried by hand.
        assert!(!is_held(&h, "msg_b5").await);
        let (status, _) = h.json(Method::POST, &retry("msg_b5"), json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Block 8 needs the cursor at 9: reached too.
        let (status, _) = h.json(Method::POST, &retry("msg_b8"), json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Raised again: a new held delivery waits for the new count, then the delete cancels it.
        h.json(Method::PATCH, &uri, json!({"confirmations": 20}))
            .await;
        hold(&h, &sub, "msg_b9", 9, 1).await;
        assert!(is_held(&h, "msg_b9").await);
        let (status, _) = h.send(Method::DELETE, &uri, Some("t"), Body::empty()).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h.get("/v1/deliveries/msg_b9").await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "cancelled with its subscription"
        );
        let (status, _) = h.get("/v1/deliveries/msg_b5").await;
        assert_eq!(status, StatusCode::OK, "already due: kept and sent");
    })
    .await;
}

/// Runs `request` while `statement` (binding the row's id as `$1`) is held uncommitted in
/// another transaction, and commits that transaction once the request waits for the row.
async fn racing(h: &Harness, statement: &str, id: &str, request: (Method, String, Value)) {
    let pool = h.state.store.test_pool();
    let mut other = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .bind(id)
        .execute(&mut *other)
        .await
        .unwrap();
    let state = h.state.clone();
    let (method, uri, body) = request;
    let sent = tokio::spawn(async move {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer t")
            .body(Body::from(body.to_string()))
            .unwrap();
        router(state).oneshot(request).await.unwrap().status()
    });
    let waiting = async {
        loop {
            let (waiters,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND datname = current_database()",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            if waiters > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the request reaches its UPDATE");
    other.commit().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_subscription_patch_racing_a_quarantine_keeps_it_postgres() {
    let Some(store) = crate::store::tests::postgres().await else {
        return;
    };
    let h = harness_on(
        store,
        std::env::temp_dir().join(new_id("pipeline-admin-test")),
        vec![],
    );
    let (_, sub) = h.subscription(json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let quarantine =
        "UPDATE subscriptions SET status = 'quarantined', last_error = 'trap' WHERE id = $1";
    let patch = json!({"confirmations": 4});
    racing(
        &h,
        quarantine,
        &id,
        (Method::PATCH, format!("/v1/subscriptions/{id}"), patch),
    )
    .await;
    let (_, row) = h.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(
        (&row["status"], &row["last_error"], &row["confirmations"]),
        (&json!("quarantined"), &json!("trap"), &json!(4)),
        "{row}"
    );
}

#[tokio::test]
async fn endpoint_writes_racing_a_rotation_or_a_410_keep_it_postgres() {
    let Some(store) = crate::store::tests::postgres().await else {
        return;
    };
    let h = harness_on(
        store,
        std::env::temp_dir().join(new_id("pipeline-admin-test")),
        vec![],
    );
    let id = h.endpoint().await;
    let uri = format!("/v1/endpoints/{id}");
    // A rotation commits while a PATCH of the description is between its read and its write.
    let rotation =
        "UPDATE endpoints SET previous_secret = secret, secret = 'whsec_rotated' WHERE id = $1";
    racing(
        &h,
        rotation,
        &id,
        (Method::PATCH, uri.clone(), json!({"description": "x"})),
    )
    .await;
    let row = h.state.store.get_endpoint(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.secret.as_str(), row.description.as_str()),
        ("whsec_rotated", "x")
    );
    // A 410 disables the endpoint while a rotation is under way.
    let gone = "UPDATE endpoints SET status = 'disabled', disabled_reason = '410' WHERE id = $1";
    let rotate = (Method::POST, format!("{uri}/rotate-secret"), json!({}));
    racing(&h, gone, &id, rotate).await;
    let row = h.state.store.get_endpoint(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.disabled_reason.as_deref()),
        ("disabled", Some("410"))
    );
    assert_eq!(row.previous_secret.as_deref(), Some("whsec_rotated"));
    assert_ne!(row.secret, "whsec_rotated");
}
