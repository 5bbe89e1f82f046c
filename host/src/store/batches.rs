//! Batch deliveries of `{max_events, max_wait_ms}` subscriptions. A batch is a delivery row in
//! status `filling` (never claimed) whose events are rows of `batch_events`, appended in the
//! transaction that advances the cursor; sealing builds its body from them and makes it
//! `pending`. While it fills, the row's `body` holds the body's prefix, `next_attempt_at` the
//! moment the sealer must seal it, and `release_block` the blocks it waits beyond the chain's
//! confirmations once sealed (0: none).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{AssertSqlSafe, Row};

use super::batch_rows::{FillRows, Sealed};
use super::{BatchEvent, DeliveryStatus, Dialect, SealedBatch, Store, StoreError};
use crate::modes::batching::{self, Incoming, OpenBatch};

/// What [`Store::append_batch_events`] did.
pub(super) struct Appended {
    /// Batches sealed (filled up, or opened and sealed whole).
    pub sealed: usize,
    /// Those of them the outbox sends from memory ([`Sealed::goes_from_memory`]).
    pub to_send: Vec<SealedBatch>,
    pub statements: u64,
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// The state of a batch still taking events, as this file's statements name it.
const FILLING: &str = DeliveryStatus::Filling.sql();

/// Batches sealed by the sealer per transaction at most.
const SEAL_CHUNK: i64 = 500;

impl Store {
    /// Appends `events` (in chain order) to their subscriptions' open batches, opening and
    /// sealing batches as [`batching::plan`] says. Events already stored (a replay of results
    /// written ahead of the cursor) are skipped. Returns how many batches were sealed, and those
    /// sent from memory (leased for `lease_ms`).
    pub(super) async fn append_batch_events(
        &self,
        tx: &mut Tx<'_>,
        events: &[&BatchEvent],
        now: i64,
        lease_ms: i64,
    ) -> Result<Appended, StoreError> {
        let mut per_sub = group_by_subscription(events);
        let stored = self.stored_event_ids(tx, &per_sub).await?;
        for (_, list) in &mut per_sub {
            list.retain(|e| !stored.contains(&e.event_id));
        }
        per_sub.retain(|(_, list)| !list.is_empty());
        if per_sub.is_empty() {
            return Ok(Appended {
                sealed: 0,
                to_send: Vec::new(),
                statements: 1,
            });
        }
        let subs: Vec<&str> = per_sub.iter().map(|(s, _)| *s).collect();
        let mut open = self.open_batches(tx, &subs).await?;
        let mut rows = FillRows::default();
        let mut sealed = Vec::new();
        let mut whole = 0;
        for (sub, list) in &per_sub {
            let incoming: Vec<Incoming> = list
                .iter()
                .map(|e| Incoming {
                    event_id: &e.event_id,
                    event_type: &e.event_type,
                })
                .collect();
            let first = list[0];
            let fills = batching::plan(
                open.remove(*sub),
                &incoming,
                first.max_events,
                first.max_wait_ms,
                now,
            );
            for fill in fills {
                rows.add(&fill, list, now, lease_ms);
                match (fill.sealed, fill.is_new) {
                    (true, true) => whole += 1,
                    (true, false) => sealed.push(fill.id),
                    (false, _) => {}
                }
            }
        }
        let mut statements = 3; // the three reads above
        let (inserted, mut to_send) = self.insert_new_batches(tx, &rows.batches, now).await?;
        statements += inserted;
        statements += self.insert_batch_events(tx, &rows.events).await?;
        let (sealing, topped_up) = self.seal_batches(tx, &sealed, now, Some(lease_ms)).await?;
        statements += sealing;
        to_send.extend(topped_up);
        Ok(Appended {
            sealed: sealed.len() + whole,
            to_send,
            statements,
        })
    }

    /// Seals the batches whose `max_wait_ms` is over at `now` (the sealer, every 100 ms).
    /// Returns how many it sealed.
    pub async fn seal_expired_batches(&self, now: i64) -> Result<usize, StoreError> {
        // A read first: usually nothing is due, and the write lock is not taken for nothing.
        let sql = format!(
            "SELECT 1 FROM deliveries WHERE status = {FILLING} AND next_attempt_at <= $1 LIMIT 1"
        );
        let due: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        if due.is_none() {
            return Ok(0);
        }
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let mut tx = self.begin_write(&self.writer).await?;
        let sql = format!(
            "SELECT id FROM deliveries WHERE status = {FILLING} AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2 {lock}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(SEAL_CHUNK)
            .fetch_all(&mut *tx)
            .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        self.seal_batches(&mut tx, &ids, now, None).await?;
        tx.commit().await?;
        Ok(ids.len())
    }

    /// Ids of `events` already in a batch. One range probe per subscription over the blocks its
    /// events come from (usually empty: new blocks are past the end of its range), rather than a
    /// lookup per event; rows of an orphaned block with the same number come back too and simply
    /// match no incoming id.
    async fn stored_event_ids(
        &self,
        tx: &mut Tx<'_>,
        per_sub: &[(&str, Vec<&BatchEvent>)],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let ranges = per_sub.iter().map(|(sub, list)| {
            let blocks = list.iter().map(|e| e.block_number);
            let low = blocks.clone().min().unwrap_or(0);
            (*sub, low, blocks.max().unwrap_or(low))
        });
        let probes: Vec<serde_json::Value> = ranges
            .map(|(sub, low, high)| serde_json::json!({"sub": sub, "low": low, "high": high}))
            .collect();
        let source = self.json_rows(1, &[("sub", "text"), ("low", "bigint"), ("high", "bigint")]);
        let sql = format!(
            "SELECT e.event_id FROM {source} JOIN batch_events e \
             ON e.subscription_id = j.sub AND e.block_number BETWEEN j.low AND j.high"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(serde_json::Value::from(probes).to_string())
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// The open batch of each of `subs` that has one, locked on PostgreSQL (the sealer skips it).
    async fn open_batches(
        &self,
        tx: &mut Tx<'_>,
        subs: &[&str],
    ) -> Result<HashMap<String, OpenBatch>, StoreError> {
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let source = self.json_rows(1, &[("id", "text")]);
        let sql = format!(
            "SELECT id, subscription_id, created_at, event_type FROM deliveries \
             WHERE status = {FILLING} AND subscription_id IN (SELECT j.id FROM {source}) {lock}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id_list(subs))
            .fetch_all(&mut **tx)
            .await?;
        let mut open = HashMap::new();
        let mut ids = Vec::new();
        for r in &rows {
            let batch = OpenBatch {
                id: r.try_get(0)?,
                size: 0,
                opened_at: r.try_get(2)?,
                event_type: r.try_get(3)?,
            };
            ids.push(batch.id.clone());
            open.insert(r.try_get::<String, _>(1)?, batch);
        }
        if ids.is_empty() {
            return Ok(open);
        }
        let source = self.json_rows(1, &[("id", "text")]);
        let sql = format!(
            "SELECT delivery_id, COUNT(*) FROM batch_events \
             WHERE delivery_id IN (SELECT j.id FROM {source}) GROUP BY delivery_id"
        );
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let counts = sqlx::query(AssertSqlSafe(sql))
            .bind(id_list(&ids))
            .fetch_all(&mut **tx)
            .await?;
        let counts: HashMap<String, i64> = counts
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        for batch in open.values_mut() {
            let size = counts.get(&batch.id).copied().unwrap_or(0);
            batch.size = u32::try_from(size).unwrap_or(u32::MAX);
        }
        Ok(open)
    }

    /// Builds each batch's body from its events and makes it due (or held until its last block
    /// has the subscription's confirmations), or, in a batch write (`lease_ms` given), leased to
    /// this process to be sent from memory ([`Sealed::at`]). A batch no longer filling is left
    /// as it is. Returns the statements, and the batches sent from memory with their bodies.
    async fn seal_batches(
        &self,
        tx: &mut Tx<'_>,
        ids: &[String],
        now: i64,
        lease_ms: Option<i64>,
    ) -> Result<(u64, Vec<SealedBatch>), StoreError> {
        if ids.is_empty() {
            return Ok((0, Vec::new()));
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let source = self.json_rows(1, &[("id", "text")]);
        let sql = format!(
            "SELECT d.id, b.body, d.release_block, e.block_number, e.element, d.seq, \
             d.endpoint_id, d.ordering_key FROM deliveries d \
             JOIN batch_events e ON e.delivery_id = d.id JOIN delivery_bodies b ON b.seq = d.seq \
             WHERE d.status = {FILLING} AND d.id IN (SELECT j.id FROM {source}) \
             ORDER BY d.id, e.position"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id_list(&refs))
            .fetch_all(&mut **tx)
            .await?;
        let mut batches: Vec<Sealing> = Vec::new();
        for r in &rows {
            let id: String = r.try_get(0)?;
            if batches.last().is_none_or(|b| b.id != id) {
                batches.push(Sealing {
                    id,
                    seq: r.try_get(5)?,
                    endpoint_id: r.try_get(6)?,
                    ordered: r.try_get::<Option<String>, _>(7)?.is_some(),
                    prefix: r.try_get(1)?,
                    extra: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                    last_block: 0,
                    elements: Vec::new(),
                });
            }
            if let Some(batch) = batches.last_mut() {
                batch.last_block = batch.last_block.max(r.try_get(3)?);
                batch.elements.push(r.try_get(4)?);
            }
        }
        let mut statements = 1; // the read above
        let mut to_send = Vec::new();
        for batch in batches {
            let elements: Vec<&str> = batch.elements.iter().map(String::as_str).collect();
            let body = batching::body(&batch.prefix, &elements);
            let sealed = Sealed::at(batch.extra, batch.last_block, batch.ordered, now, lease_ms);
            self.seal_one(tx, &batch, &body, sealed, now).await?;
            statements += 2;
            // Shared with the job only now: the copies bound into the statements are gone.
            if sealed.goes_from_memory() {
                to_send.push(SealedBatch {
                    id: batch.id,
                    seq: batch.seq,
                    endpoint_id: batch.endpoint_id,
                    body: Arc::from(body),
                });
            }
        }
        Ok((statements, to_send))
    }

    /// Writes one sealed batch's body and makes its row `pending` on `sealed`'s schedule (two
    /// statements); a batch no longer filling is left as it is.
    async fn seal_one(
        &self,
        tx: &mut Tx<'_>,
        batch: &Sealing,
        body: &str,
        sealed: Sealed,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE delivery_bodies SET body = $2 WHERE seq = $1")
            .bind(batch.seq)
            .bind(body)
            .execute(&mut **tx)
            .await?;
        let seal = format!(
            "UPDATE deliveries SET status = {pending}, next_attempt_at = $2, \
             release_block = $3, lease_until = $6, updated_at = $4, block_number = $5 \
             WHERE id = $1 AND status = {FILLING}",
            pending = DeliveryStatus::Pending.sql(),
        );
        sqlx::query(AssertSqlSafe(seal))
            .bind(&batch.id)
            .bind(sealed.next_attempt_at)
            .bind(sealed.release_block)
            .bind(now)
            .bind(batch.last_block)
            .bind(sealed.lease_until)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// A batch being sealed: its stored prefix and its events in order.
struct Sealing {
    id: String,
    seq: i64,
    endpoint_id: String,
    ordered: bool,
    prefix: String,
    extra: i64,
    last_block: i64,
    elements: Vec<String>,
}

/// `events` grouped by subscription, each group in the order given (chain order), the groups in
/// order of first appearance.
fn group_by_subscription<'a>(events: &[&'a BatchEvent]) -> Vec<(&'a str, Vec<&'a BatchEvent>)> {
    let mut groups: Vec<(&str, Vec<&BatchEvent>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for event in events.iter().copied() {
        let sub = event.subscription_id.as_str();
        let at = *index.entry(sub).or_insert_with(|| {
            groups.push((sub, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(event);
    }
    groups
}

/// `[{"id": …}, …]` for a `json_rows` source with one `id` column.
fn id_list(ids: &[&str]) -> String {
    let list: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({"id": id})).collect();
    serde_json::Value::from(list).to_string()
}
