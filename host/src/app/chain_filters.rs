//! What each chain's ingest asks of the subscriptions: which logs the reorg window must remember
//! (`relevance`) and what to ask the node for (`filter_union`).

use std::sync::Arc;

use tokio::sync::watch;

use crate::ingest;
use crate::matcher::{SubscriptionSet, SubscriptionStatus};

/// A log is relevant to the reorg window when the current subscriptions' native index matches it.
pub(super) fn relevance(
    chain_id: u64,
    subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
) -> ingest::Relevance {
    Arc::new(move |log| subscriptions.borrow().matches_any(chain_id, log))
}

/// What ingest's `eth_getLogs` requests ask for: the union of the chain's active subscriptions'
/// addresses and topic0s (a superset of what any of them matches). Asked for every block, computed
/// once per registry snapshot: with 10,000 subscriptions the union is 10,000 filters merged.
pub(super) fn filter_union(
    chain_id: u64,
    subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
) -> ingest::FilterSource {
    type Cached = Option<(Arc<SubscriptionSet>, Arc<ingest::LogFilter>)>;
    let cache: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    Arc::new(move || {
        let set = subscriptions.borrow().clone();
        let mut cache = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((seen, union)) = cache.as_ref()
            && Arc::ptr_eq(seen, &set)
        {
            return union.clone();
        }
        let union = Arc::new(union_of(chain_id, &set));
        *cache = Some((set, union.clone()));
        union
    })
}

fn union_of(chain_id: u64, set: &SubscriptionSet) -> ingest::LogFilter {
    ingest::LogFilter::union(
        set.subscriptions
            .iter()
            .filter(|s| s.chain_id == chain_id && s.status != SubscriptionStatus::Paused)
            .map(|s| {
                let topic0 = s.topics.first().and_then(|t| t.as_deref());
                (s.addresses.as_deref(), topic0)
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::Subscription;
    use alloy_primitives::Address;

    fn watching(chain_id: u64, address: Address) -> Arc<Subscription> {
        Arc::new(Subscription {
            id: format!("sub_{address}"),
            endpoint_id: "ep".into(),
            chain_id,
            addresses: Some(vec![address]),
            topics: Vec::new(),
            plugin: None,
            status: SubscriptionStatus::Active,
            confirmations: 0,
            load_error: None,
            canary: None,
            mode: Default::default(),
        })
    }

    #[test]
    fn the_union_is_computed_once_per_snapshot_and_follows_changes() {
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let (tx, rx) = watch::channel(Arc::new(SubscriptionSet::new(vec![
            watching(1, a),
            watching(2, b),
        ])));
        let source = filter_union(1, rx);
        let first = source();
        assert_eq!(
            first.addresses,
            Some(vec![a]),
            "only chain 1's subscriptions"
        );
        assert!(
            Arc::ptr_eq(&first, &source()),
            "the same snapshot: not recomputed"
        );
        tx.send_replace(Arc::new(SubscriptionSet::new(vec![
            watching(1, a),
            watching(1, b),
        ])));
        assert_eq!(
            source().addresses,
            Some(vec![a, b]),
            "a new snapshot: recomputed"
        );
    }
}
