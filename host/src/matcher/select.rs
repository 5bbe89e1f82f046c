//! Pure selection over a batch: candidate events per subscription, the cursor per chain, and
//! the chains whose held deliveries a new cursor may release. No I/O.

use std::collections::HashMap;

use super::{Candidate, SubscriptionSet};
use crate::event::Batch;
use crate::store::Cursor;

/// Chains in this batch with subscriptions that wait for more confirmations than the chain is
/// ingested with: their held deliveries may be released by the new cursor.
pub(super) fn release_chains(
    set: &SubscriptionSet,
    chain_confirmations: &HashMap<u64, u64>,
    cursors: &[Cursor],
) -> Vec<u64> {
    cursors
        .iter()
        .map(|c| c.chain_id as u64)
        .filter(|chain| {
            let base = chain_confirmations.get(chain).copied().unwrap_or(0);
            set.subscriptions
                .iter()
                .any(|s| s.chain_id == *chain && s.confirmations > base)
        })
        .collect()
}

/// Candidate events per subscription index, in chain order.
pub(super) fn candidates(set: &SubscriptionSet, batch: &Batch) -> Vec<(usize, Vec<Candidate>)> {
    let mut per_subscription: HashMap<usize, Vec<Candidate>> = HashMap::new();
    let mut hits = Vec::new();
    for block in &batch.blocks {
        for log in &block.logs {
            hits.clear();
            set.matching(block.chain_id, log, &mut hits);
            for &index in &hits {
                per_subscription.entry(index).or_default().push(Candidate {
                    log: log.clone(),
                    chain_id: block.chain_id,
                    event_type: block.event_type(),
                    received_at: block.received_at,
                });
            }
        }
    }
    let mut ordered: Vec<_> = per_subscription.into_iter().collect();
    ordered.sort_unstable_by_key(|(index, _)| *index);
    ordered
}

/// The last canonical block per chain in the batch: the cursor the outbox writes with it.
pub(super) fn cursors(blocks: &[crate::event::BlockLogs]) -> Vec<Cursor> {
    let mut last: HashMap<u64, Cursor> = HashMap::new();
    for block in blocks
        .iter()
        .filter(|b| b.kind == crate::event::BlockKind::Canonical)
    {
        last.insert(
            block.chain_id,
            Cursor {
                chain_id: super::db_int(block.chain_id),
                block_number: super::db_int(block.number),
                block_hash: format!("{:#x}", block.hash),
            },
        );
    }
    last.into_values().collect()
}
