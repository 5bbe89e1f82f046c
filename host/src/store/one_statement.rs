//! The commonest batch write, on PostgreSQL, as one statement outside any explicit transaction:
//! the fence check, the deliveries with their bodies, the reorg window's blocks and the cursor,
//! each a part of one `WITH`. PostgreSQL runs a statement sent on its own as its own transaction,
//! so this is one round trip where the general write (`outbox.rs`) takes six: `BEGIN`, the fence,
//! deliveries, bodies, blocks with the cursor, `COMMIT`. Near the head every batch has this shape
//! (one block of one chain, its deliveries, nothing else), and each round trip cost 250–360 µs at
//! 1K events/s, six of them plus the commit's `fdatasync` were the 3.9 ms write (BENCHMARKS.md,
//! "Session of 2026-12-05 (eighth)").
//!
//! What the statement keeps of the general write:
//! - **Atomic:** one statement is one transaction: all of it or nothing.
//! - **Fenced:** the chain's epoch row is read `FOR SHARE` first and every write part is
//!   conditional on it, so a replica that lost the chain writes nothing, and a takeover waits for
//!   this statement's commit, as it waits for the general write's.
//! - **Replays:** a delivery id already stored is skipped and not returned; its body is not
//!   written again (bodies join the rows the insert returned).
//!
//! Not taken (the general write runs instead): SQLite (there a statement costs no round trip to a
//! server, and it cannot write two tables), several chains or none, deliveries or blocks of another
//! chain than the cursor's, a release of held deliveries, cancellations (`supersedes`), count
//! batches, parked events and their resolutions, subscription status changes, or more than
//! [`MAX_ROWS`] deliveries or blocks.
//!
//! No `GENERIC_PLANS` here: that setting is for a transaction. This statement's parts reach
//! stored rows only through the conflict targets' indexes and the epoch's primary key, and the
//! one join is between the statement's own lists (hashed, the planner's default).

use sqlx::Row;

use super::outbox::{DELIVERY_COLUMNS, WriteStats, bind_delivery, delivery_insert};
use super::rows::{self, Col, MAX_ROWS, Rows};
use super::window::{BLOCK_COLUMNS, bind_block, block_upsert, unique_blocks};
use super::{
    ChainBlock, Cursor, Dialect, InsertedDelivery, NewDelivery, OutboxWrite, Store, StoreError,
    now_ms,
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

/// A write [`Store::write_in_one_statement`] can take: its one cursor, deliveries and blocks.
pub(super) struct OneStatement<'w> {
    cursor: &'w Cursor,
    deliveries: Vec<&'w NewDelivery>,
    blocks: Vec<&'w ChainBlock>,
}

impl Store {
    /// `write` as [`OneStatement`], if it has that shape (see the module's doc).
    pub(super) fn one_statement<'w>(&self, write: &'w OutboxWrite) -> Option<OneStatement<'w>> {
        let [cursor] = write.cursors.as_slice() else {
            return None;
        };
        let chain = cursor.chain_id;
        let simple = self.dialect == Dialect::Postgres
            && write.parked.is_empty()
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
        let blocks = unique_blocks(&write.chain_blocks.iter().collect::<Vec<_>>());
        (blocks.len() <= MAX_ROWS).then(|| OneStatement {
            cursor,
            deliveries: write.deliveries.iter().collect(),
            blocks,
        })
    }

    /// Writes `batch` in one statement (the module's doc). Returns what [`Store::write_batch`]
    /// returns: the new deliveries, and the chain in `fenced` when its epoch moved on.
    pub(super) async fn write_in_one_statement(
        &self,
        batch: OneStatement<'_>,
        lease_ms: i64,
    ) -> Result<(Vec<InsertedDelivery>, WriteStats), StoreError> {
        let now = now_ms();
        let OneStatement {
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
            sealed: 0,
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
