//! Ordered delivery as the operator sees it: the keys whose first undelivered delivery is
//! failing (retrying, or dead while its subscription halts on dead), which hold back the rest of
//! their key. The claim rule itself is `deliveries::EARLIER_IN_KEY`.

use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::deliveries::{EARLIER_IN_KEY, dead_and_halting};
use super::{DeliveryStatus, Dialect, Store, StoreError};

/// Keys listed per subscription, and counted for the metric, at most.
pub const MAX_BLOCKED_KEYS: i64 = 1000;

/// An ordering key held back by its first undelivered delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BlockedKey {
    #[sqlx(rename = "ordering_key")]
    pub key: String,
    pub subscription_id: String,
    pub delivery_id: String,
    /// `Retrying` or `Dead`.
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When its first attempt was made (Unix ms).
    pub since: Option<i64>,
}

impl Store {
    /// The blocked keys of one subscription, or of all (`None`), at most [`MAX_BLOCKED_KEYS`].
    pub async fn blocked_keys(
        &self,
        subscription_id: Option<&str>,
    ) -> Result<Vec<BlockedKey>, StoreError> {
        let filter = match self.dialect {
            Dialect::Postgres => "($1::text IS NULL OR d.subscription_id = $1)",
            Dialect::Sqlite => "($1 IS NULL OR d.subscription_id = $1)",
        };
        let sql = format!(
            "SELECT d.ordering_key, d.subscription_id, d.id AS delivery_id, d.status, d.attempts, d.last_error, \
             (SELECT MIN(a.created_at) FROM delivery_attempts a WHERE a.delivery_seq = d.seq) AS since \
             FROM deliveries d WHERE d.ordering_key IS NOT NULL AND {filter} \
             AND (d.status = {retrying} OR {dead}) \
             AND NOT EXISTS ({earlier}) ORDER BY d.seq LIMIT $2",
            retrying = DeliveryStatus::Retrying.sql(),
            dead = dead_and_halting("d"),
            earlier = *EARLIER_IN_KEY,
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(subscription_id)
            .bind(MAX_BLOCKED_KEYS)
            .fetch_all(&self.pool)
            .await?)
    }
}
