//! The rows the batch write adds to `deliveries`, `delivery_bodies` and `chain_cursors`: their
//! columns, statements and bindings, shared by the general write (`outbox.rs`), the head batch's
//! (`head_batch.rs`), the reorg window's blocks (`window.rs`) and count batches (`batch_rows.rs`).

use std::collections::HashMap;

use sqlx::Row;

use super::rows::{Col, Rows};
use super::{DeliveryStatus, HELD_UNTIL_RELEASED, InsertedDelivery, NewDelivery};

/// The rows an `INSERT … RETURNING id, seq` returned.
pub(super) fn new_ids_and_seqs(
    rows: &[sqlx::any::AnyRow],
) -> Result<Vec<InsertedDelivery>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok(InsertedDelivery {
                id: r.try_get("id")?,
                seq: r.try_get("seq")?,
            })
        })
        .collect()
}

/// The `(seq, body)` rows for the deliveries an insert returned as new, their bodies looked up
/// by id among `bodies`; a replayed row (not returned) gets none.
pub(super) fn bodies_of_new<'b>(
    new: &[InsertedDelivery],
    bodies: impl Iterator<Item = (&'b str, &'b str)>,
) -> Vec<(i64, &'b str)> {
    let by_id: HashMap<&str, &str> = bodies.collect();
    new.iter()
        .filter_map(|d| by_id.get(d.id.as_str()).map(|body| (d.seq, *body)))
        .collect()
}

/// The columns of the deliveries' `VALUES` list `j`, in the order [`bind_delivery`] binds them.
pub(super) const DELIVERY_COLUMNS: [(&str, Col); 11] = [
    ("id", Col::Text),
    ("subscription_id", Col::Text),
    ("endpoint_id", Col::Text),
    ("chain_id", Col::BigInt),
    ("event_type", Col::Text),
    ("block_number", Col::BigInt),
    ("release_block", Col::BigInt),
    ("next_attempt_at", Col::BigInt),
    ("lease_until", Col::BigInt),
    ("at", Col::BigInt),
    ("ordering_key", Col::Text),
];

/// The insert of the deliveries of `VALUES` list `j` ([`DELIVERY_COLUMNS`]) when `condition`
/// (SQL) holds: ids already stored are skipped, and the new rows' `id, seq` returned.
pub(super) fn delivery_insert(condition: &str) -> String {
    format!(
        "INSERT INTO deliveries (id, subscription_id, endpoint_id, chain_id, event_type, block_number, \
         release_block, status, attempts, next_attempt_at, lease_until, created_at, updated_at, ordering_key) \
         SELECT j.id, j.subscription_id, j.endpoint_id, j.chain_id, j.event_type, j.block_number, \
         j.release_block, {pending}, 0, j.next_attempt_at, j.lease_until, j.at, j.at, j.ordering_key \
         FROM j WHERE j.id IS NOT NULL AND {condition} ON CONFLICT (id) DO NOTHING RETURNING id, seq",
        pending = DeliveryStatus::Pending.sql()
    )
}

/// Binds one delivery's row of [`DELIVERY_COLUMNS`].
pub(super) fn bind_delivery<'q>(
    rows: Rows<'q>,
    d: &'q NewDelivery,
    now: i64,
    lease_ms: i64,
) -> Rows<'q> {
    let (due, lease) = due_and_lease(d, now, lease_ms);
    rows.bind(d.id.as_str())
        .bind(d.subscription_id.as_str())
        .bind(d.endpoint_id.as_str())
        .bind(d.chain_id)
        .bind(d.event_type.as_str())
        .bind(d.block_number)
        .bind(d.release_block)
        .bind(due)
        .bind(lease)
        .bind(now)
        .bind(d.ordering_key.as_deref())
}

/// A new delivery's `next_attempt_at` and `lease_until`, written at `now`.
///
/// New rows are leased to this process: it sends them from memory right away, and the retry
/// poller must not pick them up unless this process dies first, so they are not due before the
/// lease ends (which also keeps them out of the poller's index range). Held rows wait, unleased,
/// for their release. Ordered rows are due at once and unleased: the poller claims each when it
/// is the first undelivered one of its key.
pub(super) fn due_and_lease(d: &NewDelivery, now: i64, lease_ms: i64) -> (i64, i64) {
    match (d.release_block, &d.ordering_key) {
        (Some(_), _) => (HELD_UNTIL_RELEASED, 0),
        (None, Some(_)) => (now, 0),
        (None, None) => (now + lease_ms, now + lease_ms),
    }
}

/// The upsert of one chain's cursor, its parameters (chain id, block number, block hash, time)
/// numbered from `first`.
pub(super) fn cursor_upsert(first: usize) -> String {
    let [a, b, c, d] = [first, first + 1, first + 2, first + 3];
    cursor_upsert_of(&format!("${a}, ${b}, ${c}, ${d}"))
}

/// [`cursor_upsert`] with SQLite's anonymous parameters, bound in order (for a statement among
/// others in one call, where `$N` would name the call's N-th parameter).
pub(super) fn cursor_upsert_anonymous() -> String {
    cursor_upsert_of("?, ?, ?, ?")
}

fn cursor_upsert_of(parameters: &str) -> String {
    format!(
        "INSERT INTO chain_cursors (chain_id, block_number, block_hash, updated_at) \
         VALUES ({parameters}) ON CONFLICT (chain_id) DO UPDATE SET \
         block_number = excluded.block_number, block_hash = excluded.block_hash, \
         updated_at = excluded.updated_at"
    )
}

/// The columns of the bodies' `VALUES` list `j`.
pub(super) const BODY_COLUMNS: [(&str, Col); 2] = [("seq", Col::BigInt), ("body", Col::Text)];

/// The insert of the bodies of `VALUES` list `j` ([`BODY_COLUMNS`]).
pub(super) const BODIES_INSERT: &str = "INSERT INTO delivery_bodies (seq, body) \
     SELECT j.seq, j.body FROM j WHERE j.seq IS NOT NULL ON CONFLICT (seq) DO NOTHING";

/// Bodies bound into one insert at most, in bytes (a larger body goes alone). Each bound body is
/// copied twice on its way into the table (into the driver's arguments, then by the database
/// while the statement runs), so one statement for ten sealed batches of 1,000 events each held
/// ~20 MB of copies at once. 2 MiB keeps one statement for a head batch's single-event bodies
/// (~1 KB each, at most `rows::MAX_ROWS`) and for a 20K events/s block in batches of 100 (~1.4
/// MB); 1 MiB split that one in two for no less memory at 100K (BENCHMARKS.md, "Session of
/// 2026-12-06 (thirteenth)").
pub(super) const BODY_BYTES_PER_STATEMENT: usize = 2 << 20;

/// `rows` in order, cut so that each piece's bodies stay within `max_bytes` (a piece has at
/// least one row).
pub(super) fn body_chunks<'r, 'b>(
    rows: &'r [(i64, &'b str)],
    max_bytes: usize,
) -> impl Iterator<Item = &'r [(i64, &'b str)]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let end = rest
            .iter()
            .position(|(_, body)| {
                bytes += body.len();
                bytes > max_bytes
            })
            .map_or(rest.len(), |over| over.max(1));
        let (piece, after) = rest.split_at(end);
        rest = after;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::body_chunks;

    fn lengths(rows: &[(i64, &str)], max: usize) -> Vec<Vec<usize>> {
        body_chunks(rows, max)
            .map(|piece| piece.iter().map(|(_, b)| b.len()).collect())
            .collect()
    }

    #[test]
    fn bodies_are_cut_by_bytes_in_order_and_a_large_one_goes_alone() {
        let (small, large) = ("x".repeat(3), "y".repeat(25));
        let rows: Vec<(i64, &str)> = vec![
            (1, &small),
            (2, &small),
            (3, &small),
            (4, &large),
            (5, &small),
        ];
        assert_eq!(lengths(&rows, 10), vec![vec![3, 3, 3], vec![25], vec![3]]);
        assert_eq!(lengths(&rows, 100), vec![vec![3, 3, 3, 25, 3]]);
        assert_eq!(
            lengths(&rows, 1),
            vec![vec![3], vec![3], vec![3], vec![25], vec![3]]
        );
        assert!(lengths(&[], 10).is_empty());
        let seqs: Vec<i64> = body_chunks(&rows, 10).flatten().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }
}
