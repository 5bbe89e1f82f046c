//! The batch write: deliveries, count-batch events, parked events (`parked.rs`), subscription
//! status and chain cursors in one transaction, one step per table. Chain cursors are read back
//! here too.

use sqlx::AssertSqlSafe;

use super::outbox_rows::{
    BODIES_INSERT, BODY_BYTES_PER_STATEMENT, BODY_COLUMNS, DELIVERY_COLUMNS, bind_delivery,
    bodies_of_new, body_chunks, cursor_upsert, delivery_insert, new_ids_and_seqs,
};
use super::rows::{self, Rows};
use super::{
    BatchEvent, ChainBlock, Cursor, Dialect, HELD_UNTIL_RELEASED, InsertedDelivery, NewDelivery,
    OutboxWrite, ParkedEvent, SealedBatch, StatusChange, Store, StoreError, now_ms,
};

pub(super) type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Statements issued by one write, for the statements-per-event metric, the chains whose
/// cursor was refused by fencing, and the batches it sealed.
#[derive(Debug, Default, Clone)]
pub struct WriteStats {
    pub statements: u64,
    /// The lease new (not held) deliveries were written with: the claim token their jobs carry.
    pub lease_until: i64,
    pub fenced: Vec<i64>,
    /// Batches this write sealed: due (for the poller), held, or sent from memory.
    pub sealed: usize,
    /// Those of them the outbox sends from memory, leased until [`WriteStats::lease_until`].
    pub sealed_to_send: Vec<SealedBatch>,
}

/// The batch write's statements run on generic plans (PostgreSQL, this transaction only). Their
/// many-row `VALUES` carry up to thousands of parameters; PostgreSQL plans the first five
/// executions of a prepared statement on each connection for their values (~2 ms each for a
/// 100-row insert, `EXPLAIN ANALYZE`), and with 16 pooled connections and a few statement shapes
/// per table that is most executions for minutes. At 1K events/s the P50 fell 0.4–0.9 ms in each
/// of three interleaved pairs (BENCHMARKS.md, "Latency at 1K events/s — session of 2026-12-02
/// (seventh)"). Not session-wide: the admin API's filtered listings are better planned for their
/// values.
///
/// A generic plan is made once per connection, from the statistics of that moment: made while
/// the tables were nearly empty, the batch-delivery steps' plans scanned all of `batch_events`
/// and `delivery_bodies` on every batch forever after (302 scans, 89.7 million rows in a 30 s run
/// of 20K events/s in batches of 100). Every step of this transaction reaches its rows through
/// an index, so sequential scans and hash and merge joins are switched off for it (the outcome
/// write does the same, `deliveries.rs`). Sent with the transaction's `BEGIN`
/// (`Store::begin_write_with`): a round trip fewer per batch.
const GENERIC_PLANS: &str = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), \
     set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), \
     set_config('enable_mergejoin', 'off', true)";

impl Store {
    /// Makes one batch durable. Returns the deliveries that are new; ids already present
    /// (a replay after a crash) are skipped, so they are never sent twice from the hot path.
    ///
    /// One transaction, one step per table: deliveries (with the held ones a `log.removed`
    /// cancels), count-batch events, the stored reorg window's blocks, parked events,
    /// subscription status, chain cursors (with the release of held deliveries). Deliveries take one statement per [`rows::MAX_ROWS`] rows
    /// (and one for the cancelled held ones), parked and resolved events one each, count-batch
    /// events the four of `batches.rs`; status changes and cursors one per row (rare, and one per
    /// chain of the batch). [`WriteStats::statements`] counts them all.
    ///
    /// A chain whose cursor is fenced (another replica took the chain over since this process
    /// did) has nothing of this write stored: not its cursor, nor its deliveries and parked
    /// events, nor the release of its held deliveries. They all come from blocks above the cursor
    /// the new owner started from, which it ingests again.
    ///
    /// The commonest batch — one chain's block, deliveries and cursor, nothing else — is written
    /// with fewer trips instead, with the same rows and the same fencing (`head_batch.rs`): one
    /// statement on PostgreSQL, two calls inside the transaction on SQLite.
    pub async fn write_batch(
        &self,
        write: &OutboxWrite,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, WriteStats), StoreError> {
        self.write_batch_at(write, now_ms(), lease_ms).await
    }

    /// [`Store::write_batch`] with the write's time given: its rows are created at `now` and new
    /// deliveries leased until `now + lease_ms`, so a caller that hands jobs on before the write
    /// (`[delivery] send_before_commit`) knows their lease beforehand.
    pub async fn write_batch_at(
        &self,
        write: &OutboxWrite,
        now: i64,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, WriteStats), StoreError> {
        if let Some(batch) = self.head_batch(write) {
            return self.write_head_batch(batch, now, lease_ms).await;
        }
        let mut stats = WriteStats {
            lease_until: now + lease_ms,
            ..WriteStats::default()
        };
        let mut tx = self.begin_write_with(&self.writer, GENERIC_PLANS).await?;
        let (fenced, checks) = self.fenced_chains(&mut tx, &write.cursors).await?;
        stats.statements += checks;
        stats.fenced = fenced.iter().copied().collect();
        let ours = |chain_id: i64| !fenced.contains(&chain_id);
        let deliveries: Vec<&NewDelivery> = write
            .deliveries
            .iter()
            .filter(|d| ours(d.chain_id))
            .collect();
        let inserted = self
            .write_deliveries(&mut tx, &deliveries, now, lease_ms, &mut stats)
            .await?;
        if !write.batch_events.is_empty() {
            let events: Vec<&BatchEvent> = write
                .batch_events
                .iter()
                .filter(|e| ours(e.chain_id))
                .collect();
            let appended = self
                .append_batch_events(&mut tx, &events, now, lease_ms)
                .await?;
            stats.sealed = appended.sealed;
            stats.sealed_to_send = appended.to_send;
            stats.statements += appended.statements;
        }
        let blocks: Vec<&ChainBlock> = write
            .chain_blocks
            .iter()
            .filter(|b| ours(b.chain_id))
            .collect();
        let mut cursors: Vec<&Cursor> = write.cursors.iter().filter(|c| ours(c.chain_id)).collect();
        let fold = self.cursor_to_fold(&cursors, &write.release_chains, blocks.len());
        if self
            .write_chain_blocks(&mut tx, &blocks, fold.map(|c| (c, now)), &mut stats)
            .await?
        {
            cursors.retain(|c| !fold.is_some_and(|f| std::ptr::eq(*c, f)));
        }
        let parked: Vec<&ParkedEvent> = write.parked.iter().filter(|p| ours(p.chain_id)).collect();
        self.insert_parked(&mut tx, &parked, now, &mut stats)
            .await?;
        self.resolve_parked(&mut tx, &write.resolved_parked, &mut stats)
            .await?;
        self.write_status_changes(&mut tx, &write.status_changes, now, &mut stats)
            .await?;
        self.write_cursors(&mut tx, &cursors, &write.release_chains, now, &mut stats)
            .await?;
        tx.commit().await?;
        Ok((inserted, stats))
    }

    /// The deliveries step: cancels the held deliveries that `log.removed`s among `candidates`
    /// supersede, then inserts the rest (not those superseding a cancelled one); those new.
    async fn write_deliveries(
        &self,
        tx: &mut Tx<'_>,
        candidates: &[&NewDelivery],
        now: i64,
        lease_ms: i64,
        stats: &mut WriteStats,
    ) -> Result<Vec<InsertedDelivery>, StoreError> {
        let cancelled = self.cancel_held(tx, candidates, stats).await?;
        let deliveries: Vec<&NewDelivery> = candidates
            .iter()
            .copied()
            .filter(|d| d.supersedes.iter().all(|id| !cancelled.contains(id)))
            .collect();
        let mut inserted = Vec::new();
        for chunk in deliveries.chunks(rows::MAX_ROWS) {
            let (new, statements) = self.insert_deliveries(tx, chunk, now, lease_ms).await?;
            stats.statements += statements;
            inserted.extend(new);
        }
        Ok(inserted)
    }

    /// The subscriptions step: the matcher's quarantines and recoveries, one statement each.
    async fn write_status_changes(
        &self,
        tx: &mut Tx<'_>,
        changes: &[StatusChange],
        now: i64,
        stats: &mut WriteStats,
    ) -> Result<(), StoreError> {
        for change in changes {
            sqlx::query(
                "UPDATE subscriptions SET status = $2, last_error = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(&change.subscription_id)
            .bind(change.status)
            .bind(&change.last_error)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            stats.statements += 1;
        }
        Ok(())
    }

    /// The cursor that [`Store::write_chain_blocks`] may write in its own statement: on
    /// PostgreSQL, the batch's only cursor, when it releases no held deliveries and the blocks
    /// fit one statement. Near the head every batch is one block and one cursor, and each
    /// statement is a round trip (~0.3 ms at 1K events/s; BENCHMARKS.md, "Session of 2026-12-05
    /// (eighth)"). SQLite statements cannot write two tables; there a statement costs no round
    /// trip to a server.
    fn cursor_to_fold<'c>(
        &self,
        cursors: &[&'c Cursor],
        release_chains: &[u64],
        blocks: usize,
    ) -> Option<&'c Cursor> {
        match (self.dialect, cursors) {
            (Dialect::Postgres, [only])
                if (1..=rows::MAX_ROWS).contains(&blocks)
                    && !release_chains.contains(&(only.chain_id as u64)) =>
            {
                Some(*only)
            }
            _ => None,
        }
    }

    /// The cursors step: each chain's cursor, and for the chains in `release_chains` the release
    /// of their held deliveries up to it.
    async fn write_cursors(
        &self,
        tx: &mut Tx<'_>,
        cursors: &[&Cursor],
        release_chains: &[u64],
        now: i64,
        stats: &mut WriteStats,
    ) -> Result<(), StoreError> {
        for cursor in cursors {
            self.write_cursor(tx, cursor, now).await?;
            stats.statements += 1;
            if release_chains.contains(&(cursor.chain_id as u64)) {
                self.release_held(tx, cursor, now).await?;
                stats.statements += 1;
            }
        }
        Ok(())
    }

    async fn write_cursor(
        &self,
        tx: &mut Tx<'_>,
        cursor: &Cursor,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(cursor_upsert(1)))
            .bind(cursor.chain_id)
            .bind(cursor.block_number)
            .bind(&cursor.block_hash)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Makes the chain's held deliveries up to the new cursor due.
    async fn release_held(
        &self,
        tx: &mut Tx<'_>,
        cursor: &Cursor,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $3, updated_at = $3 \
             WHERE chain_id = $1 AND release_block IS NOT NULL AND release_block <= $2 AND next_attempt_at = $4",
        )
        .bind(cursor.chain_id)
        .bind(cursor.block_number)
        .bind(now)
        .bind(HELD_UNTIL_RELEASED)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Inserts one chunk of new deliveries; returns those that were new.
    async fn insert_deliveries(
        &self,
        tx: &mut Tx<'_>,
        chunk: &[&NewDelivery],
        now: i64,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, u64), StoreError> {
        let insert = delivery_insert("true");
        // The bodies follow in a second statement, for the rows the insert returned as new, on
        // both stores. PostgreSQL once wrote them in the same statement (a data-modifying CTE
        // joining the returned rows to the input by id), but the batch write switches hash and
        // merge joins off (`GENERIC_PLANS`), and as a nested loop over the two CTEs that join
        // copied every input row, body included, once per returned row: 512 × 512 rows for a
        // full chunk, 8 % of the server's samples in `memmove` at 10K events/s (BENCHMARKS.md,
        // "Session of 2026-12-03 (third)"). A second round trip costs less.
        let mut query = Rows::new(self.dialect, &DELIVERY_COLUMNS, chunk.len(), |j| {
            format!("{j} {insert}")
        });
        for d in chunk {
            query = bind_delivery(query, d, now, lease_ms);
        }
        let new = new_ids_and_seqs(&query.finish().fetch_all(&mut **tx).await?)?;
        if new.is_empty() {
            return Ok((new, 1));
        }
        let rows = bodies_of_new(&new, chunk.iter().map(|d| (d.id.as_str(), d.body.as_str())));
        let bodies = self.insert_bodies(tx, &rows).await?;
        Ok((new, 1 + bodies))
    }

    /// Inserts the bodies of new deliveries (`(seq, body)`): one statement per
    /// [`BODY_BYTES_PER_STATEMENT`] of bodies (one for a head batch's single-event bodies).
    /// Returns the statements.
    pub(super) async fn insert_bodies(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        rows: &[(i64, &str)],
    ) -> Result<u64, StoreError> {
        let mut statements = 0;
        for chunk in body_chunks(rows, BODY_BYTES_PER_STATEMENT) {
            let mut query = Rows::new(self.dialect, &BODY_COLUMNS, chunk.len(), |j| {
                format!("{j} {BODIES_INSERT}")
            });
            for (seq, body) in chunk {
                query = query.bind(*seq).bind(*body);
            }
            query.finish().execute(&mut **tx).await?;
            statements += 1;
        }
        Ok(statements)
    }
    /// Deletes held deliveries that a `log.removed` supersedes (the log was reorged out before it
    /// was confirmed enough to send); returns their ids.
    async fn cancel_held(
        &self,
        tx: &mut Tx<'_>,
        deliveries: &[&NewDelivery],
        stats: &mut WriteStats,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let superseded: Vec<&str> = deliveries
            .iter()
            .flat_map(|d| d.supersedes.iter().map(String::as_str))
            .collect();
        if superseded.is_empty() {
            return Ok(Default::default());
        }
        let ids: Vec<serde_json::Value> = superseded
            .iter()
            .map(|id| serde_json::json!({"id": id}))
            .collect();
        let source = self.json_rows(1, &[("id", "text")]);
        let sql = format!(
            "DELETE FROM deliveries WHERE next_attempt_at = $2 AND id IN (SELECT j.id FROM {source}) RETURNING id"
        );
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(ids).to_string())
            .bind(HELD_UNTIL_RELEASED)
            .fetch_all(&mut **tx)
            .await?;
        stats.statements += 1;
        Ok(rows.into_iter().collect())
    }

    pub async fn get_cursor(&self, chain_id: u64) -> Result<Option<Cursor>, StoreError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT block_number, block_hash FROM chain_cursors WHERE chain_id = $1",
        )
        .bind(chain_id as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(block_number, block_hash)| Cursor {
            chain_id: chain_id as i64,
            block_number,
            block_hash,
        }))
    }
}
