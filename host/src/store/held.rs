//! Held deliveries (a subscription wanting more confirmations than its chain is ingested with)
//! kept in line with the subscriptions and the chain's confirmations as they are *now*, so none is
//! stranded: a held row's `release_block` was computed when its event was matched, from the
//! subscription's and the chain's confirmations of that moment.
//!
//! Held rows are exactly `status = pending AND next_attempt_at = HELD_UNTIL_RELEASED`, one range
//! of the `(status, next_attempt_at)` index, so a pass reads only rows still held.

use sqlx::AssertSqlSafe;

use super::{DeliveryStatus, Dialect, HELD_UNTIL_RELEASED, Store, StoreError, now_ms};

/// What one reconciliation of a chain's held deliveries changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldChanges {
    /// Deleted: their subscription no longer exists (never sent, and never will be).
    pub cancelled: u64,
    /// Given a new `release_block` (the subscription's or the chain's confirmations changed).
    pub rescheduled: u64,
    /// Made due now: the chain's cursor is already at or past their (new) release block.
    pub released: u64,
}

/// The blocks a subscription's delivery waits beyond the chain's own confirmations (`$2`):
/// `max(subscription − chain, 0)`, as `matcher::new_delivery` computes it.
const EXTRA: &str = "(CASE WHEN s.confirmations > $2 THEN s.confirmations - $2 ELSE 0 END)";

impl Store {
    /// Brings chain `chain_id`'s held deliveries in line with the subscriptions as stored and with
    /// the chain's confirmations `chain_confirmations`, in one transaction: rows of a deleted
    /// subscription are cancelled (deleted); every other row's release block is recomputed
    /// (earlier when confirmations were lowered, later when raised); rows whose release block the
    /// chain's cursor has already reached are released. Idempotent: a second pass changes nothing.
    pub async fn reconcile_held(
        &self,
        chain_id: u64,
        chain_confirmations: u64,
    ) -> Result<HeldChanges, StoreError> {
        let chain = i64::try_from(chain_id).unwrap_or(i64::MAX);
        let confirmations = i64::try_from(chain_confirmations).unwrap_or(i64::MAX);
        let now = now_ms();
        let mut tx = self.begin_write(&self.writer).await?;
        let cancelled = cancel_orphans(&mut tx, chain).await?;
        // The bodies first: which rows are re-timed is decided by their old release block.
        let rewrite = format!(
            "UPDATE delivery_bodies SET body = {body} \
             FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE delivery_bodies.seq = d.seq AND d.chain_id = $1 \
             AND d.status = {pending} AND d.next_attempt_at = $3 AND d.release_block IS NOT NULL \
             AND d.release_block <> d.block_number + {EXTRA}",
            body = self.body_with_confirmations("delivery_bodies.body", &format!("($2 + {EXTRA})")),
            pending = DeliveryStatus::Pending.sql(),
        );
        sqlx::query(sqlx::AssertSqlSafe(rewrite))
            .bind(chain)
            .bind(confirmations)
            .bind(HELD_UNTIL_RELEASED)
            .execute(&mut *tx)
            .await?;
        let reschedule = format!(
            "UPDATE deliveries SET release_block = deliveries.block_number + {EXTRA}, updated_at = $4 \
             FROM subscriptions s WHERE s.id = deliveries.subscription_id AND deliveries.chain_id = $1 \
             AND deliveries.status = {pending} AND deliveries.next_attempt_at = $3 \
             AND deliveries.release_block IS NOT NULL \
             AND deliveries.release_block <> deliveries.block_number + {EXTRA}",
            pending = DeliveryStatus::Pending.sql(),
        );
        let rescheduled = sqlx::query(sqlx::AssertSqlSafe(reschedule))
            .bind(chain)
            .bind(confirmations)
            .bind(HELD_UNTIL_RELEASED)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let released = release_reached(&mut tx, chain, now).await?;
        tx.commit().await?;
        Ok(HeldChanges {
            cancelled,
            rescheduled,
            released,
        })
    }

    /// SQL for the body in column `column` with its `confirmations` field set to `count` (an SQL
    /// expression), so a re-timed webhook says what it waited for. The body is
    /// `{"id":…,"type":…,"subscription_id":…,"chain_id":N,"confirmations":N,"log":…}`
    /// (`matcher::webhook_body`): the first `,"confirmations":` and the first `,"log":` are that
    /// field's bounds, since nothing before them can contain either. A body not of that shape is
    /// kept as it is.
    fn body_with_confirmations(&self, column: &str, count: &str) -> String {
        const FIELD: &str = ",\"confirmations\":";
        const NEXT: &str = ",\"log\":";
        const EVENTS: &str = ",\"events\":[";
        let find = match self.dialect {
            Dialect::Sqlite => "instr",
            Dialect::Postgres => "strpos",
        };
        let at = format!("{find}({column}, '{FIELD}')");
        // A batch body (`modes::batching::body_prefix`) has `,"events":[` where a single
        // event's has `,"log":` (which its events then contain): the first of the two ends it.
        let log = format!("{find}({column}, '{NEXT}')");
        let events = format!("{find}({column}, '{EVENTS}')");
        let next = format!(
            "(CASE WHEN {events} > 0 AND ({log} = 0 OR {events} < {log}) THEN {events} ELSE {log} END)"
        );
        format!(
            "(CASE WHEN {at} > 0 AND {next} > {at} \
             THEN substr({column}, 1, {at} + {len} - 1) || CAST({count} AS TEXT) || substr({column}, {next}) \
             ELSE {column} END)",
            len = FIELD.len()
        )
    }
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Deletes the chain's held rows whose subscription no longer exists; returns how many.
async fn cancel_orphans(tx: &mut Tx<'_>, chain: i64) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM deliveries WHERE chain_id = $1 AND status = {} AND next_attempt_at = $2 \
         AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = deliveries.subscription_id)",
        DeliveryStatus::Pending.sql()
    );
    let result = sqlx::query(AssertSqlSafe(sql))
        .bind(chain)
        .bind(HELD_UNTIL_RELEASED)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected())
}

/// Makes due the chain's held rows whose release block its cursor has reached.
async fn release_reached(tx: &mut Tx<'_>, chain: i64, now: i64) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET next_attempt_at = $3, updated_at = $3 \
         WHERE chain_id = $1 AND status = {} AND next_attempt_at = $2 \
         AND release_block IS NOT NULL \
         AND release_block <= (SELECT c.block_number FROM chain_cursors c WHERE c.chain_id = $1)",
        DeliveryStatus::Pending.sql()
    );
    let result = sqlx::query(AssertSqlSafe(sql))
        .bind(chain)
        .bind(HELD_UNTIL_RELEASED)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected())
}
