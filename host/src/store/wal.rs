//! SQLite's write-ahead log, kept bounded.
//!
//! The hot path's writer never checkpoints (`wal_autocheckpoint = 0`): the host's checkpointer
//! (`app.rs`) calls [`Store::checkpoint`] every 500 ms instead. A `PASSIVE` checkpoint copies the
//! log back without blocking anyone, but SQLite only *restarts* the log (writes from its beginning
//! again) when no reader is using it, and with the admin API, the poller and the claims reading
//! all the time that moment may never come: measured at ~950 events/s, the log grew from 645 MiB
//! to 9.7 GiB in 10 minutes (BENCHMARKS.md, database size over time). So once the log passes
//! [`WAL_RESTART_FRAMES`], the checkpointer asks for a `RESTART` with a short busy timeout: the
//! writer waits for the few milliseconds the readers in flight need, new readers read the file,
//! and the next write starts the log over; `journal_size_limit` then truncates the file.
//!
//! After a complete checkpoint the checkpointer also makes that next write itself
//! ([`start_log_over`]), so the sync of the restarted log's header is not in a hot-path commit.

use sqlx::{AnyConnection, Executor};

use super::{Dialect, Store, StoreError};

/// Log frames (one page, ~4 KiB, each) above which the checkpointer restarts the log: ~64 MiB.
pub const WAL_RESTART_FRAMES: i64 = 16_384;

/// What SQLite keeps of the log file when it restarts it (`PRAGMA journal_size_limit`, bytes).
pub const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// How long a restarting checkpoint waits for readers and the writer (ms). Short, because the
/// writer waits behind it; a checkpoint that cannot restart now tries again 100 ms later.
const RESTART_BUSY_TIMEOUT_MS: u32 = 250;

/// Frames of the log that [`start_log_over`] writes: the database header's page.
const OWN_RESTART_FRAMES: i64 = 1;

/// The busy timeout every SQLite connection normally has (ms).
pub(super) const BUSY_TIMEOUT_MS: u32 = 5_000;

impl Store {
    /// On SQLite, returns once the hot path's writer is not inside a transaction: at once when
    /// its connection is idle, else as soon as the connection goes back to its pool, and after
    /// `at_most` in any case. At once on PostgreSQL.
    ///
    /// The checkpointer calls this first: just after a transaction has ended is when the next one
    /// is furthest away, so the checkpoint's own copying and syncing, and the one-page write of
    /// [`start_log_over`] (which the writer would have to wait for), least often meet the hot
    /// path. (On its own it did not remove the slow commit of every fifth block at 1K events/s:
    /// that was the log's restart, BENCHMARKS.md "Session of 2026-12-05 (sixth)".)
    pub async fn writer_idle(&self, at_most: std::time::Duration) {
        if self.dialect != Dialect::Sqlite {
            return;
        }
        let released = self.writer_released.notified();
        tokio::pin!(released);
        // Registered before looking, so a release between the look and the wait is not missed.
        released.as_mut().enable();
        if self.writer.num_idle() > 0 {
            return;
        }
        let _ = tokio::time::timeout(at_most, released).await;
    }

    /// On SQLite, copies the write-ahead log back into the database file. Below
    /// [`WAL_RESTART_FRAMES`] without blocking anyone (`PASSIVE`); above, it also restarts the log
    /// (`RESTART`, waiting at most 250 ms). Returns whether the log was copied completely.
    /// No-op on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<bool, StoreError> {
        self.checkpoint_above(WAL_RESTART_FRAMES).await
    }

    pub(super) async fn checkpoint_above(&self, restart_frames: i64) -> Result<bool, StoreError> {
        if self.dialect != Dialect::Sqlite {
            return Ok(true);
        }
        let mut conn = self.pool.acquire().await?;
        let passive = wal_checkpoint(&mut conn, "PASSIVE").await?;
        let done = if passive.log_frames < restart_frames {
            passive
        } else {
            with_busy_timeout(&mut conn, RESTART_BUSY_TIMEOUT_MS, async |conn| {
                wal_checkpoint(conn, "RESTART").await
            })
            .await?
        };
        // One frame is this checkpointer's own previous `start_log_over` (a host with nothing
        // to write): starting the log over again would be a write and a sync every round, forever.
        if done.complete() && done.log_frames > OWN_RESTART_FRAMES {
            start_log_over(&mut conn).await?;
        }
        Ok(done.complete())
    }
}

/// Runs `work` on `conn` with SQLite's busy timeout set to `timeout_ms`, then puts the usual one
/// back (also when `work` failed).
async fn with_busy_timeout<T>(
    conn: &mut AnyConnection,
    timeout_ms: u32,
    work: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {timeout_ms}"
    )))
    .await?;
    let result = work(&mut *conn).await;
    conn.execute(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"
    )))
    .await?;
    result
}

/// After a complete checkpoint, the next write starts the log over from its beginning, and
/// SQLite syncs the log's new header inside that write's commit (so that no later frame can reach
/// the disk before it). The checkpointer makes that write itself — the database header's
/// `user_version`, set to the value it already has: one page — so the sync is its own and not in
/// the hot path's next commit, where it made every fifth block's commit 0.5–1.5 ms slower at 1K
/// events/s (BENCHMARKS.md, "Session of 2026-12-05 (sixth)"). It never waits for the write lock
/// (busy timeout 0): when another connection holds it, that writer starts the log over, as before.
/// A batch write that begins during this write's ~1 ms waits for it; starting checkpoints between
/// the writer's transactions ([`Store::writer_idle`]) makes that rare. When the log holds nothing
/// but this write's frame at the next checkpoint (no write for 500 ms), that checkpoint copies it
/// and writes nothing, so an idle host does not write and sync twice a second; the next write then
/// starts the log over itself and pays for the sync, as before: the gain is for hosts that write at
/// least every 500 ms.
async fn start_log_over(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    let written = with_busy_timeout(conn, 0, async |conn| {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "PRAGMA user_version = {version}"
        )))
        .await
        .map_err(StoreError::from)
    })
    .await;
    match written {
        Err(StoreError::Database(sqlx::Error::Database(e))) if e.message().contains("locked") => {
            Ok(())
        }
        other => other.map(drop),
    }
}

/// One row of `PRAGMA wal_checkpoint`.
struct CheckpointResult {
    /// Whether the checkpoint could not run to completion (readers or the writer in the way).
    busy: bool,
    log_frames: i64,
    copied_frames: i64,
}

impl CheckpointResult {
    fn complete(&self) -> bool {
        !self.busy && self.copied_frames >= self.log_frames
    }
}

async fn wal_checkpoint(
    conn: &mut AnyConnection,
    mode: &'static str,
) -> Result<CheckpointResult, StoreError> {
    let (busy, log_frames, copied_frames): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(
        format!("PRAGMA wal_checkpoint({mode})"),
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok(CheckpointResult {
        busy: busy != 0,
        log_frames,
        copied_frames,
    })
}
