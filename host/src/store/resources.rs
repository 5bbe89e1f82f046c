//! Plugins, endpoints and subscriptions: the resources the admin API manages.

use sqlx::AssertSqlSafe;

use super::{EndpointRow, PluginRow, Store, StoreError, SubscriptionRow};

pub(super) const ENDPOINT_COLUMNS: &str = "id, url, description, secret, previous_secret, previous_secret_expires_at, \
                                status, disabled_reason, created_at, updated_at";
pub(super) const SUBSCRIPTION_COLUMNS: &str = "id, endpoint_id, chain_id, addresses, topics, plugin_id, plugin_config, \
                                    confirmations, status, last_error, created_at, updated_at, \
                                    batch, ordering, ordering_key, on_dead";

impl Store {
    /// Stores a plugin; returns false when the same bytes (same id) were already stored.
    pub async fn insert_plugin(&self, row: &PluginRow, wasm: &[u8]) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO plugins (id, name, size, wasm, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(row.size)
        .bind(wasm)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn list_plugins(&self) -> Result<Vec<PluginRow>, StoreError> {
        Ok(
            sqlx::query_as(
                "SELECT id, name, size, created_at FROM plugins ORDER BY created_at, id",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    pub async fn get_plugin(&self, id: &str) -> Result<Option<PluginRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, name, size, created_at FROM plugins WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn get_plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT wasm FROM plugins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// Deletes a plugin unless a subscription uses it. Returns false when it did not exist.
    pub async fn delete_plugin(&self, id: &str) -> Result<bool, StoreError> {
        let users: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM subscriptions WHERE plugin_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        if users.0 > 0 {
            return Err(StoreError::Conflict(format!(
                "plugin is used by {} subscription(s)",
                users.0
            )));
        }
        sqlx::query("DELETE FROM plugin_artifacts WHERE plugin_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        let result = sqlx::query("DELETE FROM plugins WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn insert_endpoint(&self, e: &EndpointRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let sealed = EndpointRow {
            secret: self.secrets.seal(&e.id, &e.secret)?,
            previous_secret: e
                .previous_secret
                .as_ref()
                .map(|p| self.secrets.seal(&e.id, p))
                .transpose()?,
            ..e.clone()
        };
        bind_endpoint(sqlx::query(AssertSqlSafe(sql)), &sealed)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_endpoints(&self) -> Result<Vec<EndpointRow>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY created_at, id");
        let rows: Vec<EndpointRow> = sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| self.opened(r)).collect()
    }

    pub async fn get_endpoint(&self, id: &str) -> Result<Option<EndpointRow>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1");
        let row: Option<EndpointRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.opened(r)).transpose()
    }

    /// Deletes an endpoint unless subscriptions still point at it.
    pub async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let users: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM subscriptions WHERE endpoint_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        if users.0 > 0 {
            return Err(StoreError::Conflict(format!(
                "endpoint is used by {} subscription(s); delete them first",
                users.0
            )));
        }
        let result = sqlx::query("DELETE FROM endpoints WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        bind_subscription(sqlx::query(AssertSqlSafe(sql)), s)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRow>, StoreError> {
        let sql =
            format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, id");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind_endpoint<'q>(q: AnyQuery<'q>, e: &'q EndpointRow) -> AnyQuery<'q> {
    q.bind(&e.id)
        .bind(&e.url)
        .bind(&e.description)
        .bind(&e.secret)
        .bind(&e.previous_secret)
        .bind(e.previous_secret_expires_at)
        .bind(e.status.as_str())
        .bind(&e.disabled_reason)
        .bind(e.created_at)
        .bind(e.updated_at)
}

fn bind_subscription<'q>(q: AnyQuery<'q>, s: &'q SubscriptionRow) -> AnyQuery<'q> {
    q.bind(&s.id)
        .bind(&s.endpoint_id)
        .bind(s.chain_id)
        .bind(&s.addresses)
        .bind(&s.topics)
        .bind(&s.plugin_id)
        .bind(&s.plugin_config)
        .bind(s.confirmations)
        .bind(s.status.as_str())
        .bind(&s.last_error)
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(&s.mode.batch)
        .bind(&s.mode.ordering)
        .bind(&s.mode.ordering_key)
        .bind(&s.mode.on_dead)
}

impl Store {
    /// An endpoint row as read, with its secrets opened (`secrets.rs`).
    pub(super) fn opened(&self, row: EndpointRow) -> Result<EndpointRow, StoreError> {
        Ok(EndpointRow {
            secret: self.secrets.open(&row.id, &row.secret)?,
            previous_secret: row
                .previous_secret
                .as_deref()
                .map(|p| self.secrets.open(&row.id, p))
                .transpose()?,
            ..row
        })
    }
}

impl Store {
    /// Precompiled code of a plugin for one engine configuration, if the host stored it.
    pub async fn get_plugin_artifact(
        &self,
        plugin_id: &str,
        engine: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT artifact FROM plugin_artifacts WHERE plugin_id = $1 AND engine = $2",
        )
        .bind(plugin_id)
        .bind(engine)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn put_plugin_artifact(
        &self,
        plugin_id: &str,
        engine: &str,
        artifact: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO plugin_artifacts (plugin_id, engine, artifact, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (plugin_id, engine) DO UPDATE SET artifact = excluded.artifact, created_at = excluded.created_at",
        )
        .bind(plugin_id)
        .bind(engine)
        .bind(artifact)
        .bind(super::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
