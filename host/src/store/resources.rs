//! Plugins, endpoints and subscriptions: the resources the admin API manages.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{EndpointRow, ModeColumns, PluginRow, Store, StoreError, SubscriptionRow};

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
        let rows =
            sqlx::query("SELECT id, name, size, created_at FROM plugins ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(plugin_row).collect()
    }

    pub async fn get_plugin(&self, id: &str) -> Result<Option<PluginRow>, StoreError> {
        let row = sqlx::query("SELECT id, name, size, created_at FROM plugins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(plugin_row).transpose()
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
            secret: self.secrets.seal(&e.id, &e.secret),
            previous_secret: e
                .previous_secret
                .as_ref()
                .map(|p| self.secrets.seal(&e.id, p)),
            ..e.clone()
        };
        bind_endpoint(sqlx::query(AssertSqlSafe(sql)), &sealed)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_endpoints(&self) -> Result<Vec<EndpointRow>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY created_at, id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| self.endpoint_row(r)).collect()
    }

    pub async fn get_endpoint(&self, id: &str) -> Result<Option<EndpointRow>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| self.endpoint_row(r)).transpose()
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
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subscription_row).collect()
    }

    pub async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subscription_row).transpose()
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

pub(super) fn plugin_row(r: &AnyRow) -> Result<PluginRow, StoreError> {
    Ok(PluginRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        size: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

impl Store {
    /// An endpoint row with its secrets opened (`secrets.rs`).
    pub(super) fn endpoint_row(&self, r: &AnyRow) -> Result<EndpointRow, StoreError> {
        let id: String = r.try_get(0)?;
        let secret: String = r.try_get(3)?;
        let previous: Option<String> = r.try_get(4)?;
        Ok(EndpointRow {
            secret: self.secrets.open(&id, &secret)?,
            previous_secret: previous.map(|p| self.secrets.open(&id, &p)).transpose()?,
            url: r.try_get(1)?,
            description: r.try_get(2)?,
            previous_secret_expires_at: r.try_get(5)?,
            status: r.try_get::<String, _>(6)?.parse()?,
            disabled_reason: r.try_get(7)?,
            created_at: r.try_get(8)?,
            updated_at: r.try_get(9)?,
            id,
        })
    }
}

pub(super) fn subscription_row(r: &AnyRow) -> Result<SubscriptionRow, StoreError> {
    Ok(SubscriptionRow {
        id: r.try_get(0)?,
        endpoint_id: r.try_get(1)?,
        chain_id: r.try_get(2)?,
        addresses: r.try_get(3)?,
        topics: r.try_get(4)?,
        plugin_id: r.try_get(5)?,
        plugin_config: r.try_get(6)?,
        confirmations: r.try_get(7)?,
        status: r.try_get::<String, _>(8)?.parse()?,
        last_error: r.try_get(9)?,
        created_at: r.try_get(10)?,
        updated_at: r.try_get(11)?,
        mode: ModeColumns {
            batch: r.try_get(12)?,
            ordering: r.try_get(13)?,
            ordering_key: r.try_get(14)?,
            on_dead: r.try_get(15)?,
        },
    })
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
