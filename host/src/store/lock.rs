//! Chain ownership across replicas: on PostgreSQL a session-level advisory lock per chain, held on
//! a dedicated connection for as long as the replica ingests that chain; when the replica dies its
//! session ends and another replica takes over. SQLite has one process per file: always granted.

use sqlx::AnyConnection;
use sqlx::pool::PoolConnection;

use super::{Dialect, Store, StoreError};

/// Namespaces the advisory lock keys so they do not collide with other users of the database.
/// A lock check or release that takes longer means the session is as good as gone.
const LOCK_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const LOCK_NAMESPACE: i64 = 0x5049_5045_0000_0000; // "PIPE"

/// Held while this replica owns a chain. Dropping it closes the connection, which releases the lock.
pub struct ChainLock {
    // A mutex only so the lock is `Sync` (the connection is not); it is never contended.
    connection: Option<tokio::sync::Mutex<PoolConnection<sqlx::Any>>>,
    key: i64,
}

impl ChainLock {
    /// Whether the lock is still held (its connection answers within `LOCK_CALL_TIMEOUT`; a
    /// half-open socket counts as lost, so ingest stops rather than hangs).
    pub async fn is_held(&mut self) -> bool {
        match &mut self.connection {
            None => true,
            Some(conn) => {
                let check = sqlx::query("SELECT 1").execute(&mut **conn.get_mut());
                matches!(
                    tokio::time::timeout(LOCK_CALL_TIMEOUT, check).await,
                    Ok(Ok(_))
                )
            }
        }
    }

    /// Gives the chain up now (on shutdown), so another replica need not wait for the session to end.
    pub async fn release(mut self) {
        if let Some(conn) = &mut self.connection {
            let unlock = sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.key);
            if let Err(error) =
                tokio::time::timeout(LOCK_CALL_TIMEOUT, unlock.execute(&mut **conn.get_mut()))
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)
                    .and_then(|r| r)
            {
                tracing::warn!(%error, "releasing the chain lock failed; it ends with the connection");
            }
        }
    }
}

impl Drop for ChainLock {
    fn drop(&mut self) {
        // Never return a connection holding a session lock to the pool: close it instead.
        if let Some(conn) = self.connection.take() {
            let raw: AnyConnection = conn.into_inner().detach();
            drop(raw);
        }
    }
}

impl Store {
    /// Takes ownership of `chain_id` if no other replica holds it, and a new epoch for it: from
    /// then on the previous owner cannot write the chain's cursor (`fence.rs`).
    pub async fn try_lock_chain(&self, chain_id: u64) -> Result<Option<ChainLock>, StoreError> {
        if self.dialect == Dialect::Sqlite {
            self.take_epoch(chain_id as i64).await?;
            return Ok(Some(ChainLock {
                connection: None,
                key: 0,
            }));
        }
        let mut conn = self.pool.acquire().await?;
        let key = LOCK_NAMESPACE ^ (chain_id as i64 & 0xffff_ffff);
        let attempt = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn);
        let (granted,): (bool,) = tokio::time::timeout(LOCK_CALL_TIMEOUT, attempt)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        if !granted {
            return Ok(None);
        }
        let lock = ChainLock {
            connection: Some(tokio::sync::Mutex::new(conn)),
            key,
        };
        // Fences the previous owner's queued cursor writes; on failure the lock is dropped (its
        // connection closed), so the chain is not owned without an epoch.
        self.take_epoch(chain_id as i64).await?;
        Ok(Some(lock))
    }
}
