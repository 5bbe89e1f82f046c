//! SQLite's hot-path writes on a connection of its own, without sqlx: the head batch
//! (`head_batch.rs`) and the attempt outcomes (`Store::record_results`).
//!
//! Through sqlx every SQLite call is a round trip to the connection's own thread, and each row a
//! statement returns comes back as a channel message of its own. A 1K events/s block's write
//! (`BEGIN`, 100 deliveries returning their `seq`, their bodies, the block's row, the cursor,
//! `COMMIT`) is ~0.45 ms of SQLite's own work but took ~1.4 ms that way, and by default every
//! webhook of the block waits for it (BENCHMARKS.md, "Session of 2026-12-05 (eighth)" and
//! "Session of 2026-12-06 (sixteenth)"). Here the same statements — the same SQL text, rows and
//! fence check as `head_batch.rs` builds for sqlx — run through rusqlite on the calling task's
//! own thread, in one go. The outcomes of the block's webhooks are written here too, with the
//! statements `deliveries.rs` builds: the two hot writes share this connection's page cache,
//! where a commit from the sqlx writer would empty it.
//!
//! - **One writer at a time.** The write holds the sqlx writer's one connection (its pool of one
//!   is the process's write lock) while it runs, so this connection and that one never wait for
//!   each other in SQLite's busy handler, and the checkpointer still finds the writer busy
//!   (`Store::writer_idle`). Other connections that write (admin changes, the checkpointer's
//!   restart) meet it in SQLite's lock under the busy timeout, as they meet the sqlx writer.
//! - **Off the executor.** The write blocks its thread for its duration, so on a multi-thread
//!   runtime it runs in `block_in_place` and the runtime hands this worker's other tasks to
//!   another thread. A current-thread runtime (tests) runs it inline.
//! - **Not for a database in memory**: a second connection would open another database. The sqlx
//!   path (`Store::write_in_two_calls`) writes those.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::Null;
use rusqlite::{Connection, OpenFlags, Statement, ToSql, TransactionBehavior};

use super::deliveries::{RESULT_COLUMNS, attempts_insert, outcome_update};
use super::head_batch::HeadBatch;
use super::outbox::WriteStats;
use super::outbox_rows::{
    BODIES_INSERT, BODY_COLUMNS, DELIVERY_COLUMNS, bodies_of_new, cursor_upsert_anonymous,
    delivery_insert, due_and_lease,
};
use super::rows;
use super::wal::{BUSY_TIMEOUT_MS, WAL_SIZE_LIMIT_BYTES};
use super::window::{BLOCK_COLUMNS, block_upsert};
use super::{AttemptResult, ChainBlock, Dialect, InsertedDelivery, NewDelivery, Store, StoreError};

/// Prepared statements this connection keeps: each `VALUES` list comes in up to seven padded
/// sizes (`rows.rs`), for the deliveries and for the bodies, plus the block's, the cursor's and
/// the fence's.
const STATEMENT_CACHE: usize = 24;

/// Page cache of this connection (KiB). Every commit of another connection (the sqlx writer's
/// outcomes) empties it, so it never holds more than a few batches' pages.
const CACHE_KIB: u32 = 2 * 1024;

/// The fence: whether the chain's epoch is still the one this process took.
const OWNED: &str = "SELECT EXISTS (SELECT 1 FROM chain_owners WHERE chain_id = ?1 AND epoch = ?2)";

/// The connection the head batch is written on (the module's doc).
#[derive(Clone)]
pub(super) struct DirectWriter {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectWriter")
    }
}

impl DirectWriter {
    /// A connection to the SQLite database of `url` with the sqlx writer's settings, or `None`
    /// when that database lives in memory or is opened read-only. The file must exist (the sqlx
    /// pools create it).
    pub(super) fn open(url: &str) -> Result<Option<DirectWriter>, StoreError> {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
        let path = options.get_filename();
        let name = path.to_string_lossy();
        // sqlx names an in-memory database `file:sqlx-in-memory-N`; `mode` is the URL's query
        // parameter, not text anywhere in it (a file may be called `mode=ro.db`).
        let mode = url
            .split_once('?')
            .into_iter()
            .flat_map(|(_, query)| query.split('&'))
            .find_map(|pair| pair.strip_prefix("mode="));
        if name.is_empty()
            || name.starts_with("file:")
            || name == ":memory:"
            || matches!(mode, Some("memory" | "ro"))
        {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_millis(u64::from(BUSY_TIMEOUT_MS)))?;
        // The sqlx writer's settings (`Store::connect`): durable in WAL without a sync per
        // commit, checkpoints left to the checkpointer, statement journals in memory.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", -i64::from(CACHE_KIB))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Some(DirectWriter {
            conn: Arc::new(Mutex::new(conn)),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while the lock was held unwound through the transaction, which rolled back:
        // the connection is fine to use.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `batch` in one transaction: the fence check when the chain has an `epoch`, then
    /// (if still owned) the deliveries, the new ones' bodies, the block rows and the cursor.
    /// Returns the new deliveries and whether the chain was owned (nothing is written if not).
    fn write(
        &self,
        batch: &HeadBatch<'_>,
        epoch: Option<i64>,
        now: i64,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, bool), rusqlite::Error> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(epoch) = epoch {
            let owned: bool = tx
                .prepare_cached(OWNED)?
                .query_row((batch.cursor.chain_id, epoch), |row| row.get(0))?;
            if !owned {
                return Ok((Vec::new(), false));
            }
        }
        let inserted = insert_deliveries(&tx, &batch.deliveries, now, lease_ms)?;
        let bodies = bodies_of_new(
            &inserted,
            batch
                .deliveries
                .iter()
                .map(|d| (d.id.as_str(), d.body.as_str())),
        );
        insert_bodies(&tx, &bodies)?;
        upsert_blocks(&tx, &batch.blocks)?;
        let cursor = batch.cursor;
        tx.prepare_cached(&cursor_upsert_anonymous())?.execute((
            cursor.chain_id,
            cursor.block_number,
            cursor.block_hash.as_str(),
            now,
        ))?;
        tx.commit()?;
        Ok((inserted, true))
    }
}

/// Inserts the new deliveries' `(seq, body)` rows.
fn insert_bodies(
    tx: &rusqlite::Transaction<'_>,
    bodies: &[(i64, &str)],
) -> Result<(), rusqlite::Error> {
    if bodies.is_empty() {
        return Ok(());
    }
    let sql = values_then(&BODY_COLUMNS, bodies.len(), BODIES_INSERT);
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut at = Binder::new(&mut stmt);
    for (seq, body) in bodies {
        at.bind(seq)?.bind(body)?;
    }
    at.finish()?.raw_execute()?;
    Ok(())
}

/// Stores the reorg window's rows of `blocks` (a block stored again has its logs replaced).
fn upsert_blocks(
    tx: &rusqlite::Transaction<'_>,
    blocks: &[&ChainBlock],
) -> Result<(), rusqlite::Error> {
    if blocks.is_empty() {
        return Ok(());
    }
    let sql = values_then(&BLOCK_COLUMNS, blocks.len(), &block_upsert("j", "true"));
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut at = Binder::new(&mut stmt);
    for b in blocks {
        let (logs, logs_lz4) = b.block.logs.columns();
        at.bind(&b.chain_id)?
            .bind(&b.block.hash)?
            .bind(&b.block.number)?
            .bind(&b.block.parent_hash)?
            .bind(&logs)?
            .bind(&logs_lz4)?;
    }
    at.finish()?.raw_execute()?;
    Ok(())
}

/// Inserts `deliveries` (ids already stored are skipped) and returns the new ones' `id, seq`.
fn insert_deliveries(
    tx: &rusqlite::Transaction<'_>,
    deliveries: &[&NewDelivery],
    now: i64,
    lease_ms: i64,
) -> Result<Vec<InsertedDelivery>, rusqlite::Error> {
    let mut inserted = Vec::with_capacity(deliveries.len());
    if deliveries.is_empty() {
        return Ok(inserted);
    }
    let sql = values_then(
        &DELIVERY_COLUMNS,
        deliveries.len(),
        &delivery_insert("true"),
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut at = Binder::new(&mut stmt);
    for d in deliveries {
        let (due, lease) = due_and_lease(d, now, lease_ms);
        at.bind(&d.id)?
            .bind(&d.subscription_id)?
            .bind(&d.endpoint_id)?
            .bind(&d.chain_id)?
            .bind(&d.event_type)?
            .bind(&d.block_number)?
            .bind(&d.release_block)?
            .bind(&due)?
            .bind(&lease)?
            .bind(&now)?
            .bind(&d.ordering_key)?;
    }
    let mut rows = at.finish()?.raw_query();
    while let Some(row) = rows.next()? {
        inserted.push(InsertedDelivery {
            id: row.get(0)?,
            seq: row.get(1)?,
        });
    }
    Ok(inserted)
}

/// `WITH j(…) AS (VALUES …) statement` for `rows` rows of `columns` (padded as `rows.rs` pads).
fn values_then(columns: &[(&str, rows::Col)], rows: usize, statement: &str) -> String {
    format!("WITH {} {statement}", values(columns, rows))
}

/// `j(…) AS (VALUES …)` for `rows` rows of `columns`, with SQLite's anonymous parameters.
fn values(columns: &[(&str, rows::Col)], rows: usize) -> String {
    rows::values(Dialect::Sqlite, "j", columns, rows, 1)
}

/// Binds a statement's anonymous parameters in order, then NULLs for the padding rows.
struct Binder<'s, 'c> {
    stmt: &'s mut Statement<'c>,
    next: usize,
}

impl<'s, 'c> Binder<'s, 'c> {
    fn new(stmt: &'s mut Statement<'c>) -> Self {
        Binder { stmt, next: 1 }
    }

    fn bind(&mut self, value: &dyn ToSql) -> Result<&mut Self, rusqlite::Error> {
        self.stmt.raw_bind_parameter(self.next, value)?;
        self.next += 1;
        Ok(self)
    }

    /// Binds NULL to every parameter left (a cached statement keeps its last bindings).
    fn finish(self) -> Result<&'s mut Statement<'c>, rusqlite::Error> {
        for i in self.next..=self.stmt.parameter_count() {
            self.stmt.raw_bind_parameter(i, Null)?;
        }
        Ok(self.stmt)
    }
}

/// Writes `results` ([`Store::record_results`]): per [`rows::MAX_ROWS`] of them, the update of
/// their rows and the insert of their attempts, in one transaction. Returns the statements run.
fn record(conn: &mut Connection, results: &[AttemptResult]) -> Result<u64, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut statements = 0;
    for chunk in results.chunks(rows::MAX_ROWS) {
        let j = format!("WITH {} ", values(&RESULT_COLUMNS, chunk.len()));
        for sql in [outcome_update(&j), attempts_insert(&j)] {
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut at = Binder::new(&mut stmt);
            for r in chunk {
                at.bind(&r.id)?
                    .bind(&r.seq)?
                    .bind(&r.status.as_str())?
                    .bind(&r.attempts)?
                    .bind(&r.next_attempt_at)?
                    .bind(&r.status_code)?
                    .bind(&r.latency_ms)?
                    .bind(&r.error)?
                    .bind(&r.response_body)?
                    .bind(&r.at)?
                    .bind(&r.attempted)?
                    .bind(&r.lease)?;
            }
            at.finish()?.raw_execute()?;
            statements += 1;
        }
    }
    tx.commit()?;
    Ok(statements)
}

impl Store {
    /// Records attempt outcomes through [`DirectWriter`], holding the sqlx writer as
    /// [`Store::write_direct`] does: the batch write and the outcomes, the hot path's writes, share
    /// this connection and its page cache.
    pub(super) async fn record_direct(
        &self,
        direct: &DirectWriter,
        results: &[AttemptResult],
    ) -> Result<u64, StoreError> {
        let writer = self.writer.acquire().await?;
        let recorded = off_the_executor(|| record(&mut direct.lock(), results));
        drop(writer);
        Ok(recorded?)
    }

    /// Writes a head batch through [`DirectWriter`] (the module's doc). Returns what
    /// `Store::write_head_batch` returns.
    pub(super) async fn write_direct(
        &self,
        direct: &DirectWriter,
        batch: HeadBatch<'_>,
        now: i64,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, WriteStats), StoreError> {
        let chain_id = batch.cursor.chain_id;
        let epoch = self.fence_epoch(chain_id);
        // The write lock: the sqlx writer stays idle while this connection writes.
        let writer = self.writer.acquire().await?;
        let written = off_the_executor(|| direct.write(&batch, epoch, now, lease_ms));
        drop(writer);
        let (inserted, owned) = written?;
        let mut stats = WriteStats {
            lease_until: now + lease_ms,
            ..WriteStats::default()
        };
        // Counted as the sqlx path counts them: the fence check, then one statement per table.
        stats.statements += u64::from(epoch.is_some());
        if !owned {
            stats.fenced.push(chain_id);
            return Ok((inserted, stats));
        }
        stats.statements += u64::from(!batch.deliveries.is_empty())
            + u64::from(!inserted.is_empty())
            + u64::from(!batch.blocks.is_empty())
            + 1;
        Ok((inserted, stats))
    }
}

/// Runs `f`, which blocks its thread: in `block_in_place` on a multi-thread runtime (its other
/// tasks move to another worker meanwhile), inline otherwise.
fn off_the_executor<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
