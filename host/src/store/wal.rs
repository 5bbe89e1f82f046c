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

use sqlx::{AnyConnection, Executor};

use super::{Dialect, Store, StoreError};

/// Log frames (one page, ~4 KiB, each) above which the checkpointer restarts the log: ~64 MiB.
pub const WAL_RESTART_FRAMES: i64 = 16_384;

/// What SQLite keeps of the log file when it restarts it (`PRAGMA journal_size_limit`, bytes).
pub const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// How long a restarting checkpoint waits for readers and the writer (ms). Short, because the
/// writer waits behind it; a checkpoint that cannot restart now tries again 100 ms later.
const RESTART_BUSY_TIMEOUT_MS: u32 = 250;

/// The busy timeout every SQLite connection normally has (ms).
pub(super) const BUSY_TIMEOUT_MS: u32 = 5_000;

impl Store {
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
        if passive.log_frames < restart_frames {
            return Ok(passive.complete());
        }
        conn.execute(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {RESTART_BUSY_TIMEOUT_MS}"
        )))
        .await?;
        let restart = wal_checkpoint(&mut conn, "RESTART").await;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"
        )))
        .await?;
        Ok(restart?.complete())
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
