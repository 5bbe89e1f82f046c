//! SQLite's page caches are bounded per connection: the writer's is the one the hot path needs,
//! the pooled readers' are small (`SQLITE_WRITER_CACHE_KIB`, `SQLITE_READER_CACHE_KIB`).

use super::*;

async fn cache_kib(pool: &AnyPool) -> i64 {
    let (size,): (i64,) = sqlx::query_as("PRAGMA cache_size")
        .fetch_one(pool)
        .await
        .unwrap();
    // A negative cache_size is in KiB.
    -size
}

#[tokio::test]
async fn every_sqlite_connection_has_a_bounded_page_cache() {
    let dir = std::env::temp_dir().join(format!("pipeline-caches-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/p.db", dir.display()))
        .await
        .unwrap();
    assert_eq!(
        cache_kib(&store.writer).await,
        SQLITE_WRITER_CACHE_KIB as i64
    );
    // Every pooled connection, not only the first: hold them all at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = store.pool.acquire().await.unwrap();
        let (size,): (i64,) = sqlx::query_as("PRAGMA cache_size")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(-size, SQLITE_READER_CACHE_KIB as i64);
        held.push(conn);
    }
    drop(held);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The writer keeps statement journals in memory (`temp_store = 2`), the readers SQLite's default.
#[tokio::test]
async fn the_sqlite_writer_keeps_its_statement_journals_in_memory() {
    let dir = std::env::temp_dir().join(format!("pipeline-temp-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/p.db", dir.display()))
        .await
        .unwrap();
    let temp_store = |pool: AnyPool| async move {
        let (mode,): (i64,) = sqlx::query_as("PRAGMA temp_store")
            .fetch_one(&pool)
            .await
            .unwrap();
        mode
    };
    assert_eq!(temp_store(store.writer.clone()).await, 2, "MEMORY");
    assert_eq!(temp_store(store.pool.clone()).await, 0, "DEFAULT");
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
