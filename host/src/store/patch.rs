//! Changes to endpoints and subscriptions that write only the columns they change.
//!
//! Several writers change these rows: admin PATCHes, secret rotation, the 410 auto-disable and
//! the matcher's quarantine. A writer that read the whole row and wrote it all back would undo
//! whatever another writer committed in between — a 410 during a rotation wrote the old secret
//! back, after which every signature failed. Each statement here names its own columns only and
//! computes what depends on the current row (the previous secret) inside the UPDATE.

use sqlx::AssertSqlSafe;

use super::{
    DeliveryStatus, EndpointStatus, HELD_UNTIL_RELEASED, Store, StoreError, SubscriptionPatch,
    SubscriptionStatus,
};

impl Store {
    /// Writes the columns `patch` sets; the others keep what the store holds now. False when the
    /// subscription does not exist.
    pub async fn patch_subscription(
        &self,
        id: &str,
        patch: &SubscriptionPatch,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE subscriptions SET \
                   addresses = CASE WHEN $2 THEN $3 ELSE addresses END, \
                   topics = CASE WHEN $4 THEN $5 ELSE topics END, \
                   plugin_id = CASE WHEN $6 THEN $7 ELSE plugin_id END, \
                   plugin_config = CASE WHEN $6 THEN $8 ELSE plugin_config END, \
                   confirmations = CASE WHEN $9 THEN $10 ELSE confirmations END, \
                   status = CASE WHEN $11 THEN $12 ELSE status END, \
                   last_error = CASE WHEN $13 THEN $14 ELSE last_error END, \
                   updated_at = $15, \
                   batch = CASE WHEN $16 THEN $17 ELSE batch END, \
                   ordering = CASE WHEN $16 THEN $18 ELSE ordering END, \
                   ordering_key = CASE WHEN $16 THEN $19 ELSE ordering_key END, \
                   on_dead = CASE WHEN $16 THEN $20 ELSE on_dead END WHERE id = $1";
        let mode = patch.mode.clone().unwrap_or_default();
        let (plugin_id, plugin_config) = match &patch.plugin {
            Some((id, config)) => (id.clone(), config.clone()),
            None => (None, None),
        };
        let result = sqlx::query(sql)
            .bind(id)
            .bind(patch.addresses.is_some())
            .bind(patch.addresses.clone().flatten())
            .bind(patch.topics.is_some())
            .bind(patch.topics.clone().flatten())
            .bind(patch.plugin.is_some())
            .bind(plugin_id)
            .bind(plugin_config)
            .bind(patch.confirmations.is_some())
            .bind(patch.confirmations.unwrap_or(0))
            .bind(patch.status.is_some())
            .bind(patch.status.map(SubscriptionStatus::as_str))
            .bind(patch.last_error.is_some())
            .bind(patch.last_error.clone().flatten())
            .bind(patch.updated_at)
            .bind(patch.mode.is_some())
            .bind(mode.batch)
            .bind(mode.ordering)
            .bind(mode.ordering_key)
            .bind(mode.on_dead)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes a subscription and, in the same transaction, cancels its held deliveries: they
    /// were never sent, and no subscription is left to say when they would be. Deliveries already
    /// due stay and are sent. Its canary goes too. False when it did not exist.
    pub async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        let result = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let held = format!(
            "DELETE FROM deliveries WHERE subscription_id = $1 AND status = {} AND next_attempt_at = $2",
            DeliveryStatus::Pending.sql()
        );
        sqlx::query(AssertSqlSafe(held))
            .bind(id)
            .bind(HELD_UNTIL_RELEASED)
            .execute(&mut *tx)
            .await?;
        super::canary::delete_canary_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(result.rows_affected() > 0)
    }

    /// An admin PATCH of an endpoint: `url`, `description` and the status with its reason, each
    /// only when given. False when the endpoint does not exist.
    pub async fn patch_endpoint(
        &self,
        id: &str,
        url: Option<&str>,
        description: Option<&str>,
        status: Option<(EndpointStatus, Option<&str>)>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE endpoints SET url = COALESCE($2, url), description = COALESCE($3, description), \
                   status = CASE WHEN $4 THEN $5 ELSE status END, \
                   disabled_reason = CASE WHEN $4 THEN $6 ELSE disabled_reason END, \
                   updated_at = $7 WHERE id = $1";
        let result = sqlx::query(sql)
            .bind(id)
            .bind(url)
            .bind(description)
            .bind(status.is_some())
            .bind(status.map(|(status, _)| status.as_str()))
            .bind(status.and_then(|(_, reason)| reason))
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Makes `secret` the endpoint's secret. The one it replaces — whatever the store holds at
    /// that moment — keeps signing until `previous_expires_at`, unless a previous secret is still
    /// signing from an earlier rotation: then that one stays, with its own expiry (it is what
    /// receivers had before the rotations began; the secret replaced now was current for less
    /// than a grace period). False when the endpoint does not exist.
    pub async fn rotate_endpoint_secret(
        &self,
        id: &str,
        secret: &str,
        previous_expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE endpoints SET \
             previous_secret = CASE WHEN previous_secret_expires_at > $4 THEN previous_secret ELSE secret END, \
             previous_secret_expires_at = CASE WHEN previous_secret_expires_at > $4 \
                 THEN previous_secret_expires_at ELSE $3 END, \
             secret = $2, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(self.secrets.seal(id, secret)?)
        .bind(previous_expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Disables an enabled endpoint with `reason` (a 410 Gone); true when this call disabled it.
    pub async fn disable_endpoint(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE endpoints SET status = {}, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND status = {}",
            EndpointStatus::Disabled.sql(),
            EndpointStatus::Enabled.sql()
        );
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(reason)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
