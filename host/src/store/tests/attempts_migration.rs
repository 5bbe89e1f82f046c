//! Migration 0013 re-keys `delivery_attempts` by the delivery's `seq`: attempts recorded under
//! the old key (`delivery_id`) are carried over to their delivery, orphans are dropped, and new
//! outcomes land under the new key.

use std::borrow::Cow;

use super::*;

/// Migrates `store` up to and including `version` only.
async fn migrate_to(store: &Store, version: i64) {
    let mut migrator = match store.dialect {
        Dialect::Sqlite => sqlx::migrate!("../migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("../migrations/postgres"),
    };
    let kept: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    migrator.migrations = Cow::Owned(kept);
    migrator.run(&store.pool).await.unwrap();
}

async fn unmigrated(dialect: Dialect) -> Option<Store> {
    match dialect {
        Dialect::Sqlite => {
            let dir = std::env::temp_dir().join(format!("pipeline-m13-{}", rand::random::<u32>()));
            Some(
                Store::connect(&format!("sqlite://{}/p.db", dir.display()))
                    .await
                    .unwrap(),
            )
        }
        Dialect::Postgres => Some(Store::connect(&postgres_url().await?).await.unwrap()),
    }
}

#[tokio::test]
async fn attempts_recorded_under_the_old_key_are_kept_by_seq() {
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let Some(store) = unmigrated(dialect).await else {
            continue;
        };
        migrate_to(&store, 12).await;
        let write = OutboxWrite {
            deliveries: vec![delivery("msg_old")],
            ..OutboxWrite::default()
        };
        store.write_batch(&write, 60_000).await.unwrap();
        for (id, attempt) in [("msg_old", 1), ("msg_old", 2), ("msg_gone", 1)] {
            sqlx::query(
                "INSERT INTO delivery_attempts (delivery_id, attempt, status_code, latency_ms, created_at) \
                 VALUES ($1, $2, 500, 7, $3)",
            )
            .bind(id)
            .bind(attempt)
            .bind(1_000 + attempt)
            .execute(&store.pool)
            .await
            .unwrap();
        }
        store.migrate().await.unwrap();
        let kept = store.delivery_attempts("msg_old").await.unwrap();
        let kept: Vec<(i64, Option<i64>, i64)> = kept
            .iter()
            .map(|a| (a.attempt, a.status_code, a.created_at))
            .collect();
        assert_eq!(
            kept,
            [(1, Some(500), 1_001), (2, Some(500), 1_002)],
            "{dialect:?}"
        );
        let (all,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM delivery_attempts")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(all, 2, "the orphan is not carried over ({dialect:?})");
        store.close().await;
    }
}
