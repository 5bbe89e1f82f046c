//! The durable reorg window (`chain_blocks`): each block ingest applies near the head is stored
//! by the batch write that carries it (one statement for the batch's blocks, in the transaction
//! of their deliveries), so any block a cursor can name is stored; on start the window is rebuilt
//! by walking parent hashes back from the cursor's block (orphaned rows are ignored, and pruned by
//! height later).

use std::borrow::Cow;
use std::collections::HashMap;

use super::outbox::{Tx, WriteStats};
use super::outbox_rows::cursor_upsert;
use super::rows::{self, Col, MAX_ROWS, Rows};
use super::{ChainBlock, Cursor, Store, StoreError};

/// The columns of the blocks' `VALUES` list, in the order [`bind_block`] binds them.
pub(super) const BLOCK_COLUMNS: [(&str, Col); 6] = [
    ("chain_id", Col::BigInt),
    ("block_hash", Col::Text),
    ("block_number", Col::BigInt),
    ("parent_hash", Col::Text),
    ("logs", Col::Text),
    ("logs_lz4", Col::Bytes),
];

/// One stored block: its header links and the matched logs it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    pub number: i64,
    pub hash: String,
    pub parent_hash: String,
    pub logs: StoredLogs,
}

/// A stored block's matched logs: a JSON array of the node's log objects, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredLogs {
    /// LZ4-compressed, its length first (column `logs_lz4`): what the host writes — about a
    /// fifth of the text.
    Lz4(Vec<u8>),
    /// The text itself (column `logs`): rows written before migration 0014.
    Text(String),
}

/// The largest decompressed logs a stored row may claim: far above any block's matched logs,
/// and a bound on what a damaged row can make the host allocate.
const MAX_LOGS_TEXT: u64 = 1 << 30;

impl StoredLogs {
    /// The JSON array of `objects` (each one log object's text), compressed.
    pub fn of<'a>(objects: impl Iterator<Item = &'a str> + Clone) -> StoredLogs {
        StoredLogs::of_array(&json_array(objects))
    }

    /// A JSON array of log objects, compressed as it is.
    pub fn of_array(array: &str) -> StoredLogs {
        StoredLogs::Lz4(lz4_flex::compress_prepend_size(array.as_bytes()))
    }

    /// The JSON array's text (borrowed from a text row); `None` when a compressed row cannot
    /// be read.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            StoredLogs::Text(text) => Some(Cow::Borrowed(text)),
            StoredLogs::Lz4(bytes) => decompress(bytes).map(Cow::Owned),
        }
    }

    /// The bytes the row holds (what a batch's memory budget counts).
    pub fn len(&self) -> usize {
        match self {
            StoredLogs::Lz4(bytes) => bytes.len(),
            StoredLogs::Text(text) => text.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row's `logs` and `logs_lz4` columns.
    pub(super) fn columns(&self) -> (&str, Option<&[u8]>) {
        match self {
            StoredLogs::Lz4(bytes) => ("", Some(bytes)),
            StoredLogs::Text(text) => (text, None),
        }
    }

    fn from_columns(logs: String, logs_lz4: Option<Vec<u8>>) -> StoredLogs {
        match logs_lz4 {
            Some(bytes) => StoredLogs::Lz4(bytes),
            None => StoredLogs::Text(logs),
        }
    }
}

impl From<&str> for StoredLogs {
    fn from(text: &str) -> StoredLogs {
        StoredLogs::Text(text.to_string())
    }
}

fn json_array<'a>(objects: impl Iterator<Item = &'a str> + Clone) -> String {
    let mut text = String::with_capacity(2 + objects.clone().map(|o| o.len() + 1).sum::<usize>());
    text.push('[');
    for (i, object) in objects.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(object);
    }
    text.push(']');
    text
}

/// The text of an LZ4 row; `None` when it is damaged or claims an absurd size.
fn decompress(bytes: &[u8]) -> Option<String> {
    let size: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    if u64::from(u32::from_le_bytes(size)) > MAX_LOGS_TEXT {
        return None;
    }
    let text = lz4_flex::decompress_size_prepended(bytes).ok()?;
    String::from_utf8(text).ok()
}

/// A `chain_blocks` row as read.
#[derive(sqlx::FromRow)]
struct BlockRow {
    block_number: i64,
    block_hash: String,
    parent_hash: String,
    logs: String,
    logs_lz4: Option<Vec<u8>>,
}

impl From<BlockRow> for StoredBlock {
    fn from(row: BlockRow) -> StoredBlock {
        StoredBlock {
            number: row.block_number,
            hash: row.block_hash,
            parent_hash: row.parent_hash,
            logs: StoredLogs::from_columns(row.logs, row.logs_lz4),
        }
    }
}

/// One row per block, the last copy of each: an upsert may not touch the same row twice in one
/// statement.
pub(super) fn unique_blocks<'b>(blocks: &[&'b ChainBlock]) -> Vec<&'b ChainBlock> {
    let mut last: HashMap<(i64, &str), &ChainBlock> = HashMap::with_capacity(blocks.len());
    for block in blocks {
        last.insert((block.chain_id, block.block.hash.as_str()), block);
    }
    last.into_values().collect()
}

/// The upsert of the blocks of `VALUES` list `source` ([`BLOCK_COLUMNS`]) when `condition` (SQL)
/// holds: a block stored again has its logs replaced.
pub(super) fn block_upsert(source: &str, condition: &str) -> String {
    format!(
        "INSERT INTO chain_blocks (chain_id, block_hash, block_number, parent_hash, logs, logs_lz4) \
         SELECT {source}.chain_id, {source}.block_hash, {source}.block_number, \
         {source}.parent_hash, {source}.logs, {source}.logs_lz4 FROM {source} \
         WHERE {source}.block_hash IS NOT NULL AND {condition} \
         ON CONFLICT (chain_id, block_hash) DO UPDATE SET \
         block_number = excluded.block_number, parent_hash = excluded.parent_hash, \
         logs = excluded.logs, logs_lz4 = excluded.logs_lz4"
    )
}

/// Binds one block's row of [`BLOCK_COLUMNS`].
pub(super) fn bind_block<'q>(rows: Rows<'q>, b: &'q ChainBlock) -> Rows<'q> {
    let (logs, logs_lz4) = b.block.logs.columns();
    rows.bind(b.chain_id)
        .bind(b.block.hash.as_str())
        .bind(b.block.number)
        .bind(b.block.parent_hash.as_str())
        .bind(logs)
        .bind(logs_lz4)
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
        let (logs, logs_lz4) = block.logs.columns();
        sqlx::query(
            "INSERT INTO chain_blocks (chain_id, block_hash, block_number, parent_hash, logs, logs_lz4) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain_id, block_hash) DO UPDATE SET \
             block_number = excluded.block_number, parent_hash = excluded.parent_hash, \
             logs = excluded.logs, logs_lz4 = excluded.logs_lz4",
        )
        .bind(chain_id as i64)
        .bind(&block.hash)
        .bind(block.number)
        .bind(&block.parent_hash)
        .bind(logs)
        .bind(logs_lz4)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The batch write's step for the stored reorg window: its blocks' rows, one statement (per
    /// [`MAX_ROWS`]). A block stored again (applied twice, as a reorg back and forth can) has its
    /// logs replaced; within one write the last copy of a block wins. `cursor` (PostgreSQL only,
    /// see `Store::cursor_to_fold`) is written by the first statement too; returns whether it was.
    pub(super) async fn write_chain_blocks(
        &self,
        tx: &mut Tx<'_>,
        blocks: &[&ChainBlock],
        cursor: Option<(&Cursor, i64)>,
        stats: &mut WriteStats,
    ) -> Result<bool, StoreError> {
        let unique = unique_blocks(blocks);
        let mut wrote_cursor = false;
        for chunk in unique.chunks(MAX_ROWS) {
            // The cursor rides with the first statement, as a data-modifying `WITH` on PostgreSQL.
            let cursor = cursor.filter(|_| !wrote_cursor);
            let upsert = block_upsert("j", "true");
            let next_param = rows::parameters(&BLOCK_COLUMNS, chunk.len()) + 1;
            let mut query = Rows::new(
                self.dialect,
                &BLOCK_COLUMNS,
                chunk.len(),
                |j| match cursor {
                    None => format!("{j} {upsert}"),
                    Some(_) => format!("{j}, blocks AS ({upsert}) {}", cursor_upsert(next_param)),
                },
            );
            for b in chunk {
                query = bind_block(query, b);
            }
            let mut query = query.finish();
            if let Some((cursor, now)) = cursor {
                query = query
                    .bind(cursor.chain_id)
                    .bind(cursor.block_number)
                    .bind(cursor.block_hash.as_str())
                    .bind(now);
                wrote_cursor = true;
            }
            query.execute(&mut **tx).await?;
            stats.statements += 1;
        }
        Ok(wrote_cursor)
    }

    /// The stored blocks of `chain_id` from `from` to `to` (heights, inclusive), every branch.
    pub async fn chain_blocks(
        &self,
        chain_id: u64,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        let rows: Vec<BlockRow> = sqlx::query_as(
            "SELECT block_number, block_hash, parent_hash, logs, logs_lz4 FROM chain_blocks \
             WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3",
        )
        .bind(chain_id as i64)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StoredBlock::from).collect())
    }

    /// The header links (height, hash, parent hash) of the stored blocks of `chain_id` from
    /// `from` to `to`, every branch, without their logs: for walking a branch.
    pub async fn chain_block_links(
        &self,
        chain_id: u64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT block_number, block_hash, parent_hash FROM chain_blocks \
             WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3",
        )
        .bind(chain_id as i64)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The stored matched logs of one block of `chain_id`, by hash.
    pub async fn chain_block_logs(
        &self,
        chain_id: u64,
        hash: &str,
    ) -> Result<Option<StoredLogs>, StoreError> {
        let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT logs, logs_lz4 FROM chain_blocks WHERE chain_id = $1 AND block_hash = $2",
        )
        .bind(chain_id as i64)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(logs, logs_lz4)| StoredLogs::from_columns(logs, logs_lz4)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_logs_read_back_as_the_json_array_they_were_made_from() {
        let objects: Vec<String> = (0..500)
            .map(|i| format!(r#"{{"logIndex":"{i:#x}","data":"0x{}"}}"#, "00".repeat(32)))
            .collect();
        let logs = StoredLogs::of(objects.iter().map(String::as_str));
        let text = json_array(objects.iter().map(String::as_str));
        assert!(matches!(logs, StoredLogs::Lz4(_)));
        assert!(
            logs.len() * 4 < text.len(),
            "{} of {}",
            logs.len(),
            text.len()
        );
        assert_eq!(logs.text().as_deref(), Some(text.as_str()));
        assert_eq!(
            StoredLogs::of(std::iter::empty()).text().as_deref(),
            Some("[]")
        );
    }

    #[test]
    fn a_damaged_compressed_row_reads_as_unreadable() {
        assert!(StoredLogs::Lz4(b"[not lz4]".to_vec()).text().is_none());
        assert!(StoredLogs::Lz4(Vec::new()).text().is_none());
        // A length far above any block's logs is refused before anything is allocated.
        assert_eq!(
            StoredLogs::Lz4(vec![0xff, 0xff, 0xff, 0x7f, 0]).text(),
            None
        );
    }
}
