//! Durable state on SQLite (embedded default) or PostgreSQL, through `sqlx::AnyPool`s (on SQLite a
//! separate one-connection pool for the hot path's writes, and a rusqlite connection for the
//! hottest of them, `direct.rs`). The only module that contains SQL.
//! Statements are shared where the dialects agree; batch writes pass their rows as bound
//! parameters (`rows.rs`) or, off the hot path, as one JSON parameter, so a batch costs one
//! statement per table (per 512 rows).

mod backlog;
mod batch_rows;
mod batches;
mod canary;
mod deliveries;
mod direct;
mod fence;
mod head_batch;
mod held;
mod lock;
pub mod models;
mod ordering;
mod outbox;
mod outbox_rows;
mod pages;
mod parked;
mod patch;
mod pending_seq;
mod resources;
mod retention;
mod rows;
mod secrets;
mod states;
mod tokens;
mod wal;
mod window;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, AssertSqlSafe, Executor};

pub use backlog::Backlog;
pub use canary::{CanaryExample, CanaryRow, CanaryTally, MAX_CANARY_EXAMPLES};
pub use held::HeldChanges;
pub use lock::ChainLock;
pub use models::*;
pub use ordering::{BlockedKey, MAX_BLOCKED_KEYS};
pub use outbox::WriteStats;
pub use pages::{EndpointAttempt, SubscriptionFilter};
pub use pending_seq::{PendingSeq, SeqPromise, pending_seqs};
pub use retention::{Cutoffs, Pruned};
pub use rows::MAX_ROWS as MAX_ROWS_PER_STATEMENT;
pub use secrets::{SecretError, SecretKeys};
pub use states::{DeliveryStatus, EndpointStatus, SubscriptionStatus, UnknownState};
pub use tokens::{LiveToken, TokenRow};
pub use window::{StoredBlock, StoredLogs};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// From the head batch's write on SQLite, which goes through rusqlite (`direct.rs`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot encode rows for the database: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    UnknownState(#[from] UnknownState),
    #[error("delivery {0} has no body row")]
    MissingBody(i64),
    /// A stored value this build cannot read (a column the writers validate, changed behind
    /// their back): an error, never a default in its place.
    #[error("stored {what} cannot be read: {reason}")]
    Unreadable { what: &'static str, reason: String },
}

impl From<sqlx::Error> for StoreError {
    /// A status column's unknown value is its own error (the state enums' `Decode` fails with
    /// [`UnknownState`] as the source), whichever row reader met it.
    fn from(error: sqlx::Error) -> StoreError {
        match error {
            sqlx::Error::ColumnDecode { index, source } => {
                match source.downcast::<UnknownState>() {
                    Ok(unknown) => StoreError::UnknownState(*unknown),
                    Err(source) => {
                        StoreError::Database(sqlx::Error::ColumnDecode { index, source })
                    }
                }
            }
            other => StoreError::Database(other),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The hot path's writes (batch writes, attempt outcomes, claims). On SQLite one connection:
    /// writers never wait in SQLite's busy handler (which sleeps in steps of milliseconds), and
    /// its page cache stays warm, where every commit from another connection would empty it. On
    /// PostgreSQL a pool of its own of [`POSTGRES_WRITER_CONNECTIONS`].
    writer: AnyPool,
    dialect: Dialect,
    /// The epoch this process took per chain it locked (`fence.rs`).
    fences: fence::Fences,
    /// Endpoint secrets are sealed under these on write and opened on read (`secrets.rs`).
    secrets: SecretKeys,
    /// Woken whenever the SQLite writer's connection goes back to its pool (its transaction has
    /// ended): the checkpointer starts there rather than beside a commit (`wal.rs`).
    writer_released: Arc<tokio::sync::Notify>,
    /// On SQLite with a file, the head batch's write without sqlx (`direct.rs`).
    direct: Option<direct::DirectWriter>,
}

/// Connections of PostgreSQL's writer pool. The hot path's many-row statements have up to
/// 512 × 12 parameters, and sqlx keeps, per connection, each prepared statement with its text and
/// one type per parameter (a few hundred KB for the largest shapes; `rows.rs` pads to 7 sizes per
/// statement). Spread over the 16 connections of the shared pool, those copies were ~16 MB of the
/// host's heap at a 10K events/s peak (heaptrack: `PgConnection::get_or_prepare` and the statement
/// cache, the largest holders at the peak; BENCHMARKS.md "Session of 2026-12-03 (sixth)"). The
/// hot path's writers (batch write, outcomes, claims, the sealer) are a few tasks, each writing
/// one transaction at a time, so four connections serve them.
const POSTGRES_WRITER_CONNECTIONS: u32 = 4;

/// SQLite page cache of the writer connection (KiB): the deliveries table's recent pages and its
/// indexes, which every batch write and every recorded outcome touch. 4 MiB, down from 8: with
/// rows appended by `seq` the hot pages are few, and the cache filled to its bound within seconds
/// at 5K events/s — peak anonymous memory 26.4–27.1 → 21.3–23.0 MB with host CPU per webhook
/// unchanged (113–133 against 121–132 µs); at 10K, on a machine in a slow stretch, each size fell
/// behind in some runs (4 MiB 1 of 4, 8 MiB 3 of 4; BENCHMARKS.md, "Session of 2026-12-03 (fifth)").
const SQLITE_WRITER_CACHE_KIB: u32 = 4 * 1024;

/// Where the writer's temporary data lives: `MEMORY`. Every many-row statement of the hot path
/// (the batch insert, the outcome update) runs inside a transaction and may abort on a
/// constraint, so SQLite keeps a *statement journal* of the pages it changes, to undo just that
/// statement. Past 64 KiB that journal spilled into a temporary file: at 20K events/s, 5.5 % of
/// the host's CPU went to `pwrite`s of statement journals (`perf`, BENCHMARKS.md "Session of
/// 2026-12-03 (second)"). In memory it costs the pages one statement changes, freed when the
/// statement ends.
const SQLITE_WRITER_TEMP_STORE: &str = "MEMORY";

/// SQLite page cache of each pooled connection (KiB). They only read (admin API, registry,
/// backlog, held-delivery reconciling; the hot path writes through the writer), and the file's
/// pages stay in the OS page cache, so a miss costs a `pread`, not a disk read. SQLite's default
/// (2,000 KiB) let the 4 connections hold up to ~8 MB between them as they read the deliveries
/// table; 512 KiB bounds them to 2 MB.
const SQLITE_READER_CACHE_KIB: u32 = 512;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens the pool (creating an SQLite file and its directory when needed). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let url = match dialect {
            Dialect::Sqlite => prepare_sqlite_url(url)?,
            Dialect::Postgres => url.to_string(),
        };
        // A statement that hangs (a half-open socket, a lock held by someone else) fails after
        // this instead of stalling ingest or delivery: the caller retries on a fresh connection.
        let session = match dialect {
            Dialect::Postgres => POSTGRES_SESSION_LIMITS.to_string(),
            Dialect::Sqlite => format!("PRAGMA cache_size = -{SQLITE_READER_CACHE_KIB};"),
        };
        let pool = pool_options(dialect, &session)
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 16,
            })
            .connect(&url)
            .await?;
        let writer_released = Arc::new(tokio::sync::Notify::new());
        let writer = match dialect {
            Dialect::Postgres => {
                pool_options(dialect, &session)
                    .max_connections(POSTGRES_WRITER_CONNECTIONS)
                    .connect(&url)
                    .await?
            }
            // Checkpoints are the checkpointer's (`checkpoint`), not the committing writer's: an
            // automatic checkpoint inside a commit copies and syncs megabytes on the hot path.
            // Statement journals in memory (`temp_store = MEMORY`): see [`SQLITE_WRITER_TEMP_STORE`].
            Dialect::Sqlite => {
                let pragmas = format!(
                    "PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB}; \
                     PRAGMA temp_store = {SQLITE_WRITER_TEMP_STORE};"
                );
                let released = writer_released.clone();
                pool_options(dialect, &pragmas)
                    .max_connections(1)
                    .after_release(move |_conn, _meta| {
                        released.notify_waiters();
                        Box::pin(async { Ok(true) })
                    })
                    .connect(&url)
                    .await?
            }
        };
        let direct = match dialect {
            Dialect::Sqlite => direct::DirectWriter::open(&url)?,
            Dialect::Postgres => None,
        };
        Ok(Store {
            pool,
            writer,
            direct,
            dialect,
            fences: Default::default(),
            secrets: SecretKeys::default(),
            writer_released,
        })
    }

    /// This store with endpoint secrets encrypted under `keys` (none: stored as given).
    pub fn with_secret_keys(mut self, keys: SecretKeys) -> Store {
        self.secrets = keys;
        self
    }

    /// Begins a transaction that will write, on `pool` (the writer or the pool). On SQLite it
    /// takes the write lock at once (`BEGIN IMMEDIATE`), waiting for it under the busy timeout.
    /// A deferred transaction that reads first and asks for the lock at its first write gets
    /// `SQLITE_BUSY` at once, without waiting, whenever another connection holds the lock — the
    /// checkpointer restarting the log (`wal.rs`), the writer for an admin change: at 20K
    /// events/s the batch write failed that way 5–8 times per 10 s run, each a 100 ms retry
    /// (BENCHMARKS.md, "Session of 2026-12-03 (third)"). PostgreSQL locks rows, not the
    /// database: a plain `BEGIN`.
    pub(super) async fn begin_write(
        &self,
        pool: &AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.dialect {
            Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => pool.begin().await?,
        })
    }

    /// [`Store::begin_write`], and on PostgreSQL `postgres_settings` (one statement without
    /// parameters, e.g. `SELECT set_config(…, true)` for this transaction only) sent with the
    /// `BEGIN` as one simple query: one round trip instead of two before a hot-path write.
    ///
    /// The settings come first: PostgreSQL runs them in the query's implicit transaction, which
    /// the `BEGIN` after them turns into the explicit one (they are "retroactively included",
    /// protocol docs, "Multiple Statements in a Simple Query"), so they hold until it ends. Should
    /// they fail, the implicit transaction ends with them and the `BEGIN` never runs: the
    /// connection goes back to the pool idle, not inside an aborted transaction.
    pub(super) async fn begin_write_with(
        &self,
        pool: &AnyPool,
        postgres_settings: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.dialect {
            Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => {
                pool.begin_with(AssertSqlSafe(format!("{postgres_settings}; BEGIN")))
                    .await?
            }
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies the embedded migrations for this dialect.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => {
                sqlx::migrate!("../migrations/sqlite")
                    .run(&self.pool)
                    .await?
            }
            Dialect::Postgres => {
                sqlx::migrate!("../migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    pub async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The row source for a JSON array passed as parameter `$param`, aliased `j` with `columns`
    /// (name, SQL type). Lets one statement insert or update any number of rows.
    fn json_rows(&self, param: u32, columns: &[(&str, &str)]) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                let fields: Vec<String> = columns
                    .iter()
                    .map(|(name, _)| format!("json_extract(value, '$.{name}') AS {name}"))
                    .collect();
                format!(
                    "(SELECT {} FROM json_each(${param})) AS j",
                    fields.join(", ")
                )
            }
            Dialect::Postgres => {
                let fields: Vec<String> = columns
                    .iter()
                    .map(|(name, ty)| format!("{name} {ty}"))
                    .collect();
                format!(
                    "jsonb_to_recordset(${param}::text::jsonb) AS j({})",
                    fields.join(", ")
                )
            }
        }
    }
}

/// Every PostgreSQL session: no statement runs longer than 30 s, no transaction idles longer than
/// 60 s, no lock is waited for longer than 10 s. And no JIT compilation: every statement here is a
/// short indexed one, but when the planner's estimates are off (a large table not analysed yet)
/// PostgreSQL's default `jit = on` spent ~0.7 s compiling a query that then ran in 0.1 ms
/// (measured: the ordered-keys gauge during a 10K events/s run; BENCHMARKS.md).
pub const POSTGRES_SESSION_LIMITS: &str = "SET statement_timeout = '30s'; \
     SET idle_in_transaction_session_timeout = '60s'; SET lock_timeout = '10s'; SET jit = off";

/// A pooled connection idle at least this long is pinged before it is handed out, and replaced
/// if it does not answer. sqlx's default pings on every acquire: one more round trip before each
/// transaction of the hot path (with the ping sqlx also sends on every release, 3.5 % of the
/// host's samples at 1K events/s on PostgreSQL; BENCHMARKS.md, "Session of 2026-12-04 (fourth)").
/// A connection used more recently answered that release ping; if it has died since (the server
/// restarted within that second), its statement fails once — the hot path's writers retry, an
/// admin request answers with an error — and sqlx drops the broken connection. The ping is bounded
/// by the pool's acquire timeout, as sqlx's own was.
pub(crate) const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Pool options with the per-connection settings of `dialect`, plus `extra` SQL run on connect.
fn pool_options(dialect: Dialect, extra: &str) -> AnyPoolOptions {
    let extra = extra.to_string();
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _meta| {
            let extra = extra.clone();
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    // WAL lets readers (admin API) run beside the writer; NORMAL is durable in WAL.
                    // journal_size_limit: what a restarted log keeps of its file (`wal.rs`).
                    conn.execute(AssertSqlSafe(format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; \
                         PRAGMA journal_size_limit = {};",
                        wal::BUSY_TIMEOUT_MS,
                        wal::WAL_SIZE_LIMIT_BYTES
                    )))
                    .await?;
                }
                if !extra.is_empty() {
                    conn.execute(AssertSqlSafe(extra)).await?;
                }
                Ok(())
            })
        })
}

/// Ensures the SQLite file can be created: its directory exists and `mode=rwc` is set.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if !path.is_empty()
        && path != ":memory:"
        && let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

#[cfg(test)]
pub(crate) mod tests;
