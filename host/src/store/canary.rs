//! Plugin canaries (issue 12): the candidate of a subscription, its running tally and its first
//! differing events. Written by the canary writer task off the hot path, read by any replica.

use serde::Serialize;

use super::{Store, StoreError, SubscriptionStatus, now_ms};

/// Differing events kept per canary.
pub const MAX_CANARY_EXAMPLES: i64 = 100;

/// A canary as stored: its candidate and the totals so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CanaryRow {
    pub id: String,
    pub subscription_id: String,
    pub plugin_id: String,
    pub plugin_config: Option<String>,
    #[sqlx(flatten)]
    pub tally: CanaryTally,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What one write adds to a canary's totals (and, in a [`CanaryRow`], the totals themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CanaryTally {
    pub events_compared: i64,
    pub same: i64,
    pub only_live_kept: i64,
    pub only_canary_kept: i64,
    pub data_differs: i64,
    pub batches_compared: i64,
    pub batches_skipped: i64,
    pub events_skipped: i64,
    pub traps: i64,
    pub out_of_fuel: i64,
    pub bad_output: i64,
    pub other_failures: i64,
    /// The newest failure's message, if this write saw one.
    pub last_failure: Option<String>,
}

/// One differing event: the log's identity and both outputs (`{"kept", "data"}` JSON).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CanaryExample {
    pub block_number: i64,
    pub block_hash: String,
    pub tx_hash: String,
    pub log_index: i64,
    pub event_type: String,
    pub live: String,
    pub canary: String,
}

const CANARY_COLUMNS: &str = "id, subscription_id, plugin_id, plugin_config, events_compared, same, \
    only_live_kept, only_canary_kept, data_differs, batches_compared, batches_skipped, \
    events_skipped, traps, out_of_fuel, bad_output, other_failures, last_failure, created_at, updated_at";

impl Store {
    /// Starts a canary. False (nothing written) when the subscription already has one.
    pub async fn insert_canary(&self, row: &CanaryRow) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO canaries (id, subscription_id, plugin_id, plugin_config, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (subscription_id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.subscription_id)
        .bind(&row.plugin_id)
        .bind(&row.plugin_config)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn get_canary(&self, subscription_id: &str) -> Result<Option<CanaryRow>, StoreError> {
        let sql = format!("SELECT {CANARY_COLUMNS} FROM canaries WHERE subscription_id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subscription_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every canary (the registry binds each to its subscription).
    pub async fn list_canaries(&self) -> Result<Vec<CanaryRow>, StoreError> {
        let sql = format!("SELECT {CANARY_COLUMNS} FROM canaries ORDER BY subscription_id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// The first differing events of a canary, in chain order.
    pub async fn list_canary_examples(
        &self,
        canary_id: &str,
    ) -> Result<Vec<CanaryExample>, StoreError> {
        let rows: Vec<CanaryExample> = sqlx::query_as(
            "SELECT block_number, block_hash, tx_hash, log_index, event_type, live, canary \
             FROM canary_examples WHERE canary_id = $1 ORDER BY block_number, log_index, event_type LIMIT $2",
        )
        .bind(canary_id)
        .bind(MAX_CANARY_EXAMPLES)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Adds one write's tally and examples to canary `canary_id`, in one transaction. Nothing is
    /// written when the canary is gone (discarded or promoted meanwhile); examples beyond
    /// [`MAX_CANARY_EXAMPLES`] and replayed ones are not added. False when the canary is gone.
    pub async fn record_canary(
        &self,
        canary_id: &str,
        tally: &CanaryTally,
        examples: &[CanaryExample],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        let updated = sqlx::query(
            "UPDATE canaries SET events_compared = events_compared + $2, same = same + $3, \
             only_live_kept = only_live_kept + $4, only_canary_kept = only_canary_kept + $5, \
             data_differs = data_differs + $6, batches_compared = batches_compared + $7, \
             batches_skipped = batches_skipped + $8, events_skipped = events_skipped + $9, \
             traps = traps + $10, out_of_fuel = out_of_fuel + $11, bad_output = bad_output + $12, \
             other_failures = other_failures + $13, last_failure = COALESCE($14, last_failure), \
             updated_at = $15 WHERE id = $1",
        )
        .bind(canary_id)
        .bind(tally.events_compared)
        .bind(tally.same)
        .bind(tally.only_live_kept)
        .bind(tally.only_canary_kept)
        .bind(tally.data_differs)
        .bind(tally.batches_compared)
        .bind(tally.batches_skipped)
        .bind(tally.events_skipped)
        .bind(tally.traps)
        .bind(tally.out_of_fuel)
        .bind(tally.bad_output)
        .bind(tally.other_failures)
        .bind(&tally.last_failure)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        for e in examples {
            // The count guard keeps the first 100; the WHERE also makes SQLite's parser read
            // ON CONFLICT as the INSERT's clause.
            sqlx::query(
                "INSERT INTO canary_examples (canary_id, block_number, block_hash, tx_hash, log_index, event_type, live, canary) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE (SELECT COUNT(*) FROM canary_examples WHERE canary_id = $1) < $9 \
                 ON CONFLICT (canary_id, block_hash, log_index, event_type) DO NOTHING",
            )
            .bind(canary_id)
            .bind(e.block_number)
            .bind(&e.block_hash)
            .bind(&e.tx_hash)
            .bind(e.log_index)
            .bind(&e.event_type)
            .bind(&e.live)
            .bind(&e.canary)
            .bind(MAX_CANARY_EXAMPLES)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Discards a subscription's canary with its examples. False when it had none.
    pub async fn delete_canary(&self, subscription_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        let deleted = delete_canary_in(&mut tx, subscription_id).await?;
        tx.commit().await?;
        Ok(deleted.is_some())
    }

    /// Promotes a subscription's canary in one transaction: the subscription takes the
    /// candidate's plugin and config (a new plugin clears a quarantine, as a PATCH does) and the
    /// canary is removed. The canary as it was, or `None` when there was none.
    pub async fn promote_canary(
        &self,
        subscription_id: &str,
    ) -> Result<Option<CanaryRow>, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        let sql = format!("SELECT {CANARY_COLUMNS} FROM canaries WHERE subscription_id = $1");
        let row: Option<CanaryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subscription_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(canary) = row else {
            return Ok(None);
        };
        let sql = format!(
            "UPDATE subscriptions SET plugin_id = $2, plugin_config = $3, status = CASE WHEN status = {} \
             THEN {} ELSE status END, last_error = NULL, updated_at = $4 WHERE id = $1",
            SubscriptionStatus::Quarantined.sql(),
            SubscriptionStatus::Active.sql()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(subscription_id)
            .bind(&canary.plugin_id)
            .bind(&canary.plugin_config)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        delete_canary_in(&mut tx, subscription_id).await?;
        tx.commit().await?;
        Ok(Some(canary))
    }
}

/// Deletes the subscription's canary and its examples inside `tx`; the deleted canary's id.
pub(super) async fn delete_canary_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    subscription_id: &str,
) -> Result<Option<String>, StoreError> {
    let id: Option<(String,)> =
        sqlx::query_as("SELECT id FROM canaries WHERE subscription_id = $1")
            .bind(subscription_id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((id,)) = id else { return Ok(None) };
    sqlx::query("DELETE FROM canary_examples WHERE canary_id = $1")
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM canaries WHERE id = $1")
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(id))
}
