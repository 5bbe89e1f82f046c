//! The commonest batch (one block of one chain, its deliveries, its cursor) is one statement on
//! PostgreSQL and one rusqlite transaction on SQLite (`direct.rs`): the same rows as the general
//! write, and fenced the same way (`fencing.rs`).

use super::*;

fn head_batch(block: i64, deliveries: Vec<NewDelivery>) -> OutboxWrite {
    let hash = format!("{block:#x}");
    OutboxWrite {
        deliveries,
        cursors: vec![Cursor {
            chain_id: 31337,
            block_number: block,
            block_hash: hash.clone(),
        }],
        chain_blocks: vec![chain_block(block, &hash, "[1]".into())],
        ..OutboxWrite::default()
    }
}

/// Three deliveries of block 7: one sent now, one held for confirmations, one ordered.
fn three() -> Vec<NewDelivery> {
    vec![
        NewDelivery {
            body: r#"{"n":1}"#.into(),
            ..delivery("msg_now")
        },
        NewDelivery {
            body: r#"{"n":2}"#.into(),
            release_block: Some(9),
            ..delivery("msg_held")
        },
        NewDelivery {
            body: r#"{"n":3}"#.into(),
            ordering_key: Some("key".into()),
            ..delivery("msg_ordered")
        },
    ]
}

#[tokio::test]
async fn a_head_batch_writes_the_same_rows_in_fewer_trips() {
    each_store(async |store: Store| {
        // On an SQLite file the head batch goes through rusqlite (`direct.rs`).
        assert_eq!(store.direct.is_some(), store.dialect() == Dialect::Sqlite);
        let postgres = store.dialect() == Dialect::Postgres;
        let write = head_batch(7, three());
        let (inserted, stats) = store.write_batch(&write, 60_000).await.unwrap();
        // SQLite: deliveries, bodies, blocks, cursor.
        assert_eq!(stats.statements, if postgres { 1 } else { 4 });
        assert!(stats.fenced.is_empty());
        assert_eq!(
            ids(inserted.clone()),
            ["msg_held", "msg_now", "msg_ordered"]
        );
        for new in &inserted {
            let (row, body) = store.get_delivery(&new.id).await.unwrap().unwrap();
            let sent = write.deliveries.iter().find(|d| d.id == new.id).unwrap();
            assert_eq!(row.seq, new.seq, "{}", new.id);
            assert_eq!(body, sent.body, "{}", new.id);
            assert_eq!(row.status, DeliveryStatus::Pending);
            // Leased to this process unless held (unleased, waiting) or ordered (due, unleased).
            let expected_due = match new.id.as_str() {
                "msg_now" => stats.lease_until,
                "msg_held" => HELD_UNTIL_RELEASED,
                _ => row.created_at,
            };
            assert_eq!(row.next_attempt_at, expected_due, "{}", new.id);
        }
        let cursor = store.get_cursor(31337).await.unwrap().unwrap();
        assert_eq!(
            (cursor.block_number, cursor.block_hash.as_str()),
            (7, "0x7")
        );
        let block = store.chain_block_logs(31337, "0x7").await.unwrap();
        assert_eq!(
            block.as_ref().and_then(StoredLogs::text).as_deref(),
            Some("[1]")
        );

        // A replay (after a crash) with a body that differs: nothing new, the stored body kept.
        let mut replay = head_batch(7, three());
        replay.deliveries[0].body = r#"{"n":"changed"}"#.into();
        let (again, stats) = store.write_batch(&replay, 60_000).await.unwrap();
        assert!(again.is_empty());
        assert!(stats.fenced.is_empty());
        let (_, body) = store.get_delivery("msg_now").await.unwrap().unwrap();
        assert_eq!(body, r#"{"n":1}"#);

        // The next block, with no deliveries: the block and the cursor only.
        let (none, stats) = store
            .write_batch(&head_batch(8, vec![]), 60_000)
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(stats.statements, if postgres { 1 } else { 2 });
        let cursor = store.get_cursor(31337).await.unwrap().unwrap();
        assert_eq!(cursor.block_number, 8);
        assert_eq!(store.chain_block_links(31337, 7, 8).await.unwrap().len(), 2);
    })
    .await;
}

/// The direct writer writes only while it holds the sqlx writer's one connection: the two never
/// write at once, so neither waits in SQLite's busy handler. Multi-threaded, so the write runs in
/// `block_in_place` as in the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_write_waits_for_the_sqlx_writer() {
    let store = sqlite().await;
    let held = store.writer.acquire().await.unwrap();
    let writing = tokio::spawn({
        let store = store.clone();
        async move { store.write_batch(&head_batch(7, three()), 60_000).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !writing.is_finished(),
        "wrote while the sqlx writer was held"
    );
    assert!(store.get_cursor(31337).await.unwrap().is_none());
    drop(held);
    let (inserted, _) = tokio::time::timeout(Duration::from_secs(10), writing)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(inserted.len(), 3);
    assert_eq!(
        store.get_cursor(31337).await.unwrap().unwrap().block_number,
        7
    );
}

/// A database in memory or opened read-only gets no direct writer (its head batches take the
/// general write); a file does, even one whose name looks like a `mode` parameter.
#[test]
fn only_a_writable_file_gets_a_direct_writer() {
    let dir = std::env::temp_dir().join(format!("pipeline-direct-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mode=ro.db");
    rusqlite::Connection::open(&file).unwrap();
    let url = format!("sqlite://{}", file.display());
    let gets_one = |url: &str| direct::DirectWriter::open(url).unwrap().is_some();
    assert!(gets_one(&url));
    assert!(gets_one(&format!("{url}?mode=rwc")));
    assert!(!gets_one(&format!("{url}?mode=ro")));
    assert!(!gets_one(&format!("{url}?cache=private&mode=ro")));
    assert!(!gets_one("sqlite::memory:"));
    assert!(!gets_one("sqlite://:memory:"));
    assert!(!gets_one("sqlite://test.db?mode=memory"));
    std::fs::remove_dir_all(&dir).unwrap();
}
