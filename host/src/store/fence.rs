//! Fencing tokens for chain cursors. Taking a chain's lock bumps the chain's epoch in
//! `chain_owners`; this process remembers the epoch it took, and a batch's cursor for that chain is
//! written only while the stored epoch is still that one. A replica that lost the chain (its
//! session ended and another replica took over) can then no longer move the new owner's cursor,
//! whatever it still has queued: the write is refused for that chain, and counted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Cursor, Dialect, Store, StoreError, now_ms};

/// The epoch this process took per chain (chain id → epoch). Shared by a `Store`'s clones.
#[derive(Debug, Default, Clone)]
pub(super) struct Fences(Arc<Mutex<HashMap<i64, i64>>>);

impl Fences {
    fn map(&self) -> MutexGuard<'_, HashMap<i64, i64>> {
        // The map is only ever inserted into and read: a panic elsewhere cannot leave it torn.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, chain_id: i64) -> Option<i64> {
        self.map().get(&chain_id).copied()
    }
}

impl Store {
    /// Makes this process the chain's newest owner: bumps the chain's epoch and remembers it.
    /// Called right after the chain lock is granted, before the cursor is read.
    pub(super) async fn take_epoch(&self, chain_id: i64) -> Result<i64, StoreError> {
        let (epoch,): (i64,) = sqlx::query_as(
            "INSERT INTO chain_owners (chain_id, epoch, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (chain_id) DO UPDATE SET epoch = chain_owners.epoch + 1, \
             updated_at = excluded.updated_at RETURNING epoch",
        )
        .bind(chain_id)
        .bind(now_ms())
        .fetch_one(&self.writer)
        .await?;
        self.fences.map().insert(chain_id, epoch);
        Ok(epoch)
    }

    /// The epoch this process took for `chain_id`, if it locked the chain.
    pub(super) fn fence_epoch(&self, chain_id: i64) -> Option<i64> {
        self.fences.get(chain_id)
    }

    /// The chains among `cursors` whose epoch moved on since this process took it: their cursor
    /// must not be written. A chain this process never locked (tools, tests) is not fenced.
    ///
    /// On PostgreSQL the epoch row is share-locked to the end of the transaction, so a takeover
    /// (which updates it) waits for this write to commit and then reads the cursor it wrote, or
    /// commits first and this check sees the new epoch.
    pub(super) async fn fenced_chains(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        cursors: &[Cursor],
    ) -> Result<(HashSet<i64>, u64), StoreError> {
        // Dialect-specific: SQLite has no row locks (one writer connection, one process per file).
        let sql = match self.dialect {
            Dialect::Postgres => {
                "SELECT epoch FROM chain_owners WHERE chain_id = $1 AND epoch = $2 FOR SHARE"
            }
            Dialect::Sqlite => "SELECT epoch FROM chain_owners WHERE chain_id = $1 AND epoch = $2",
        };
        let mut fenced = HashSet::new();
        let mut statements = 0;
        for cursor in cursors {
            let Some(epoch) = self.fences.get(cursor.chain_id) else {
                continue;
            };
            let current: Option<(i64,)> = sqlx::query_as(sql)
                .bind(cursor.chain_id)
                .bind(epoch)
                .fetch_optional(&mut **tx)
                .await?;
            statements += 1;
            if current.is_none() {
                fenced.insert(cursor.chain_id);
            }
        }
        Ok((fenced, statements))
    }
}
