//! A claim of due deliveries is bounded by their bodies' bytes as well as by its row count. On
//! both stores.

use super::*;

/// A body of `bytes` bytes in half as many characters: a claim must count bytes.
fn two_byte_body(bytes: usize) -> String {
    let inner = "é".repeat((bytes - 2) / 2);
    format!("\"{inner}\"")
}

#[tokio::test]
async fn a_claim_stops_once_its_bodies_reach_the_byte_limit() {
    each_store(async |store: Store| {
        let deliveries = (0..4)
            .map(|i| NewDelivery {
                body: two_byte_body(1_000),
                ..delivery(&format!("msg_b{i}"))
            })
            .collect();
        let write = OutboxWrite {
            deliveries,
            ..OutboxWrite::default()
        };
        store.write_batch(&write, -1).await.unwrap();
        // 0 and 1,000 bytes before the first two rows are under 1,500; 2,000 before the third
        // is not. (Counted in characters, a third row would pass.)
        let ids = |due: Vec<DueDelivery>| due.into_iter().map(|d| d.id).collect::<Vec<_>>();
        let first = store.claim_due(10, 1_500, 60_000).await.unwrap();
        assert_eq!(ids(first), ["msg_b0", "msg_b1"]);
        // A body over the whole limit is still claimed, alone.
        let second = store.claim_due(10, 10, 60_000).await.unwrap();
        assert_eq!(ids(second), ["msg_b2"]);
        let rest = store.claim_due(10, i64::MAX, 60_000).await.unwrap();
        assert_eq!(ids(rest), ["msg_b3"]);
        assert!(
            store
                .claim_due(10, i64::MAX, 60_000)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}
