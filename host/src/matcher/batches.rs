//! Kept events of batching subscriptions: `"block"` batches are assembled here, one delivery per
//! (subscription, block, event type) — all of a subscription's matches in a block come out of one
//! plugin call, so they are all in one write — and `{max_events, max_wait_ms}` events go to the
//! write as [`BatchEvent`]s, which the store appends to the subscription's open batch.

use std::sync::Arc;

use super::delivery::{db_int, delivery_id, ordering_key};
use super::{Candidate, MatchedBatch, Subscription};
use crate::event::EventType;
use crate::modes::batching::{Element, block_batch_id, body, body_prefix};
use crate::store::{BatchEvent, NewDelivery};

/// A `"block"` batch being assembled from consecutive events of one subscription.
pub struct BlockBatch {
    sub: Arc<Subscription>,
    event: Candidate,
    elements: Vec<Element>,
}

impl std::fmt::Debug for BlockBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockBatch")
            .field("subscription", &self.sub.id)
            .field("block", &self.event.log.block_number)
            .field("events", &self.elements.len())
            .finish()
    }
}

/// Adds a kept event of a `"block"` subscription: to the last batch when it is the same
/// (subscription, block, type), else as a new one.
pub fn push_block_event(
    matched: &mut MatchedBatch,
    sub: &Arc<Subscription>,
    event: &Candidate,
    data: Option<&str>,
) {
    let element = Element::new(event.event_type, event.log.raw.clone(), data);
    if let Some(last) = matched.block_batches.last_mut()
        && last.sub.id == sub.id
        && last.event.chain_id == event.chain_id
        && last.event.log.block_hash == event.log.block_hash
        && last.event.event_type == event.event_type
    {
        last.elements.push(element);
        return;
    }
    matched.block_batches.push(BlockBatch {
        sub: sub.clone(),
        event: event.clone(),
        elements: vec![element],
    });
}

/// The assembled `"block"` batches as deliveries (held like single events when the subscription
/// wants more confirmations than the chain; a removal batch cancels a still-held log batch).
pub fn finish_block_batches(matched: &mut MatchedBatch, chain_confirmations: impl Fn(u64) -> u64) {
    for batch in std::mem::take(&mut matched.block_batches) {
        let (sub, event) = (&batch.sub, &batch.event);
        let base = chain_confirmations(event.chain_id);
        let extra = sub.confirmations.saturating_sub(base);
        let hash = event.log.block_hash.as_slice();
        let id = block_batch_id(&sub.id, event.chain_id, hash, event.event_type.as_str());
        let prefix = body_prefix(&id, &sub.id, event.chain_id, base.max(sub.confirmations));
        let elements: Vec<&Element> = batch.elements.iter().collect();
        let held = extra > 0;
        let delivery = NewDelivery {
            body: body(&prefix, &elements),
            subscription_id: sub.id.clone(),
            endpoint_id: sub.endpoint_id.clone(),
            chain_id: db_int(event.chain_id),
            event_type: event.event_type.as_str().to_string(),
            block_number: db_int(event.log.block_number),
            release_block: (held && event.event_type == EventType::Log)
                .then(|| db_int(event.log.block_number.saturating_add(extra))),
            supersedes: (held && event.event_type == EventType::LogRemoved)
                .then(|| block_batch_id(&sub.id, event.chain_id, hash, EventType::Log.as_str()))
                .into_iter()
                .collect(),
            ordering_key: ordering_key(sub, &event.log),
            id,
        };
        matched.write.deliveries.push(delivery);
        matched.received_at.push(event.received_at);
    }
}

/// A kept event of a `{max_events, max_wait_ms}` subscription, for the write to batch.
pub fn batch_event(
    sub: &Subscription,
    event: &Candidate,
    data: Option<&str>,
    chain_confirmations: u64,
    max_events: u32,
    max_wait_ms: u32,
) -> BatchEvent {
    let extra = sub.confirmations.saturating_sub(chain_confirmations);
    BatchEvent {
        subscription_id: sub.id.clone(),
        endpoint_id: sub.endpoint_id.clone(),
        chain_id: db_int(event.chain_id),
        event_id: delivery_id(&sub.id, event.chain_id, &event.log, event.event_type),
        event_type: event.event_type.as_str().to_string(),
        block_number: db_int(event.log.block_number),
        element: Element::new(event.event_type, event.log.raw.clone(), data),
        max_events,
        max_wait_ms,
        confirmations: chain_confirmations.max(sub.confirmations),
        extra_confirmations: db_int(extra),
        ordering_key: ordering_key(sub, &event.log),
    }
}
