//! Parked events (`parked_events`): those a failing plugin held back, written with the batch
//! (`outbox.rs`), listed and counted for the API, resolved by reprocessing. Batch writes pass
//! their rows as one JSON parameter (rare, off the hot path).

use sqlx::AssertSqlSafe;

use super::outbox::{Tx, WriteStats};
use super::{ParkedEvent, ParkedRow, Store, StoreError};

impl Store {
    /// Parks `parked` (one statement); an event already parked under its key is not added
    /// again ([`ParkedEvent::event_key`]).
    pub(super) async fn insert_parked(
        &self,
        tx: &mut Tx<'_>,
        parked: &[&ParkedEvent],
        now: i64,
        stats: &mut WriteStats,
    ) -> Result<(), StoreError> {
        if parked.is_empty() {
            return Ok(());
        }
        let source = self.json_rows(
            1,
            &[
                ("subscription_id", "text"),
                ("chain_id", "bigint"),
                ("event_type", "text"),
                ("log", "text"),
                ("error", "text"),
                ("event_index", "bigint"),
                ("event_key", "text"),
            ],
        );
        // `WHERE true` lets SQLite tell the upsert clause from a join constraint.
        let sql = format!(
            "INSERT INTO parked_events (subscription_id, chain_id, event_type, log, error, event_index, event_key, created_at) \
             SELECT j.subscription_id, j.chain_id, j.event_type, j.log, j.error, j.event_index, j.event_key, $2 \
             FROM {source} WHERE true ON CONFLICT DO NOTHING"
        );
        let json = serde_json::to_string(parked)?;
        sqlx::query(AssertSqlSafe(sql))
            .bind(json)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        stats.statements += 1;
        Ok(())
    }

    /// Deletes the parked events (by `seq`) that reprocessing resolved (one statement).
    pub(super) async fn resolve_parked(
        &self,
        tx: &mut Tx<'_>,
        resolved: &[i64],
        stats: &mut WriteStats,
    ) -> Result<(), StoreError> {
        if resolved.is_empty() {
            return Ok(());
        }
        let seqs: Vec<serde_json::Value> = resolved
            .iter()
            .map(|seq| serde_json::json!({"seq": seq}))
            .collect();
        let source = self.json_rows(1, &[("seq", "bigint")]);
        let sql = format!("DELETE FROM parked_events WHERE seq IN (SELECT j.seq FROM {source})");
        sqlx::query(AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(seqs).to_string())
            .execute(&mut **tx)
            .await?;
        stats.statements += 1;
        Ok(())
    }

    pub async fn list_parked(
        &self,
        subscription_id: &str,
        limit: i64,
    ) -> Result<Vec<ParkedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, subscription_id, chain_id, event_type, log, error, event_index, event_key, \
             created_at FROM parked_events WHERE subscription_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(subscription_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn count_parked(&self, subscription_id: &str) -> Result<i64, StoreError> {
        let row: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM parked_events WHERE subscription_id = $1")
                .bind(subscription_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.0)
    }

    /// The number of parked events of every subscription that has any, in one statement (the
    /// subscription list shows it per row).
    pub async fn count_parked_by_subscription(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT subscription_id, COUNT(*) FROM parked_events GROUP BY subscription_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Removes every parked event of a subscription (the subscription is being deleted).
    pub async fn delete_all_parked(&self, subscription_id: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM parked_events WHERE subscription_id = $1")
            .bind(subscription_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}
