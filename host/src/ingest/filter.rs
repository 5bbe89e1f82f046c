//! What ingest asks the node for: the union of the chain's subscriptions' addresses and topic0s
//! (a superset of what any of them matches), used by catch-up ranges and, with
//! `[ingest] filter_at_node`, by every followed block's `eth_getLogs`.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use serde_json::{Value, json};

/// The union of the subscriptions' filters. `None` = any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub addresses: Option<Vec<Address>>,
    pub topic0: Option<Vec<B256>>,
    /// No subscription on the chain: nothing to fetch.
    pub nothing: bool,
}

/// Most addresses (or topic0s) a request names; beyond, it asks for any.
const MAX_FILTER_VALUES: usize = 1_000;

/// The chain's current filter union (subscriptions change while ingest runs). Called once per
/// block: the source built by the host computes the union once per registry snapshot.
pub type FilterSource = Arc<dyn Fn() -> Arc<LogFilter> + Send + Sync>;

impl LogFilter {
    /// Every log.
    pub fn any() -> LogFilter {
        LogFilter::default()
    }

    /// The union of filters given as (addresses, topic0 options) per subscription, `None` = any.
    /// A union of more than `MAX_FILTER_VALUES` addresses (or topic0s) asks for any instead: a
    /// request naming 10,000 contracts costs the node more than it saves, and providers refuse
    /// long lists. Linear in the subscriptions' values.
    pub fn union<'a>(
        filters: impl IntoIterator<Item = (Option<&'a [Address]>, Option<&'a [B256]>)>,
    ) -> LogFilter {
        let mut nothing = true;
        let mut addresses = Union::default();
        let mut topic0 = Union::default();
        for (these_addresses, these_topic0) in filters {
            nothing = false;
            addresses.add(these_addresses);
            topic0.add(these_topic0);
        }
        LogFilter {
            addresses: addresses.values(),
            topic0: topic0.values(),
            nothing,
        }
    }

    pub(super) fn request(&self, from: u64, to: u64) -> Value {
        self.with(json!({"fromBlock": format!("{from:#x}"), "toBlock": format!("{to:#x}")}))
    }

    /// The `eth_getLogs` parameters (the one-element array) for one block by hash, filtered the same way.
    pub(super) fn block_request(&self, hash: B256) -> Value {
        self.with(json!({"blockHash": hash}))
    }

    fn with(&self, mut filter: Value) -> Value {
        if let Some(addresses) = &self.addresses {
            filter["address"] = json!(addresses);
        }
        if let Some(topic0) = &self.topic0 {
            filter["topics"] = json!([topic0]);
        }
        json!([filter])
    }
}

/// The distinct values of one field in first-seen order, or any once a filter takes any or the
/// values pass `MAX_FILTER_VALUES`.
struct Union<T> {
    values: Option<Vec<T>>,
    seen: HashSet<T>,
}

impl<T> Default for Union<T> {
    fn default() -> Self {
        Union {
            values: Some(Vec::new()),
            seen: HashSet::new(),
        }
    }
}

impl<T: Copy + Eq + Hash> Union<T> {
    fn add(&mut self, more: Option<&[T]>) {
        let (Some(values), Some(more)) = (self.values.as_mut(), more) else {
            self.values = None;
            return;
        };
        for value in more {
            if self.seen.insert(*value) {
                values.push(*value);
            }
        }
        if values.len() > MAX_FILTER_VALUES {
            self.values = None;
        }
    }

    fn values(self) -> Option<Vec<T>> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_union_is_a_superset_and_a_wildcard_widens_it() {
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        let t = B256::repeat_byte(9);
        let union = LogFilter::union([(Some(&[a][..]), Some(&[t][..])), (Some(&[b, a][..]), None)]);
        assert_eq!(union.addresses, Some(vec![a, b]));
        assert_eq!(
            union.topic0, None,
            "the second subscription takes any topic0"
        );
        assert!(!union.nothing);
        assert!(LogFilter::union([]).nothing);
        let request = union.request(16, 31);
        assert_eq!(request[0]["fromBlock"], json!("0x10"));
        assert_eq!(request[0]["toBlock"], json!("0x1f"));
        assert!(request[0].get("topics").is_none());
    }

    #[test]
    fn a_union_over_the_limit_asks_for_any_and_one_at_the_limit_names_each() {
        let addresses: Vec<Address> = (0..=MAX_FILTER_VALUES as u64)
            .map(|n| Address::left_padding_from(&n.to_be_bytes()))
            .collect();
        let at_limit = LogFilter::union(
            addresses[..MAX_FILTER_VALUES]
                .iter()
                .map(|a| (Some(std::slice::from_ref(a)), None)),
        );
        assert_eq!(at_limit.addresses.map(|a| a.len()), Some(MAX_FILTER_VALUES));
        let over = LogFilter::union(
            addresses
                .iter()
                .map(|a| (Some(std::slice::from_ref(a)), None)),
        );
        assert_eq!(over.addresses, None);
        assert!(!over.nothing);
    }
}
