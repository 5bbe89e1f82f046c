//! API tokens (`api_tokens`) and the bootstrap token's hash (`settings`). A token is stored only as
//! the hex sha256 of its text; lookups go by that hash.

use super::{Store, StoreError};

/// A token as listed: never its text or hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What authentication needs of a live (not revoked) token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveToken {
    pub id: String,
    pub scope: String,
    pub last_used_at: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, name, scope, created_at, last_used_at, revoked_at";

impl Store {
    pub async fn insert_token(&self, row: &TokenRow, sha256_hex: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, scope, token_sha256, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.scope)
        .bind(sha256_hex)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every token, revoked ones included (they show when they were revoked), oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Marks the token revoked (a second revoke keeps the first time). `false` if no such token.
    pub async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The live token with this hash, if any.
    pub async fn live_token(&self, sha256_hex: &str) -> Result<Option<LiveToken>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, scope, last_used_at FROM api_tokens \
             WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(sha256_hex)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Sets `last_used_at`, unless it is already newer than `stale_before` (so a busy client
    /// costs one write per interval, not one per request).
    pub async fn touch_token(
        &self,
        id: &str,
        now_ms: i64,
        stale_before: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(id)
        .bind(now_ms)
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores `value` under `key` unless a value is there already, and returns the stored value:
    /// of several processes racing, the first writer wins and all read back the same value.
    pub async fn setting_first_writer_wins(
        &self,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.get_setting(key)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("setting {key} vanished after insert")))
    }
}
