//! The rows a batch write adds for `{max_events, max_wait_ms}` subscriptions — new batch
//! deliveries, their bodies, and one `batch_events` row per event — and their inserts, bound as
//! `VALUES` ([`super::rows`]): passing them as one JSON parameter cost the SQLite writer a parse
//! of every event twice (by serde into a string, by SQLite back out of it), with each body
//! escaped inside that string.

use std::sync::Arc;

use super::outbox_rows::{bodies_of_new, new_ids_and_seqs};
use super::rows::{Col, MAX_ROWS, Rows};
use super::{BatchEvent, DeliveryStatus, HELD_UNTIL_RELEASED, SealedBatch, Store, StoreError};
use crate::modes::batching::{self, Element, Fill};

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// A batch delivery created by this write: filling, or (opened and sealed here) whole.
pub(super) struct NewBatch<'a> {
    id: String,
    first: &'a BatchEvent,
    block_number: i64,
    /// Filling: the blocks it will wait beyond the chain's confirmations; sealed: its release block.
    release_block: Option<i64>,
    status: DeliveryStatus,
    due: i64,
    /// Sealed and sent from memory: leased to this process until then.
    lease_until: i64,
    body: Arc<str>,
}

/// One event's row: its key, its batch and place, and its element (empty when nothing will
/// read it back: its batch was sealed in the same write).
pub(super) struct NewEvent<'a> {
    event: &'a BatchEvent,
    delivery_id: String,
    position: i64,
    whole: bool,
}

/// Everything one write adds.
#[derive(Default)]
pub(super) struct FillRows<'a> {
    pub batches: Vec<NewBatch<'a>>,
    pub events: Vec<NewEvent<'a>>,
}

impl<'a> FillRows<'a> {
    /// The rows one fill adds: the batch's own row (and body) when it is new, and one row per
    /// event. A batch opened and sealed in this write is inserted whole (`pending`, its body
    /// built here), and its event rows keep only their keys: nothing reads their elements back.
    pub fn add(&mut self, fill: &Fill, events: &[&'a BatchEvent], now: i64, lease_ms: i64) {
        let Some(first) = fill.events.first().map(|&i| events[i]) else {
            return;
        };
        let whole = fill.is_new && fill.sealed;
        if fill.is_new {
            self.batches
                .push(new_batch(fill, events, first, now, lease_ms));
        }
        for (offset, &index) in fill.events.iter().enumerate() {
            self.events.push(NewEvent {
                event: events[index],
                delivery_id: fill.id.clone(),
                position: i64::from(fill.first_position) + offset as i64,
                whole,
            });
        }
    }
}

fn new_batch<'a>(
    fill: &Fill,
    events: &[&'a BatchEvent],
    first: &'a BatchEvent,
    now: i64,
    lease_ms: i64,
) -> NewBatch<'a> {
    let chain = u64::try_from(first.chain_id).unwrap_or(0);
    let prefix =
        batching::body_prefix(&fill.id, &first.subscription_id, chain, first.confirmations);
    if !fill.sealed {
        return NewBatch {
            id: fill.id.clone(),
            first,
            block_number: first.block_number,
            release_block: Some(first.extra_confirmations),
            status: DeliveryStatus::Filling,
            due: batching::seal_deadline(fill.opened_at, first.max_wait_ms),
            lease_until: 0,
            body: Arc::from(prefix),
        };
    }
    let elements: Vec<&Element> = fill.events.iter().map(|&i| &events[i].element).collect();
    let last_block = fill
        .events
        .iter()
        .map(|&i| events[i].block_number)
        .max()
        .unwrap_or(0);
    let ordered = first.ordering_key.is_some();
    let sealed = Sealed::at(
        first.extra_confirmations,
        last_block,
        ordered,
        now,
        Some(lease_ms),
    );
    NewBatch {
        id: fill.id.clone(),
        first,
        block_number: last_block,
        release_block: sealed.release_block,
        status: DeliveryStatus::Pending,
        due: sealed.next_attempt_at,
        lease_until: sealed.lease_until,
        body: Arc::from(batching::body(&prefix, &elements)),
    }
}

/// A sealed batch's schedule: its row's `next_attempt_at`, `lease_until` and `release_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sealed {
    pub next_attempt_at: i64,
    pub lease_until: i64,
    pub release_block: Option<i64>,
}

impl Sealed {
    /// The schedule of a batch sealed at `now` whose last event is in `last_block`. Held until
    /// that block has the `extra` confirmations the subscription wants beyond the chain's, else
    /// due at once. A batch sealed by a batch write (`lease_ms` given) that is due at once and not
    /// ordered is leased to this process instead, as a new single-event delivery is: the outbox
    /// sends it from memory, and the poller takes it only if the lease runs out first. Ordered
    /// batches are the poller's (sent when they head their key), and so are those the sealer
    /// seals (no `lease_ms`).
    pub fn at(
        extra: i64,
        last_block: i64,
        ordered: bool,
        now: i64,
        lease_ms: Option<i64>,
    ) -> Sealed {
        match (extra, lease_ms) {
            (0, Some(lease_ms)) if !ordered => Sealed {
                next_attempt_at: now + lease_ms,
                lease_until: now + lease_ms,
                release_block: None,
            },
            (0, _) => Sealed {
                next_attempt_at: now,
                lease_until: 0,
                release_block: None,
            },
            (extra, _) => Sealed {
                next_attempt_at: HELD_UNTIL_RELEASED,
                lease_until: 0,
                release_block: Some(last_block.saturating_add(extra)),
            },
        }
    }

    /// Whether the outbox sends the batch from memory.
    pub fn goes_from_memory(&self) -> bool {
        self.lease_until > 0
    }
}

const BATCH_COLUMNS: [(&str, Col); 12] = [
    ("id", Col::Text),
    ("subscription_id", Col::Text),
    ("endpoint_id", Col::Text),
    ("chain_id", Col::BigInt),
    ("event_type", Col::Text),
    ("block_number", Col::BigInt),
    ("release_block", Col::BigInt),
    ("status", Col::Text),
    ("due", Col::BigInt),
    ("lease_until", Col::BigInt),
    ("at", Col::BigInt),
    ("ordering_key", Col::Text),
];

const EVENT_COLUMNS: [(&str, Col); 6] = [
    ("subscription_id", Col::Text),
    ("block_number", Col::BigInt),
    ("event_id", Col::Text),
    ("delivery_id", Col::Text),
    ("position", Col::BigInt),
    ("element", Col::Text),
];

impl Store {
    /// Inserts the new batches and their bodies (a replayed batch, already stored, gets
    /// neither). Returns the statements issued, and the new batches sealed whole that the outbox
    /// sends from memory ([`Sealed::goes_from_memory`]).
    pub(super) async fn insert_new_batches(
        &self,
        tx: &mut Tx<'_>,
        batches: &[NewBatch<'_>],
        now: i64,
    ) -> Result<(u64, Vec<SealedBatch>), StoreError> {
        let mut statements = 0;
        let mut to_send = Vec::new();
        for chunk in batches.chunks(MAX_ROWS) {
            let mut query = Rows::new(self.dialect, &BATCH_COLUMNS, chunk.len(), |j| {
                format!(
                    "{j} INSERT INTO deliveries (id, subscription_id, endpoint_id, chain_id, \
                     event_type, block_number, release_block, status, attempts, next_attempt_at, \
                     lease_until, created_at, updated_at, ordering_key) \
                     SELECT j.id, j.subscription_id, j.endpoint_id, j.chain_id, j.event_type, \
                     j.block_number, j.release_block, j.status, 0, j.due, j.lease_until, j.at, j.at, \
                     j.ordering_key FROM j WHERE j.id IS NOT NULL \
                     ON CONFLICT (id) DO NOTHING RETURNING id, seq"
                )
            });
            for b in chunk {
                query = query
                    .bind(b.id.as_str())
                    .bind(b.first.subscription_id.as_str())
                    .bind(b.first.endpoint_id.as_str())
                    .bind(b.first.chain_id)
                    .bind(b.first.event_type.as_str())
                    .bind(b.block_number)
                    .bind(b.release_block)
                    .bind(b.status.as_str())
                    .bind(b.due)
                    .bind(b.lease_until)
                    .bind(now)
                    .bind(b.first.ordering_key.as_deref());
            }
            let new = new_ids_and_seqs(&query.finish().fetch_all(&mut **tx).await?)?;
            statements += 1;
            let bodies = bodies_of_new(&new, chunk.iter().map(|b| (b.id.as_str(), &*b.body)));
            statements += self.insert_bodies(tx, &bodies).await?;
            to_send.extend(sent_from_memory(chunk, &new));
        }
        Ok((statements, to_send))
    }

    /// Inserts the events' rows; one already stored is left as it is. Returns the statements.
    pub(super) async fn insert_batch_events(
        &self,
        tx: &mut Tx<'_>,
        events: &[NewEvent<'_>],
    ) -> Result<u64, StoreError> {
        let mut statements = 0;
        for chunk in events.chunks(MAX_ROWS) {
            let mut query = Rows::new(self.dialect, &EVENT_COLUMNS, chunk.len(), |j| {
                format!(
                    "{j} INSERT INTO batch_events (subscription_id, block_number, event_id, \
                     delivery_id, position, element) \
                     SELECT j.subscription_id, j.block_number, j.event_id, j.delivery_id, \
                     j.position, j.element FROM j WHERE j.event_id IS NOT NULL \
                     ON CONFLICT (subscription_id, block_number, event_id) DO NOTHING"
                )
            });
            for e in chunk {
                let element = if e.whole {
                    String::new()
                } else {
                    e.event.element.text()
                };
                query = query
                    .bind(e.event.subscription_id.as_str())
                    .bind(e.event.block_number)
                    .bind(e.event.event_id.as_str())
                    .bind(e.delivery_id.as_str())
                    .bind(e.position)
                    .bind(element);
            }
            query.finish().execute(&mut **tx).await?;
            statements += 1;
        }
        Ok(statements)
    }
}

/// The batches of `chunk` that the insert returned as new (`new`) and that go from memory.
fn sent_from_memory(chunk: &[NewBatch<'_>], new: &[super::InsertedDelivery]) -> Vec<SealedBatch> {
    let by_id: std::collections::HashMap<&str, i64> =
        new.iter().map(|d| (d.id.as_str(), d.seq)).collect();
    chunk
        .iter()
        .filter(|b| b.lease_until > 0)
        .filter_map(|b| {
            by_id.get(b.id.as_str()).map(|&seq| SealedBatch {
                id: b.id.clone(),
                seq,
                endpoint_id: b.first.endpoint_id.clone(),
                body: Arc::clone(&b.body),
            })
        })
        .collect()
}
