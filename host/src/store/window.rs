//! The durable reorg window (`chain_blocks`): each block ingest applies near the head is stored
//! by the batch write that carries it (one statement for the batch's blocks, in the transaction
//! of their deliveries), so any block a cursor can name is stored; on start the window is rebuilt
//! by walking parent hashes back from the cursor's block (orphaned rows are ignored, and pruned by
//! height later).

use std::collections::HashMap;

use super::outbox::{Tx, WriteStats};
use super::rows::{Col, MAX_ROWS, Rows};
use super::{ChainBlock, Store, StoreError};

const BLOCK_COLUMNS: [(&str, Col); 5] = [
    ("chain_id", Col::BigInt),
    ("block_hash", Col::Text),
    ("block_number", Col::BigInt),
    ("parent_hash", Col::Text),
    ("logs", Col::Text),
];

/// One stored block: its header links and the matched logs it carried (a JSON array of the
/// node's log objects).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredBlock {
    #[sqlx(rename = "block_number")]
    pub number: i64,
    #[sqlx(rename = "block_hash")]
    pub hash: String,
    pub parent_hash: String,
    pub logs: String,
}

impl Store {
    /// Stores a block of `chain_id` on its own (again: the logs are replaced). Production stores
    /// blocks through the batch write (`write_chain_blocks`); tests seed the window with this.
    #[cfg(test)]
    pub async fn put_chain_block(
        &self,
        chain_id: u64,
        block: &StoredBlock,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chain_blocks (chain_id, block_hash, block_number, parent_hash, logs) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain_id, block_hash) DO UPDATE SET \
             block_number = excluded.block_number, parent_hash = excluded.parent_hash, logs = excluded.logs",
        )
        .bind(chain_id as i64)
        .bind(&block.hash)
        .bind(block.number)
        .bind(&block.parent_hash)
        .bind(&block.logs)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The batch write's step for the stored reorg window: its blocks' rows, one statement (per
    /// [`MAX_ROWS`]). A block stored again (applied twice, as a reorg back and forth can) has its
    /// logs replaced; within one write the last copy of a block wins.
    pub(super) async fn write_chain_blocks(
        &self,
        tx: &mut Tx<'_>,
        blocks: &[&ChainBlock],
        stats: &mut WriteStats,
    ) -> Result<(), StoreError> {
        // One row per block: an upsert may not touch the same row twice in one statement.
        let mut last: HashMap<(i64, &str), &ChainBlock> = HashMap::with_capacity(blocks.len());
        for block in blocks {
            last.insert((block.chain_id, block.block.hash.as_str()), block);
        }
        let unique: Vec<&ChainBlock> = last.into_values().collect();
        for chunk in unique.chunks(MAX_ROWS) {
            let mut query = Rows::new(self.dialect, &BLOCK_COLUMNS, chunk.len(), |j| {
                format!(
                    "{j} INSERT INTO chain_blocks (chain_id, block_hash, block_number, parent_hash, logs) \
                     SELECT j.chain_id, j.block_hash, j.block_number, j.parent_hash, j.logs FROM j \
                     WHERE j.block_hash IS NOT NULL ON CONFLICT (chain_id, block_hash) DO UPDATE SET \
                     block_number = excluded.block_number, parent_hash = excluded.parent_hash, \
                     logs = excluded.logs"
                )
            });
            for b in chunk {
                query = query
                    .bind(b.chain_id)
                    .bind(b.block.hash.as_str())
                    .bind(b.block.number)
                    .bind(b.block.parent_hash.as_str())
                    .bind(b.block.logs.as_str());
            }
            query.finish().execute(&mut **tx).await?;
            stats.statements += 1;
        }
        Ok(())
    }

    /// The stored blocks of `chain_id` from `from` to `to` (heights, inclusive), every branch.
    pub async fn chain_blocks(
        &self,
        chain_id: u64,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT block_number, block_hash, parent_hash, logs FROM chain_blocks \
             WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3",
        )
        .bind(chain_id as i64)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The stored matched logs (a JSON array) of one block of `chain_id`, by hash.
    pub async fn chain_block_logs(
        &self,
        chain_id: u64,
        hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT logs FROM chain_blocks WHERE chain_id = $1 AND block_hash = $2")
                .bind(chain_id as i64)
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(logs,)| logs))
    }

    /// Deletes the stored blocks of `chain_id` below height `below`; returns how many.
    pub async fn prune_chain_blocks(&self, chain_id: u64, below: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM chain_blocks WHERE chain_id = $1 AND block_number < $2")
                .bind(chain_id as i64)
                .bind(below)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }
}
