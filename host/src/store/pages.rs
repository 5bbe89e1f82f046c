//! Pages of resources for the web console: keyset pagination by id (the caller caps the limit),
//! filters that bind as NULL when absent, and the bounded aggregates the console shows. The admin
//! API's own lists use `resources.rs`; these never read more than one page.

use sqlx::AssertSqlSafe;

use super::{
    AttemptRow, EndpointRow, EndpointStatus, PluginRow, Store, StoreError, SubscriptionRow,
    SubscriptionStatus,
};

/// One page of subscriptions: the filters that are set, ids after `after_id`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub status: Option<SubscriptionStatus>,
    pub endpoint_id: Option<String>,
    pub plugin_id: Option<String>,
    pub after_id: Option<String>,
    pub limit: i64,
}

/// One attempt of a delivery to an endpoint, newest first.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointAttempt {
    pub delivery_id: String,
    #[sqlx(flatten)]
    pub attempt: AttemptRow,
}

impl Store {
    pub async fn subscriptions_page(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<SubscriptionRow>, StoreError> {
        // `CAST(… AS TEXT)`: PostgreSQL cannot infer a parameter's type from `$n IS NULL` alone.
        let sql = format!(
            "SELECT {} FROM subscriptions WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) \
             AND (CAST($2 AS TEXT) IS NULL OR endpoint_id = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR plugin_id = $3) AND id > $4 ORDER BY id LIMIT $5",
            super::resources::SUBSCRIPTION_COLUMNS
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(filter.status.map(SubscriptionStatus::as_str))
            .bind(&filter.endpoint_id)
            .bind(&filter.plugin_id)
            .bind(filter.after_id.clone().unwrap_or_default())
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn endpoints_page(
        &self,
        status: Option<EndpointStatus>,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EndpointRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM endpoints WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) AND id > $2 \
             ORDER BY id LIMIT $3",
            super::resources::ENDPOINT_COLUMNS
        );
        let rows: Vec<EndpointRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(status.map(EndpointStatus::as_str))
            .bind(after_id.unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| self.opened(r)).collect()
    }

    pub async fn plugins_page(
        &self,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PluginRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, size, created_at FROM plugins WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The attempts of the endpoint's last `deliveries` deliveries, newest first (at most
    /// `limit`): what its success rate, latency and recent failures are judged on.
    pub async fn endpoint_recent_attempts(
        &self,
        endpoint_id: &str,
        deliveries: i64,
        limit: i64,
    ) -> Result<Vec<EndpointAttempt>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.id AS delivery_id, a.attempt, a.status_code, a.latency_ms, a.error, a.response_body, a.created_at \
             FROM delivery_attempts a JOIN (SELECT seq, id FROM deliveries WHERE endpoint_id = $1 \
             ORDER BY seq DESC LIMIT $2) d ON a.delivery_seq = d.seq \
             ORDER BY a.created_at DESC, a.attempt DESC LIMIT $3",
        )
        .bind(endpoint_id)
        .bind(deliveries)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many subscriptions are in each status (the overview's counts).
    pub async fn subscription_status_counts(
        &self,
    ) -> Result<Vec<(SubscriptionStatus, i64)>, StoreError> {
        let rows: Vec<(SubscriptionStatus, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM subscriptions GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
