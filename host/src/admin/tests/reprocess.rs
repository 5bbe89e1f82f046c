//! Reprocessing parked events judges them as of now: a block reorged out meanwhile is not
//! delivered, and a block without the subscription's confirmations yet is held (issue 8).

use super::*;
use crate::store::{Cursor, StoredBlock};

/// The parked log's block (0x76250 = 483,920) and hash.
const BLOCK: i64 = 0x76250;
const HASH: &str = "0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae";

/// Chain 1's cursor at `BLOCK + 1`, with the stored window saying `canonical` is the block at
/// `BLOCK`.
async fn chain_at(h: &Harness, canonical: &str) {
    let store = &h.state.store;
    let blocks = [
        (BLOCK, canonical.to_string(), "0x01".to_string()),
        (BLOCK + 1, "0xb1".to_string(), canonical.to_string()),
    ];
    for (number, hash, parent_hash) in blocks {
        let block = StoredBlock {
            number,
            hash,
            parent_hash,
            logs: "[]".into(),
        };
        store.put_chain_block(1, &block).await.unwrap();
    }
    let write = OutboxWrite {
        cursors: vec![Cursor {
            chain_id: 1,
            block_number: BLOCK + 1,
            block_hash: "0xb1".into(),
        }],
        ..OutboxWrite::default()
    };
    store.write_batch(&write, 0).await.unwrap();
}

async fn reprocess(h: &Harness, sub_id: &str) -> Value {
    let uri = format!("/v1/subscriptions/{sub_id}/reprocess");
    let (status, body) = h.send(Method::POST, &uri, Some("t"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn an_event_whose_block_was_reorged_out_is_resolved_without_a_delivery() {
    let h = harness().await;
    let (_, sub) = h.subscription(json!({})).await;
    let sub_id = sub["id"].as_str().unwrap().to_string();
    h.park(&sub_id).await;
    chain_at(
        &h,
        "0x0000000000000000000000000000000000000000000000000000000000000abc",
    )
    .await;
    assert_eq!(
        reprocess(&h, &sub_id).await,
        json!({"reprocessed": 1, "delivered": 0, "dropped": 0, "orphaned": 1, "held": 0})
    );
    let (_, shown) = h.get(&format!("/v1/subscriptions/{sub_id}")).await;
    assert_eq!(shown["parked_events"], 0, "resolved, not left parked");
    let (_, deliveries) = h
        .get(&format!("/v1/deliveries?subscription_id={sub_id}"))
        .await;
    assert_eq!(deliveries["items"], json!([]));
}

#[tokio::test]
async fn an_event_without_its_confirmations_yet_is_held_and_one_with_them_is_not() {
    let h = harness().await;
    let (_, waiting) = h.subscription(json!({"confirmations": 12})).await;
    let (_, satisfied) = h.subscription(json!({"confirmations": 1})).await;
    chain_at(&h, HASH).await;
    for (sub, held) in [(&waiting, 1), (&satisfied, 0)] {
        let sub_id = sub["id"].as_str().unwrap().to_string();
        h.park(&sub_id).await;
        assert_eq!(
            reprocess(&h, &sub_id).await,
            json!({"reprocessed": 1, "delivered": 1, "dropped": 0, "orphaned": 0, "held": held}),
            "{sub}"
        );
        let (_, deliveries) = h
            .get(&format!("/v1/deliveries?subscription_id={sub_id}"))
            .await;
        // A held delivery is pending with no attempt due until the cursor releases it.
        let due = deliveries["items"][0]["next_attempt_at"].as_str().unwrap();
        assert_eq!(due.starts_with("9999"), held == 1, "{deliveries}");
    }
}
