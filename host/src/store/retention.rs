//! Retention: delivered and dead deliveries (with their attempts) and parked events are deleted
//! once older than their period, oldest first, in small chunks — each chunk its own short
//! transaction, so pruning never holds locks the hot path waits on for long.

use super::{DeliveryStatus, Store, StoreError};

/// Rows looked at per chunk.
pub const PRUNE_CHUNK: i64 = 500;

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub parked_events: u64,
}

/// Creation times (unix ms) before which rows go.
#[derive(Debug, Clone, Copy)]
pub struct Cutoffs {
    pub delivered_before: i64,
    pub dead_before: i64,
    pub parked_before: i64,
}

impl Store {
    /// Looks at the `PRUNE_CHUNK` oldest deliveries after `after_seq` and deletes the expired
    /// ones with their attempts. Returns how many went and where the next chunk starts, or
    /// `None` once it reached rows younger than every cutoff (`seq` follows creation order, so
    /// nothing older lies beyond): a pass never scans the recent part of the table.
    pub async fn prune_deliveries_chunk(
        &self,
        cutoffs: &Cutoffs,
        after_seq: i64,
    ) -> Result<(u64, Option<i64>), StoreError> {
        let (expired, next) = self.expired_deliveries(cutoffs, after_seq).await?;
        if expired.is_empty() {
            return Ok((0, next));
        }
        Ok((self.delete_finished(&expired).await?, next))
    }

    /// The ids of the expired finished deliveries among the `PRUNE_CHUNK` after `after_seq`, and
    /// where the next chunk starts (see [`Store::prune_deliveries_chunk`]).
    pub(super) async fn expired_deliveries(
        &self,
        cutoffs: &Cutoffs,
        after_seq: i64,
    ) -> Result<(Vec<String>, Option<i64>), StoreError> {
        let oldest_kept = cutoffs.delivered_before.max(cutoffs.dead_before);
        /// The status stays text here: a state this build does not know is kept, not an error.
        #[derive(sqlx::FromRow)]
        struct Aged {
            seq: i64,
            id: String,
            status: String,
            created_at: i64,
        }
        let rows: Vec<Aged> = sqlx::query_as(
            "SELECT seq, id, status, created_at FROM deliveries \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(PRUNE_CHUNK)
        .fetch_all(&self.pool)
        .await?;
        let reached_recent = rows.iter().any(|r| r.created_at >= oldest_kept);
        let next = rows.last().map(|r| r.seq).filter(|_| !reached_recent);
        let expired = rows
            .into_iter()
            .filter(|r| match r.status.parse() {
                Ok(DeliveryStatus::Delivered) => r.created_at < cutoffs.delivered_before,
                Ok(DeliveryStatus::Dead) => r.created_at < cutoffs.dead_before,
                // Unfinished rows, and any state this build does not know, are kept.
                _ => false,
            })
            .map(|r| r.id)
            .collect();
        Ok((expired, next))
    }

    /// Deletes the deliveries among `ids` that are still finished, then the attempts and batch
    /// events of exactly those. The rows were read outside this transaction: one that a manual
    /// retry turned back to pending meanwhile stays, with its attempt log. The deliveries go
    /// first so that the row a concurrent retry holds is judged under its lock, not before it.
    pub(super) async fn delete_finished(&self, ids: &[String]) -> Result<u64, StoreError> {
        let ids = serde_json::Value::from(ids).to_string();
        let source = self.json_text_array(1);
        let mut tx = self.begin_write(&self.writer).await?;
        let gone: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "DELETE FROM deliveries WHERE id IN (SELECT value FROM {source}) AND status IN {} \
             RETURNING seq, id",
            DeliveryStatus::sql_in(&[DeliveryStatus::Delivered, DeliveryStatus::Dead])
        )))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let count = gone.len() as u64;
        if count > 0 {
            let (seqs, ids): (Vec<i64>, Vec<String>) = gone.into_iter().unzip();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM delivery_attempts WHERE delivery_seq IN \
                 (SELECT CAST(value AS BIGINT) FROM {source})"
            )))
            .bind(serde_json::Value::from(seqs).to_string())
            .execute(&mut *tx)
            .await?;
            // A sealed batch's body is whole; its events were kept only to recognise a replay.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM batch_events WHERE delivery_id IN (SELECT value FROM {source})"
            )))
            .bind(serde_json::Value::from(ids).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(count)
    }

    /// Deletes up to `PRUNE_CHUNK` parked events created before `before`, oldest first.
    pub async fn prune_parked_chunk(&self, before: i64) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM parked_events WHERE seq IN \
             (SELECT seq FROM parked_events WHERE created_at < $1 ORDER BY seq LIMIT $2)",
        )
        .bind(before)
        .bind(PRUNE_CHUNK)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    /// One full pass: every expired row, chunk by chunk.
    pub async fn prune(&self, cutoffs: &Cutoffs) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let mut after = Some(0);
        while let Some(start) = after {
            let (deleted, next) = self.prune_deliveries_chunk(cutoffs, start).await?;
            pruned.deliveries += deleted;
            after = next;
        }
        loop {
            let deleted = self.prune_parked_chunk(cutoffs.parked_before).await?;
            pruned.parked_events += deleted;
            if deleted < PRUNE_CHUNK as u64 {
                break;
            }
        }
        Ok(pruned)
    }

    /// A row source of the strings in the JSON array parameter `$param`, one column `value`.
    fn json_text_array(&self, param: u32) -> String {
        match self.dialect {
            super::Dialect::Sqlite => format!("json_each(${param})"),
            super::Dialect::Postgres => {
                format!("jsonb_array_elements_text(${param}::text::jsonb) AS j(value)")
            }
        }
    }
}
