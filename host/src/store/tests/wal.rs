//! SQLite's write-ahead log stays bounded while readers never stop (`store/wal.rs`).

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Two readers that keep overlapping read transactions open on the pool, so that at every moment
/// some reader uses the log, as the admin API, the poller and the claims do under load.
fn overlapping_readers(store: &Store, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2u64)
        .map(|offset| {
            let (pool, stop) = (store.pool.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10 * offset)).await;
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = pool.begin().await.unwrap();
                    let _: (i64,) = sqlx::query_as("SELECT count(*) FROM wal_probe")
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect()
}

// Two worker threads: the readers keep running while the writer or the checkpoint waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_while_readers_never_stop() {
    let dir = std::env::temp_dir().join(format!("pipeline-wal-{}", rand::random::<u32>()));
    let db = dir.join("p.db");
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    store
        .writer
        .execute("CREATE TABLE wal_probe (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers = overlapping_readers(&store, &stop);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // 800 × 64 KiB = 50 MiB written, a checkpoint every 10 rows, restarting above ~1 MiB of log.
    for row in 0..800 {
        sqlx::query("INSERT INTO wal_probe (body) VALUES (randomblob(65536))")
            .execute(&store.writer)
            .await
            .unwrap();
        if row % 10 == 9 {
            store.checkpoint_above(256).await.unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let wal_bytes = std::fs::metadata(dir.join("p.db-wal")).unwrap().len();
    // Without restarts the log holds every row written: over 50 MiB. With them it stays near
    // 1-2 MiB; a restart that finds a reader in the way (a loaded machine) tries again 10 rows later.
    assert!(
        wal_bytes < 16 * 1024 * 1024,
        "the write-ahead log grew to {wal_bytes} bytes"
    );
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM wal_probe")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(rows, 800);
}

/// The batch write reads before it writes (the chain's fence), so on SQLite it must take the
/// write lock when it begins: a transaction that holds a read snapshot and then asks for the
/// write lock gets `SQLITE_BUSY` at once, without the busy timeout, while another connection —
/// the checkpointer restarting the log — holds that lock (seen at 20K events/s: "outbox write
/// failed; database is locked", each costing a 100 ms retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_write_waits_for_another_sqlite_writer_instead_of_failing() {
    let store = sqlite().await;
    let _lock = store.try_lock_chain(31337).await.unwrap().unwrap();
    let mut other = store.pool.acquire().await.unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    let write = OutboxWrite {
        deliveries: vec![delivery("msg_waits")],
        cursors: vec![Cursor {
            chain_id: 31337,
            block_number: 7,
            block_hash: "0xab".into(),
        }],
        ..OutboxWrite::default()
    };
    let writing = tokio::spawn({
        let store = store.clone();
        async move { store.write_batch(&write, 60_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.execute("COMMIT").await.unwrap();
    let (inserted, _) = writing.await.unwrap().unwrap();
    assert_eq!(ids(inserted), vec!["msg_waits"]);
    assert_eq!(
        store.get_cursor(31337).await.unwrap().unwrap().block_number,
        7
    );
}

/// After a complete checkpoint the log must be started over, and SQLite syncs the log's new
/// header in the commit that does it. The checkpointer does it with a one-page write of its own,
/// so the hot path's next commit appends to a log already started over instead of paying for
/// that sync.
#[tokio::test]
async fn a_complete_checkpoint_starts_the_log_over_itself() {
    let store = sqlite().await;
    let write = OutboxWrite {
        deliveries: (0..50)
            .map(|i| delivery(&format!("msg_wal{i:02}")))
            .collect(),
        ..OutboxWrite::default()
    };
    store.write_batch(&write, 60_000).await.unwrap();
    let frames = async || -> (i64, i64, i64) {
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&store.pool)
            .await
            .unwrap()
    };
    let (_, before, _) = frames().await;
    assert!(before > 2, "the batch wrote {before} frames");
    assert!(store.checkpoint().await.unwrap(), "nothing in the way");
    let (busy, after, copied) = frames().await;
    assert_eq!(busy, 0);
    assert!(
        after <= 2 && copied == after,
        "the log was not started over: {after} frames, {copied} copied"
    );
    let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        version, 0,
        "user_version is rewritten with the value it had"
    );

    // With nothing written since, the checkpointer writes nothing either (no write and sync every
    // 500 ms on an idle host). `data_version` changes when another connection commits.
    let mut watcher = store.pool.acquire().await.unwrap();
    let idle: (i64,) = sqlx::query_as("PRAGMA data_version")
        .fetch_one(&mut *watcher)
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(store.checkpoint().await.unwrap());
    }
    let after: (i64,) = sqlx::query_as("PRAGMA data_version")
        .fetch_one(&mut *watcher)
        .await
        .unwrap();
    assert_eq!(after, idle, "an idle checkpoint wrote");
}

/// The checkpointer waits for the hot path's writer to end its transaction before it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_starts_between_the_writers_transactions() {
    let store = sqlite().await;
    tokio::time::timeout(
        Duration::from_secs(5),
        store.writer_idle(Duration::from_secs(60)),
    )
    .await
    .expect("an idle writer is not waited for");
    let tx = store.begin_write(&store.writer).await.unwrap();
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.writer_idle(Duration::from_secs(60)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "returned inside the writer's transaction"
    );
    tx.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("returns once the writer's connection is back")
        .unwrap();
}
