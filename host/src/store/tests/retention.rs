//! Retention against a manual retry that lands between its read and its delete.

use super::*;

/// Two finished, expired deliveries with one attempt each; returns the store's clock reading.
async fn two_expired(store: &Store) -> i64 {
    let write = OutboxWrite {
        deliveries: vec![delivery("msg_gone"), delivery("msg_retried")],
        ..OutboxWrite::default()
    };
    store.write_batch(&write, 60_000).await.unwrap();
    let old = super::super::now_ms() - 40 * 86_400_000;
    for id in ["msg_gone", "msg_retried"] {
        aged_with_an_attempt(store, id, "delivered", old).await;
    }
    super::super::now_ms()
}

#[tokio::test]
async fn a_delivery_retried_after_retention_read_it_keeps_its_attempts() {
    each_store(async |store: Store| {
        let now = two_expired(&store).await;
        let cutoffs = Cutoffs {
            delivered_before: now - 30 * 86_400_000,
            dead_before: now - 90 * 86_400_000,
            parked_before: now - 90 * 86_400_000,
        };
        let (expired, _) = store.expired_deliveries(&cutoffs, 0).await.unwrap();
        assert_eq!(expired, ["msg_gone", "msg_retried"]);
        // An operator retries one of them before the delete runs.
        assert!(store.retry_delivery("msg_retried").await.unwrap());
        assert_eq!(store.delete_finished(&expired).await.unwrap(), 1);

        let left: Vec<(String, i64)> = sqlx::query_as(
            "SELECT d.id, COUNT(a.attempt) FROM deliveries d \
             LEFT JOIN delivery_attempts a ON a.delivery_seq = d.seq GROUP BY d.id",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(
            left,
            [("msg_retried".to_string(), 1)],
            "the retried row keeps its attempt log"
        );
        let (attempts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM delivery_attempts")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(attempts, 1, "the deleted row's attempt went with it");
    })
    .await;
}
