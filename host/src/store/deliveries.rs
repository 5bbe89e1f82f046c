//! Delivery state: leasing due rows, writing attempt outcomes in batches, listing for the API.

use std::sync::LazyLock;

use sqlx::AssertSqlSafe;

use super::rows::{self, Col, Rows};
use super::{
    AttemptResult, AttemptRow, DeliveryFilter, DeliveryRow, DeliveryStatus, Dialect, DueDelivery,
    Store, StoreError, now_ms,
};
use crate::modes::OnDead;

const DELIVERY_COLUMNS: &str = "seq, id, subscription_id, endpoint_id, chain_id, event_type, block_number, status, \
                                attempts, next_attempt_at, last_status_code, last_error, created_at, updated_at";

/// `status IN ('pending', 'retrying')`: what the claim and the backlog count as not finished
/// (held and leased rows are told apart by `next_attempt_at` and `lease_until`).
pub(super) static UNFINISHED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "status IN {}",
        DeliveryStatus::sql_in(&[DeliveryStatus::Pending, DeliveryStatus::Retrying])
    )
});

/// `e` is dead while its subscription halts on dead (`on_dead`, read as it is now, so changing
/// it to `skip` releases a halted key).
pub(super) fn dead_and_halting(e: &str) -> String {
    format!(
        "({e}.status = {} AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = {e}.subscription_id \
         AND s.on_dead = '{}'))",
        DeliveryStatus::Dead.sql(),
        OnDead::Halt.as_str()
    )
}

/// The claim rule of ordered deliveries: an earlier delivery (by `seq`) of the same ordering key
/// `d.ordering_key` that still holds the key — undelivered (pending, in flight, retrying, filling),
/// or dead while its subscription halts on dead. A row with such a predecessor is not claimed.
pub(super) static EARLIER_IN_KEY: LazyLock<String> = LazyLock::new(|| {
    let holding = DeliveryStatus::sql_in(&[
        DeliveryStatus::Pending,
        DeliveryStatus::Retrying,
        DeliveryStatus::Filling,
    ]);
    format!(
        "SELECT 1 FROM deliveries e WHERE e.ordering_key = d.ordering_key \
         AND e.seq < d.seq AND (e.status IN {holding} OR {})",
        dead_and_halting("e")
    )
});

/// The columns of an attempt outcome, as [`bind_results`] binds them.
pub(super) const RESULT_COLUMNS: [(&str, Col); 12] = [
    ("id", Col::Text),
    ("seq", Col::BigInt),
    ("status", Col::Text),
    ("attempts", Col::BigInt),
    ("next_attempt_at", Col::BigInt),
    ("status_code", Col::BigInt),
    ("latency_ms", Col::BigInt),
    ("error", Col::Text),
    ("response_body", Col::Text),
    ("at", Col::BigInt),
    ("attempted", Col::Bool),
    ("lease", Col::BigInt),
];

/// The outcome write's settings on PostgreSQL, for its transaction only (sent with its `BEGIN`).
///
/// Outcomes do not wait for their own WAL flush (PostgreSQL flushes it within
/// `wal_writer_delay`): fewer fsyncs beside the batch write's (WAL syncs per 10 s at 1K events/s
/// 387–396 → 224–235 with the stored window's rows in the batch write; latency unchanged,
/// BENCHMARKS.md). A crash may lose the last outcomes; their rows, still leased, are sent again
/// once the lease ends — what a crash between a send and its outcome does anyway (at least once,
/// the same `webhook-id`). Deliveries and cursors stay synchronous.
///
/// Generic plans, as in the batch write (`outbox.rs`, `GENERIC_PLANS`) — but a generic plan is
/// made once per connection, from the table's statistics at that moment: made while `deliveries`
/// was nearly empty, the update's was a hash join over a sequential scan of the whole table, kept
/// as the table grew (`EXPLAIN ANALYZE` at 100K rows: 59 ms per execution; at 10K events/s on a
/// fresh database the server fell behind within a minute, BENCHMARKS.md "Session of 2026-12-03
/// (second)"). Each outcome matches at most one row by a unique key, so an index lookup per
/// outcome is the right plan at any size: the other join and scan methods are switched off.
pub(super) const OUTCOME_SETTINGS: &str = "SELECT set_config('synchronous_commit', 'off', true), \
     set_config('plan_cache_mode', 'force_generic_plan', true), \
     set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), \
     set_config('enable_mergejoin', 'off', true)";

/// The update of the rows of `VALUES` list `j` ([`RESULT_COLUMNS`], `j` its `WITH` prefix) with
/// their outcomes, each under the claim it was made with ([`Store::record_results`]).
pub(super) fn outcome_update(j: &str) -> String {
    format!(
        "{j} UPDATE deliveries SET status = j.status, attempts = j.attempts, next_attempt_at = j.next_attempt_at, \
         lease_until = 0, last_status_code = j.status_code, last_error = j.error, updated_at = j.at \
         FROM j WHERE deliveries.seq = j.seq AND deliveries.id = j.id AND deliveries.lease_until = j.lease \
         AND deliveries.status <> {}",
        DeliveryStatus::Delivered.sql()
    )
}

/// The insert of the attempts of the rows of `VALUES` list `j` that were attempted.
pub(super) fn attempts_insert(j: &str) -> String {
    format!(
        "{j} INSERT INTO delivery_attempts (delivery_seq, attempt, status_code, latency_ms, error, response_body, created_at) \
         SELECT j.seq, j.attempts, j.status_code, j.latency_ms, j.error, j.response_body, j.at FROM j \
         WHERE j.attempted ON CONFLICT (delivery_seq, attempt) DO NOTHING"
    )
}

fn bind_results<'q>(
    mut query: Rows<'q>,
    results: &'q [AttemptResult],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for r in results {
        query = query
            .bind(r.id.as_str())
            .bind(r.seq)
            .bind(r.status.as_str())
            .bind(r.attempts)
            .bind(r.next_attempt_at)
            .bind(r.status_code)
            .bind(r.latency_ms)
            .bind(r.error.as_deref())
            .bind(r.response_body.as_deref())
            .bind(r.at)
            .bind(r.attempted)
            .bind(r.lease);
    }
    query.finish()
}

impl Store {
    /// Leases up to `limit` deliveries that are due and not leased by anyone, until `now + lease_ms`,
    /// and no more once their bodies reach `max_body_bytes` (the row that crosses it is the last;
    /// the first is always claimed): a claim of sealed batches, up to megabytes each, is bounded
    /// in bytes as well as in rows.
    /// A leased row is not due again before its lease ends, so the `(status, next_attempt_at)`
    /// index range holds only rows really due, however many are in flight. On PostgreSQL,
    /// `SKIP LOCKED` lets replicas claim side by side without waiting on each other.
    pub async fn claim_due(
        &self,
        limit: i64,
        max_body_bytes: i64,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let now = now_ms();
        // A read first: usually nothing is due, and on SQLite the UPDATE would queue for the write
        // lock behind the hot path's transactions just to find that out.
        let sql = format!(
            "SELECT 1 FROM deliveries WHERE {} AND next_attempt_at <= $1 AND lease_until <= $1 LIMIT 1",
            *UNFINISHED
        );
        let due: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        // The body comes back with the row, looked up by its `seq` per claimed row (the primary
        // key of `delivery_bodies`): one statement, and no plan that joins the claimed rows to
        // the whole bodies table. A separate read joined to a list of seqs was planned once per
        // connection while the table was small and kept scanning all of it (301 scans, 903K rows
        // in a 30 s batched run, BENCHMARKS.md "Session of 2026-12-03 (third)"). A body is
        // written with its row and never changes while the row is claimable.
        // The bodies' sizes come from their length (`octet_length` reads neither a PostgreSQL
        // TOAST value nor SQLite's overflow pages) and are summed in claim order over the due
        // rows picked (and, on PostgreSQL, locked) first: window functions cannot share a query
        // level with `FOR UPDATE`.
        let sql = format!(
            "UPDATE deliveries SET lease_until = $1, next_attempt_at = $1 WHERE id IN (SELECT id FROM \
             (SELECT id, size, SUM(size) OVER (ORDER BY next_attempt_at, seq ROWS UNBOUNDED PRECEDING) AS running FROM \
             (SELECT d.id, d.seq, d.next_attempt_at, \
             COALESCE((SELECT octet_length(b.body) FROM delivery_bodies b WHERE b.seq = d.seq), 0) AS size \
             FROM deliveries d \
             WHERE {unfinished} AND next_attempt_at <= $2 AND lease_until <= $2 \
             AND (d.ordering_key IS NULL OR NOT EXISTS ({earlier})) \
             ORDER BY next_attempt_at LIMIT $3 {lock}) due) sized WHERE running - size < $4) \
             RETURNING id, endpoint_id, seq, attempts, created_at, lease_until, ordering_key, \
             (SELECT b.body FROM delivery_bodies b WHERE b.seq = deliveries.seq) AS body",
            unfinished = *UNFINISHED,
            earlier = *EARLIER_IN_KEY,
        );
        let claimed: Vec<Claimed> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .bind(max_body_bytes.max(1))
            .fetch_all(&self.writer)
            .await?;
        claimed
            .into_iter()
            .map(|c| {
                Ok(DueDelivery {
                    body: c.body.ok_or(StoreError::MissingBody(c.seq))?,
                    id: c.id,
                    seq: c.seq,
                    endpoint_id: c.endpoint_id,
                    attempts: c.attempts,
                    created_at: c.created_at,
                    lease_until: c.lease_until,
                    ordered: c.ordering_key.is_some(),
                })
            })
            .collect()
    }

    /// Writes a batch of attempt outcomes in one transaction: one UPDATE and one INSERT per
    /// [`rows::MAX_ROWS`] outcomes. Returns the statements issued.
    ///
    /// An outcome changes its row only under the claim it was made with (`lease_until` equal to
    /// [`AttemptResult::lease`]): every claim sets a `lease_until` above the one it replaced (a row
    /// is claimable only once its lease has passed), and recording or a manual retry sets it to 0,
    /// so an outcome from an expired claim — a job that waited in memory too long, a replica that
    /// stalled — cannot revive a `dead` row or undo a newer attempt's result. Its attempt is still
    /// logged (it happened), unless the newer claim already logged that attempt number.
    ///
    /// Rows are found by `seq` (and must carry the outcome's `id` too): on SQLite the update then
    /// reads the table's recent pages, which the batch write has just written, instead of probing
    /// the hashed `id` index at random (BENCHMARKS.md, "Session of 2026-12-03 (second)").
    pub async fn record_results(&self, results: &[AttemptResult]) -> Result<u64, StoreError> {
        if results.is_empty() {
            return Ok(0);
        }
        if let Some(direct) = &self.direct {
            return self.record_direct(direct, results).await;
        }
        let mut statements = 0;
        let mut tx = self
            .begin_write_with(&self.writer, OUTCOME_SETTINGS)
            .await?;
        for chunk in results.chunks(rows::MAX_ROWS) {
            let update = Rows::new(self.dialect, &RESULT_COLUMNS, chunk.len(), outcome_update);
            bind_results(update, chunk).execute(&mut *tx).await?;
            let insert = Rows::new(self.dialect, &RESULT_COLUMNS, chunk.len(), attempts_insert);
            bind_results(insert, chunk).execute(&mut *tx).await?;
            statements += 2;
        }
        tx.commit().await?;
        Ok(statements)
    }

    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        // Absent filters bind as NULL and match everything, so one statement serves every combination.
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE ($1 IS NULL OR subscription_id = $1) \
             AND ($2 IS NULL OR endpoint_id = $2) AND ($3 IS NULL OR status = $3) AND seq < $4 \
             AND created_at >= $6 AND created_at < $7 ORDER BY seq DESC LIMIT $5"
        );
        Ok(sqlx::query_as(AssertSqlSafe(self.cast_text_params(&sql)))
            .bind(&filter.subscription_id)
            .bind(&filter.endpoint_id)
            .bind(filter.status.map(DeliveryStatus::as_str))
            .bind(filter.before_seq.unwrap_or(i64::MAX))
            .bind(filter.limit)
            .bind(filter.created_from.unwrap_or(i64::MIN))
            .bind(filter.created_before.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_delivery(
        &self,
        id: &str,
    ) -> Result<Option<(DeliveryRow, String)>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, \
             (SELECT b.body FROM delivery_bodies b WHERE b.seq = deliveries.seq) AS body \
             FROM deliveries WHERE id = $1"
        );
        #[derive(sqlx::FromRow)]
        struct WithBody {
            #[sqlx(flatten)]
            row: DeliveryRow,
            body: String,
        }
        let row: Option<WithBody> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.row, r.body)))
    }

    pub async fn delivery_attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT attempt, status_code, latency_ms, error, response_body, created_at FROM delivery_attempts \
             WHERE delivery_seq = (SELECT seq FROM deliveries WHERE id = $1) ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Makes a delivery due now (manual retry); a delivered one is sent again on request. Not a
    /// delivery still waiting for confirmations, a batch still filling or one being attempted
    /// right now (false).
    pub async fn retry_delivery(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE deliveries SET status = {retrying}, next_attempt_at = $2, lease_until = 0, updated_at = $2 \
             WHERE id = $1 AND next_attempt_at <> $3 AND lease_until <= $2 AND status <> {filling}",
            retrying = DeliveryStatus::Retrying.sql(),
            filling = DeliveryStatus::Filling.sql(),
        );
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(now)
            .bind(super::HELD_UNTIL_RELEASED)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Re-drives an endpoint's dead deliveries created at or after `since_ms`; returns how many.
    pub async fn recover_endpoint(
        &self,
        endpoint_id: &str,
        since_ms: i64,
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE deliveries SET status = {retrying}, next_attempt_at = $3, lease_until = 0, updated_at = $3 \
             WHERE endpoint_id = $1 AND status = {dead} AND created_at >= $2",
            retrying = DeliveryStatus::Retrying.sql(),
            dead = DeliveryStatus::Dead.sql(),
        );
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(endpoint_id)
            .bind(since_ms)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    /// PostgreSQL cannot infer the type of a parameter used only in `$n IS NULL`.
    fn cast_text_params(&self, sql: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => sql.to_string(),
            Dialect::Postgres => sql
                .replace("($1 IS NULL", "($1::text IS NULL")
                .replace("($2 IS NULL", "($2::text IS NULL")
                .replace("($3 IS NULL", "($3::text IS NULL"),
        }
    }
}

/// A row the claim leased, with its body (`None` only if the body row is missing).
#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    endpoint_id: String,
    seq: i64,
    attempts: i64,
    created_at: i64,
    lease_until: i64,
    ordering_key: Option<String>,
    body: Option<String>,
}
