//! Rows as the rest of the host sees them. Times are Unix milliseconds. Rows read from the
//! database are read by column name (`sqlx::FromRow`), so a statement's column order is free.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::pending_seq::PendingSeq;
use super::states::{DeliveryStatus, EndpointStatus, SubscriptionStatus};
use crate::modes::batching::Element;

pub use crate::modes::ModeColumns;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PluginRow {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub created_at: i64,
}

/// Read as stored, secrets sealed: the store opens them (`Store::opened`) before any caller sees
/// the row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub description: String,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub previous_secret: Option<String>,
    #[serde(skip)]
    pub previous_secret_expires_at: Option<i64>,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl EndpointRow {
    /// Secrets that sign right now: the current one, plus the previous one during its grace period.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(expires)) =
            (&self.previous_secret, self.previous_secret_expires_at)
            && expires > now_ms
        {
            secrets.push(previous);
        }
        secrets
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionRow {
    pub id: String,
    pub endpoint_id: String,
    pub chain_id: i64,
    /// JSON array of addresses, or `None` for any.
    pub addresses: Option<String>,
    /// JSON positional topic filter, or `None` for any.
    pub topics: Option<String>,
    pub plugin_id: Option<String>,
    /// JSON config passed to `pipeline_init`.
    pub plugin_config: Option<String>,
    pub confirmations: i64,
    pub status: SubscriptionStatus,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Batching and ordering (`modes`), as stored.
    pub mode: ModeColumns,
}

/// By column name; the mode columns are `modes`' own type, which knows nothing of rows.
impl sqlx::FromRow<'_, AnyRow> for SubscriptionRow {
    fn from_row(r: &AnyRow) -> Result<SubscriptionRow, sqlx::Error> {
        Ok(SubscriptionRow {
            id: r.try_get("id")?,
            endpoint_id: r.try_get("endpoint_id")?,
            chain_id: r.try_get("chain_id")?,
            addresses: r.try_get("addresses")?,
            topics: r.try_get("topics")?,
            plugin_id: r.try_get("plugin_id")?,
            plugin_config: r.try_get("plugin_config")?,
            confirmations: r.try_get("confirmations")?,
            status: r.try_get("status")?,
            last_error: r.try_get("last_error")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            mode: ModeColumns {
                batch: r.try_get("batch")?,
                ordering: r.try_get("ordering")?,
                ordering_key: r.try_get("ordering_key")?,
                on_dead: r.try_get("on_dead")?,
            },
        })
    }
}

/// The columns an admin PATCH of a subscription changes; `None` leaves a column as the store
/// holds it (the matcher may have changed `status` and `last_error` since the PATCH read the row).
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub addresses: Option<Option<String>>,
    pub topics: Option<Option<String>>,
    /// `plugin_id` and `plugin_config`, always written together.
    pub plugin: Option<(Option<String>, Option<String>)>,
    pub confirmations: Option<i64>,
    pub status: Option<SubscriptionStatus>,
    pub last_error: Option<Option<String>>,
    /// Batching and ordering, written together.
    pub mode: Option<ModeColumns>,
    pub updated_at: i64,
}

/// A delivery the outbox creates.
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery {
    pub id: String,
    pub subscription_id: String,
    pub endpoint_id: String,
    pub chain_id: i64,
    pub event_type: String,
    pub block_number: i64,
    pub body: String,
    /// Held until the chain's cursor reaches this block (the subscription wants more
    /// confirmations than the chain is ingested with); `None` = deliver now.
    pub release_block: Option<i64>,
    /// For a `log.removed` of a held delivery: the held delivery's id, in every form it may have
    /// been stored with (an older version wrote ids in another form, `matcher::delivery`); empty
    /// otherwise. If that delivery is still held it is cancelled instead, and this one is not
    /// sent either.
    pub supersedes: Vec<String>,
    /// The ordering key of an ordered subscription's delivery (`None`: unordered). An ordered
    /// delivery is never sent from memory: it waits, due, until it is the first undelivered one
    /// of its key, and the poller claims it then.
    pub ordering_key: Option<String>,
}

impl NewDelivery {
    pub fn is_held(&self) -> bool {
        self.release_block.is_some()
    }
}

/// `next_attempt_at` of a held delivery: never due until released (the last millisecond of 9999,
/// so it still formats as a date).
pub const HELD_UNTIL_RELEASED: i64 = 253_402_300_799_000;

/// An event a failing plugin held back.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ParkedEvent {
    pub subscription_id: String,
    pub chain_id: i64,
    pub event_type: String,
    /// The JSON-RPC log object.
    pub log: String,
    pub error: String,
    pub event_index: Option<i64>,
    /// What makes parking idempotent ([`ParkedEvent::key`]): a batch replayed after a crash (its
    /// cursor not yet written, a slow plugin call still out) parks the same events again, and
    /// `parked_events (subscription_id, event_key)` is unique. `None` (no position known) is
    /// never merged.
    pub event_key: Option<String>,
}

impl ParkedEvent {
    /// The key of a parked event: its type and the log's position (block hash, log index as
    /// the node writes it, `0x`-hex).
    pub fn key(event_type: &str, block_hash: impl std::fmt::Display, log_index: u64) -> String {
        format!("{event_type}:{block_hash}:{log_index:#x}")
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ParkedRow {
    pub seq: i64,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub event: ParkedEvent,
    pub created_at: i64,
}

/// A chain's durable position: the last block whose logs are all durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub chain_id: i64,
    pub block_number: i64,
    pub block_hash: String,
}

/// A subscription's state change decided by the matcher (quarantine and recovery).
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub subscription_id: String,
    pub status: SubscriptionStatus,
    pub last_error: Option<String>,
}

/// Everything one batch makes durable, in one transaction.
#[derive(Debug, Default)]
pub struct OutboxWrite {
    pub deliveries: Vec<NewDelivery>,
    pub parked: Vec<ParkedEvent>,
    pub cursors: Vec<Cursor>,
    pub status_changes: Vec<StatusChange>,
    /// Chains whose held deliveries up to the new cursor are released by this write.
    pub release_chains: Vec<u64>,
    /// Parked events (by `seq`) this write resolves (reprocessing): deleted with it.
    pub resolved_parked: Vec<i64>,
    /// Events of `{max_events, max_wait_ms}` subscriptions, in chain order: batched in the
    /// write (`store/batches.rs`).
    pub batch_events: Vec<BatchEvent>,
    /// Blocks of the stored reorg window (`chain_blocks`), from the batch these rows came from:
    /// in the same transaction as their deliveries, no later than the cursor that names them.
    pub chain_blocks: Vec<ChainBlock>,
}

/// One block of a chain's stored reorg window.
#[derive(Debug, Clone)]
pub struct ChainBlock {
    pub chain_id: i64,
    pub block: super::StoredBlock,
}

/// One event of a subscription that batches by count: the write appends it to the
/// subscription's open batch or opens one.
#[derive(Debug, Clone)]
pub struct BatchEvent {
    pub subscription_id: String,
    pub endpoint_id: String,
    pub chain_id: i64,
    /// The event's own (single-event) delivery id: the key that keeps a replay from adding it twice.
    pub event_id: String,
    pub event_type: String,
    pub block_number: i64,
    /// The batch body element: `{"type","log","data"}`, as its parts.
    pub element: Element,
    pub max_events: u32,
    pub max_wait_ms: u32,
    /// The `confirmations` the body states.
    pub confirmations: u64,
    /// Blocks the batch waits beyond the chain's confirmations once sealed (0: none).
    pub extra_confirmations: i64,
    pub ordering_key: Option<String>,
}

/// A delivery a batch write inserted (not a replay of one already stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertedDelivery {
    pub id: String,
    /// Its row's key: outcomes are written back by it (see [`AttemptResult::seq`]).
    pub seq: i64,
}

/// A batch a write sealed that is due at once and in no order. Like a new single-event delivery
/// it is written leased to this process, and its body comes back with it, so that the outbox
/// sends it from memory rather than the poller reading the body back (three copies of up to a
/// block's events each: the database's, the driver's, the job's).
#[derive(Debug, Clone)]
pub struct SealedBatch {
    pub id: String,
    /// Its row's key, as [`InsertedDelivery::seq`].
    pub seq: i64,
    pub endpoint_id: String,
    pub body: std::sync::Arc<str>,
}

/// A delivery ready to attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: String,
    pub seq: i64,
    pub endpoint_id: String,
    pub body: String,
    pub attempts: i64,
    pub created_at: i64,
    /// The lease this claim holds, which is also its claim token (see [`AttemptResult::lease`]).
    pub lease_until: i64,
    /// It has an ordering key: its outcome may let the next delivery of the key go.
    pub ordered: bool,
}

/// The outcome of one attempt, written back in batches.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptResult {
    pub id: String,
    /// The delivery row's key. The outcome's update finds its row by it: recent rows sit
    /// together at the end of the table, where the hashed `id` index would be probed at random.
    pub seq: i64,
    /// Delivered, retrying or dead (pending or retrying when postponed without an attempt).
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub at: i64,
    /// False when nothing was sent (postponed, or dead without an attempt): no attempt is logged.
    pub attempted: bool,
    /// The `lease_until` of the claim the attempt was made under: the outcome changes the row
    /// only while the row still carries that lease. A claim that expired and was claimed again
    /// (a larger `lease_until`), or whose row was since recorded or retried by hand (0), is stale:
    /// its outcome is logged as an attempt but cannot overwrite the newer state.
    pub lease: i64,
    /// Of an ordered delivery: once recorded, the poller looks for the key's next one at once.
    #[serde(skip)]
    pub ordered: bool,
    /// Of a job sent before its batch's write committed (`[delivery] send_before_commit`):
    /// `seq` is not known yet; the recorder asks this for it before writing the outcome.
    #[serde(skip)]
    pub pending_seq: Option<PendingSeq>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    #[serde(skip)]
    pub seq: i64,
    pub subscription_id: String,
    pub endpoint_id: String,
    pub chain_id: i64,
    pub event_type: String,
    pub block_number: i64,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub created_at: i64,
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub subscription_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// Only rows with `seq` below this (pagination, newest first).
    pub before_seq: Option<i64>,
    /// Only rows created at or after this (Unix ms).
    pub created_from: Option<i64>,
    /// Only rows created before this (Unix ms).
    pub created_before: Option<i64>,
    pub limit: i64,
}
