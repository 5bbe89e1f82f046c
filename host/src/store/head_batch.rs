//! The commonest batch write, a head batch: one block of one chain, its deliveries and its
//! cursor, nothing else. Near the head every batch has this shape, and at 1K events/s its write is
//! on every webhook's path. It is written with fewer trips than the general write (`outbox.rs`)
//! takes, with the same rows and the same fencing:
//!
//! - **PostgreSQL: one statement** sent on its own, which PostgreSQL makes its own transaction: the
//!   fence check, the deliveries with their bodies, the reorg window's block rows and the cursor,
//!   each a part of one `WITH`. One round trip where the general write takes six (`BEGIN` with its
//!   settings, the fence, deliveries, bodies, blocks with the cursor, `COMMIT`).
//! - **SQLite: one transaction on a connection of its own, without sqlx** (`direct.rs`): the fence
//!   check, then the deliveries, bodies, block rows and cursor, one statement per table, run from
//!   the task's own thread. Through sqlx each call is a round trip to the connection's thread
//!   (~0.1 ms on an idle machine, BENCHMARKS.md "Session of 2026-12-05 (ninth)"), and the general
//!   write makes five. A database in memory has no second connection (`DirectWriter::open`): its
//!   batches take the general write.
//!
//! What both keep of the general write:
//! - **Atomic:** all of it or nothing (one statement; one transaction).
//! - **Fenced:** the chain's epoch row is read (`FOR SHARE` on PostgreSQL) and every write is
//!   conditional on it, so a replica that lost the chain writes nothing, and on PostgreSQL a
//!   takeover waits for this write's commit, as it waits for the general write's.
//! - **Replays:** a delivery id already stored is skipped and not returned; its body is not
//!   written again (bodies are written for the rows the insert returned).
//!
//! Not taken (the general write runs instead): several chains or none, deliveries or blocks of
//! another chain than the cursor's, other than one block (catch-up batches carry many), a release
//! of held deliveries, cancellations (`supersedes`), count batches, parked events and their
//! resolutions, subscription status changes, or more than [`MAX_ROWS`] deliveries.
//!
//! No `GENERIC_PLANS` on PostgreSQL: that setting is for a transaction. The statement's parts
//! reach stored rows only through the conflict targets' indexes and the epoch's primary key, and
//! its one join is between the statement's own lists (hashed, the planner's default).

use sqlx::Row;

use super::outbox::WriteStats;
use super::outbox_rows::{DELIVERY_COLUMNS, bind_delivery, delivery_insert};
use super::rows::{self, Col, MAX_ROWS, Rows};
use super::window::{BLOCK_COLUMNS, bind_block, block_upsert, unique_blocks};
use super::{
    ChainBlock, Cursor, Dialect, InsertedDelivery, NewDelivery, OutboxWrite, Store, StoreError,
};

/// [`DELIVERY_COLUMNS`] and the body: the bodies' insert reads them from the same list.
const DELIVERY_COLUMNS_WITH_BODY: [(&str, Col); 12] = with_body(DELIVERY_COLUMNS);

const fn with_body(columns: [(&'static str, Col); 11]) -> [(&'static str, Col); 12] {
    let mut all = [("body", Col::Text); 12];
    let mut i = 0;
    while i < columns.len() {
        all[i] = columns[i];
        i += 1;
    }
    all
}

/// A head batch (the module's doc): its one cursor, deliveries and blocks.
pub(super) struct HeadBatch<'w> {
    pub(super) cursor: &'w Cursor,
    pub(super) deliveries: Vec<&'w NewDelivery>,
    pub(super) blocks: Vec<&'w ChainBlock>,
}

impl Store {
    /// `write` as a [`HeadBatch`], if it has that shape (see the module's doc).
    pub(super) fn head_batch<'w>(&self, write: &'w OutboxWrite) -> Option<HeadBatch<'w>> {
        if self.dialect == Dialect::Sqlite && self.direct.is_none() {
            return None;
        }
        let [cursor] = write.cursors.as_slice() else {
            return None;
        };
        let chain = cursor.chain_id;
        let simple = write.parked.is_empty()
            && write.status_changes.is_empty()
            && write.release_chains.is_empty()
            && write.resolved_parked.is_empty()
            && write.batch_events.is_empty()
            && write.deliveries.len() <= MAX_ROWS
            && write
                .deliveries
                .iter()
                .all(|d| d.chain_id == chain && d.supersedes.is_empty())
            && write.chain_blocks.iter().all(|b| b.chain_id == chain);
        if !simple {
            return None;
        }
        // One block: a batch at the head. Catch-up batches carry many blocks (and on PostgreSQL
        // each size of this statement is planned anew on each connection: few sizes, few plans).
        // Told by the hashes alone, so a catch-up batch is turned away before any rows are built.
        let first = write.chain_blocks.first()?;
        let one_block = write
            .chain_blocks
            .iter()
            .all(|b| b.block.hash == first.block.hash);
        one_block.then(|| HeadBatch {
            cursor,
            deliveries: write.deliveries.iter().collect(),
            blocks: unique_blocks(&write.chain_blocks.iter().collect::<Vec<_>>()),
        })
    }

    /// Writes `batch` (the module's doc). Returns what [`Store::write_batch`] returns: the new
    /// deliveries, and the chain in `fenced` when its epoch moved on.
    pub(super) async fn write_head_batch(
        &self,
        batch: HeadBatch<'_>,
        now: i64,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, WriteStats), StoreError> {
        // Only SQLite has a direct writer, and without one `head_batch` offers none on SQLite.
        match &self.direct {
            Some(direct) => self.write_direct(direct, batch, now, lease_ms).await,
            None => self.write_in_one_statement(batch, now, lease_ms).await,
        }
    }

    /// PostgreSQL: one statement ([`statement`]).
    async fn write_in_one_statement(
        &self,
        batch: HeadBatch<'_>,
        now: i64,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, WriteStats), StoreError> {
        let HeadBatch {
            cursor,
            deliveries,
            blocks,
        } = batch;
        let mut query = Rows::of_statement(
            statement(deliveries.len(), blocks.len()),
            &DELIVERY_COLUMNS_WITH_BODY,
            deliveries.len(),
        );
        for d in &deliveries {
            query = bind_delivery(query, d, now, lease_ms).bind(d.body.as_str());
        }
        query = query.then_values(&BLOCK_COLUMNS, blocks.len());
        for b in &blocks {
            query = bind_block(query, b);
        }
        let rows = query
            .finish()
            .bind(cursor.chain_id)
            .bind(self.fence_epoch(cursor.chain_id))
            .bind(cursor.block_number)
            .bind(cursor.block_hash.as_str())
            .bind(now)
            .fetch_all(&self.writer)
            .await?;
        let owned = match rows.first() {
            Some(row) => row.try_get::<i64, _>("owned")? > 0,
            None => false,
        };
        let mut inserted = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(id) = row.try_get::<Option<String>, _>("id")? {
                inserted.push(InsertedDelivery {
                    id,
                    seq: row.try_get("seq")?,
                });
            }
        }
        let stats = WriteStats {
            statements: 1,
            lease_until: now + lease_ms,
            fenced: if owned { vec![] } else { vec![cursor.chain_id] },
            ..WriteStats::default()
        };
        Ok((inserted, stats))
    }
}

/// The statement for `deliveries` and `blocks` rows. Its parameters: the two `VALUES` lists, then
/// the chain id, the epoch this process took (NULL: it never locked the chain, not fenced), the
/// cursor's block number and hash, and the time.
///
/// `owned` has one row when the chain is still this process's and none when it is fenced; every
/// write part reads it. The result has at least one row, so the fence's answer arrives even when
/// nothing was inserted: `owned` (1 or 0) on each, with each new delivery's `id, seq` (NULL on the
/// one row of a write that inserted none).
fn statement(deliveries: usize, blocks: usize) -> String {
    let dialect = Dialect::Postgres;
    let first_block = rows::parameters(&DELIVERY_COLUMNS_WITH_BODY, deliveries) + 1;
    let p = first_block + rows::parameters(&BLOCK_COLUMNS, blocks);
    let [chain, epoch, number, hash, now] = [p, p + 1, p + 2, p + 3, p + 4];
    let owned = "EXISTS (SELECT 1 FROM owned)";
    format!(
        "WITH {deliveries_list}, {blocks_list}, \
         fence AS (SELECT epoch FROM chain_owners WHERE chain_id = ${chain} AND epoch = ${epoch} \
         FOR SHARE), \
         owned AS (SELECT 1 AS one WHERE ${epoch}::bigint IS NULL OR EXISTS (SELECT 1 FROM fence)), \
         ins AS ({insert}), \
         bodies AS (INSERT INTO delivery_bodies (seq, body) SELECT ins.seq, j.body FROM ins \
         JOIN j ON j.id = ins.id ON CONFLICT (seq) DO NOTHING), \
         blocks AS ({upsert}), \
         moved AS (INSERT INTO chain_cursors (chain_id, block_number, block_hash, updated_at) \
         SELECT ${chain}, ${number}, ${hash}, ${now} WHERE {owned} \
         ON CONFLICT (chain_id) DO UPDATE SET block_number = excluded.block_number, \
         block_hash = excluded.block_hash, updated_at = excluded.updated_at) \
         SELECT (SELECT count(*) FROM owned) AS owned, ins.id, ins.seq \
         FROM (SELECT 1) AS one LEFT JOIN ins ON true",
        deliveries_list = rows::values(dialect, "j", &DELIVERY_COLUMNS_WITH_BODY, deliveries, 1),
        blocks_list = rows::values(dialect, "k", &BLOCK_COLUMNS, blocks, first_block),
        insert = delivery_insert(owned),
        upsert = block_upsert("k", owned),
    )
}
