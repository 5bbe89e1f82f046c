//! Fencing: a replica that lost a chain's lock cannot move that chain's cursor, whatever it still
//! has queued; the new owner's cursor stands.

use super::*;

const CHAIN: i64 = 31337;

/// Two handles on one database: two replicas. SQLite grants every lock (one process per file in
/// production), so it shows the epoch alone fencing the write; PostgreSQL the real hand-over.
async fn replicas() -> Vec<(Store, Store, bool)> {
    let dir = std::env::temp_dir().join(format!(
        "pipeline-fence-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let url = format!("sqlite://{}/p.db", dir.display());
    let a = Store::connect(&url).await.unwrap();
    a.migrate().await.unwrap();
    let mut pairs = vec![(a, Store::connect(&url).await.unwrap(), false)];
    if let Some(url) = postgres_url().await {
        let a = Store::connect(&url).await.unwrap();
        a.migrate().await.unwrap();
        pairs.push((a, Store::connect(&url).await.unwrap(), true));
    }
    pairs
}

/// A batch of one block; `release`: it also releases the chain's held deliveries, which the
/// one-statement write on PostgreSQL does not take (`one_statement.rs`), so both paths are fenced.
fn write(block: i64, id: &str, release: bool) -> OutboxWrite {
    OutboxWrite {
        deliveries: vec![NewDelivery {
            id: id.into(),
            subscription_id: "sub_1".into(),
            endpoint_id: "ep_1".into(),
            chain_id: CHAIN,
            event_type: "log".into(),
            block_number: block,
            body: "{}".into(),
            release_block: None,
            supersedes: Vec::new(),
            ordering_key: None,
        }],
        cursors: vec![Cursor {
            chain_id: CHAIN,
            block_number: block,
            block_hash: format!("{block:#x}"),
        }],
        release_chains: if release { vec![CHAIN as u64] } else { vec![] },
        chain_blocks: vec![ChainBlock {
            chain_id: CHAIN,
            block: StoredBlock {
                number: block,
                hash: format!("{block:#x}"),
                parent_hash: format!("{:#x}", block - 1),
                logs: "[]".into(),
            },
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_replica_that_lost_the_chain_cannot_move_its_cursor() {
    for release in [true, false] {
        for (a, b, postgres) in replicas().await {
            let lock_a = a.try_lock_chain(CHAIN as u64).await.unwrap().unwrap();
            a.write_batch(&write(10, "msg_a10", release), 60_000)
                .await
                .unwrap();
            if postgres {
                // A's database session ends (here: released) and B takes the chain over.
                lock_a.release().await;
            }
            let _lock_b = b.try_lock_chain(CHAIN as u64).await.unwrap().unwrap();
            b.write_batch(&write(20, "msg_b20", release), 60_000)
                .await
                .unwrap();
            // A batch A still had queued arrives late: it must not move B's cursor back.
            let late = write(15, "msg_a15", release);
            let (inserted, stats) = a.write_batch(&late, 60_000).await.unwrap();
            let case = format!("postgres: {postgres}, release: {release}");
            assert_eq!(stats.fenced, vec![CHAIN], "refused and counted; {case}");
            let cursor = b.get_cursor(CHAIN as u64).await.unwrap().unwrap();
            assert_eq!(
                (cursor.block_number, cursor.block_hash.as_str()),
                (20, "0x14"),
                "{case}"
            );
            // Its deliveries are B's to make (B re-ingests everything after its cursor).
            assert!(inserted.is_empty(), "{case}");
            assert!(b.get_delivery("msg_a15").await.unwrap().is_none(), "{case}");
            // Nor does its block join the stored window.
            assert!(
                b.chain_blocks(CHAIN as u64, 15, 15)
                    .await
                    .unwrap()
                    .is_empty(),
                "{case}"
            );
            assert_eq!(b.chain_blocks(CHAIN as u64, 20, 20).await.unwrap().len(), 1);
            // The new owner's own writes go on.
            let (new, stats) = b
                .write_batch(&write(21, "msg_b21", release), 60_000)
                .await
                .unwrap();
            assert!(stats.fenced.is_empty(), "{case}");
            assert_eq!(new.len(), 1, "{case}");
            let cursor = b.get_cursor(CHAIN as u64).await.unwrap().unwrap();
            assert_eq!(cursor.block_number, 21, "{case}");
        }
    }
}
