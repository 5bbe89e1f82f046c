//! Test module: compiled only under #[cfg(test)], from its parent module.
//! A batch of outcomes with rows the database refuses (NUL in a response body, on PostgreSQL).

use super::*;
use crate::store::tests::delivery;
use crate::store::{DeliveryStatus, OutboxWrite, now_ms};

fn result(id: &str, seq: i64, body: &str, lease: i64) -> AttemptResult {
    AttemptResult {
        id: id.into(),
        seq,
        status: DeliveryStatus::Delivered,
        attempts: 1,
        next_attempt_at: now_ms(),
        status_code: Some(200),
        latency_ms: 3,
        error: None,
        response_body: Some(body.into()),
        at: now_ms(),
        attempted: true,
        lease,
        ordered: false,
        pending_seq: None,
    }
}

#[tokio::test]
async fn refused_rows_are_split_out_and_recorded_without_their_body_postgres() {
    let Some(store) = crate::store::tests::postgres().await else {
        return;
    };
    let ids: Vec<String> = (0..9).map(|i| format!("msg_{i}")).collect();
    let batch = OutboxWrite {
        deliveries: ids.iter().map(|id| delivery(id)).collect(),
        ..OutboxWrite::default()
    };
    let (inserted, stats) = store.write_batch(&batch, 60_000).await.unwrap();
    let seq_of = |id: &str| inserted.iter().find(|d| d.id == id).unwrap().seq;
    // Two of nine bodies hold a NUL, which PostgreSQL's text refuses.
    let bad = ["msg_2", "msg_7"];
    let results: Vec<AttemptResult> = ids
        .iter()
        .map(|id| {
            result(
                id,
                seq_of(id),
                if bad.contains(&id.as_str()) {
                    "a\0b"
                } else {
                    "ok"
                },
                stats.lease_until,
            )
        })
        .collect();
    let metrics = Metrics::new().unwrap();
    write(&store, &results, &metrics).await;
    // Each refusal on the way down to the two single rows is counted for the alert on DB errors.
    let refusals = metrics
        .db_errors
        .with_label_values(&["delivery_results"])
        .get();
    assert!(refusals >= 2, "{refusals}");
    for id in &ids {
        let (row, _) = store.get_delivery(id).await.unwrap().unwrap();
        assert_eq!(row.status, DeliveryStatus::Delivered, "{id}");
        let attempts = store.delivery_attempts(id).await.unwrap();
        assert_eq!(attempts.len(), 1, "{id}: recorded once");
        if bad.contains(&id.as_str()) {
            assert_eq!(attempts[0].response_body, None, "{id}");
            let error = attempts[0].error.as_deref().unwrap_or_default();
            assert!(
                error.starts_with("response body not stored: the database refused it"),
                "{id}: {error}"
            );
        } else {
            assert_eq!(attempts[0].response_body.as_deref(), Some("ok"), "{id}");
        }
    }
}

/// `[delivery] send_before_commit`: outcomes that reach the recorder before their batch's write
/// has committed wait for it and are written to the rows it inserted; the outcome of a delivery
/// the write did not insert (already stored: a replay) changes nothing.
#[tokio::test]
async fn outcomes_sent_before_their_write_are_recorded_once_it_commits() {
    let store = crate::store::tests::sqlite().await;
    let earlier = OutboxWrite {
        deliveries: vec![delivery("msg_stored")],
        ..OutboxWrite::default()
    };
    store.write_batch(&earlier, 60_000).await.unwrap();
    let (stored_before, _) = store.get_delivery("msg_stored").await.unwrap().unwrap();

    let now = now_ms();
    let lease_until = now + 60_000;
    let (promise, pending) = crate::store::pending_seqs();
    let (sender, receiver) = mpsc::channel(16);
    let recorder = tokio::spawn(run(
        store.clone(),
        receiver,
        Metrics::new().unwrap(),
        Default::default(),
    ));
    for id in ["msg_new", "msg_stored"] {
        let outcome = AttemptResult {
            pending_seq: Some(pending.clone()),
            ..result(id, 0, "ok", lease_until)
        };
        sender.send(outcome).await.unwrap();
    }
    // The recorder has lingered and is waiting for the write, which only now runs.
    tokio::time::sleep(LINGER * 2).await;
    assert_eq!(store.delivery_attempts("msg_new").await.unwrap().len(), 0);
    let batch = OutboxWrite {
        deliveries: vec![delivery("msg_new"), delivery("msg_stored")],
        ..OutboxWrite::default()
    };
    let (inserted, stats) = store.write_batch_at(&batch, now, 60_000).await.unwrap();
    assert_eq!(
        stats.lease_until, lease_until,
        "the lease the jobs were given"
    );
    assert_eq!(inserted.len(), 1, "{inserted:?}");
    promise.written(&inserted);
    drop(sender);
    recorder.await.unwrap();

    let (new, _) = store.get_delivery("msg_new").await.unwrap().unwrap();
    assert_eq!(new.status, DeliveryStatus::Delivered);
    assert_eq!(store.delivery_attempts("msg_new").await.unwrap().len(), 1);
    let (stored, _) = store.get_delivery("msg_stored").await.unwrap().unwrap();
    assert_eq!(
        stored.status, stored_before.status,
        "the replay's outcome changed the stored row"
    );
    assert_eq!(
        store.delivery_attempts("msg_stored").await.unwrap().len(),
        0
    );
}

/// SQLite's outcomes go through rusqlite (`store/direct.rs`): an error SQLite returned is a
/// refusal there too, and one that never reached the database is not.
#[test]
fn an_error_from_sqlite_through_rusqlite_is_a_refusal() {
    let constraint = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT);
    let refused = StoreError::Sqlite(rusqlite::Error::SqliteFailure(constraint, None));
    assert!(is_refusal(&refused));
    let refused = StoreError::Database(sqlx::Error::PoolTimedOut);
    assert!(!is_refusal(&refused));
    let not_reached = StoreError::Sqlite(rusqlite::Error::InvalidQuery);
    assert!(!is_refusal(&not_reached));
}
