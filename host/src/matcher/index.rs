//! Subscriptions compiled for matching, and the native index that narrows each log to candidate
//! subscriptions by chain, address and topic0 before the exact filter runs. Pure.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::{Address, B256};

use crate::event::ChainLog;
use crate::modes::DeliveryMode;
use crate::plugin::CompiledPlugin;

pub use crate::store::SubscriptionStatus;

/// A plugin attached to a subscription, with the config its instance is initialised with.
#[derive(Debug, Clone)]
pub struct PluginBinding {
    pub plugin: Arc<CompiledPlugin>,
    pub config_json: String,
}

/// One subscription, ready to match.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub endpoint_id: String,
    pub chain_id: u64,
    /// `None` matches any emitter.
    pub addresses: Option<Vec<Address>>,
    /// Positional: `None` at a position matches anything there; a list matches any of its topics.
    pub topics: Vec<Option<Vec<B256>>>,
    pub plugin: Option<PluginBinding>,
    pub status: SubscriptionStatus,
    pub confirmations: u64,
    /// Set when the subscription's plugin could not be loaded: its events are parked with it.
    pub load_error: Option<String>,
    /// Batching and ordering of its deliveries.
    pub mode: DeliveryMode,
    /// A candidate plugin running in shadow on its batches (`crate::canary`); never delivered.
    pub canary: Option<crate::canary::CanaryBinding>,
}

impl Subscription {
    /// The exact filter: emitter in `addresses`, and each constrained topic position satisfied.
    pub fn matches(&self, log: &ChainLog) -> bool {
        if let Some(addresses) = &self.addresses
            && !addresses.contains(&log.address)
        {
            return false;
        }
        self.topics
            .iter()
            .enumerate()
            .all(|(i, wanted)| match wanted {
                None => true,
                Some(options) => log.topics.get(i).is_some_and(|t| options.contains(t)),
            })
    }

    fn topic0_options(&self) -> Option<&[B256]> {
        self.topics.first().and_then(|t| t.as_deref())
    }
}

#[derive(Debug, Default)]
struct ChainIndex {
    by_address: HashMap<Address, Vec<usize>>,
    any_address_by_topic0: HashMap<B256, Vec<usize>>,
    any_address_any_topic0: Vec<usize>,
}

/// All live subscriptions plus their index. Built anew on every change (`with_changes` shares the
/// unchanged subscriptions) and swapped in, so the matcher never sees a half-updated index.
#[derive(Debug, Default)]
pub struct SubscriptionSet {
    pub subscriptions: Vec<Arc<Subscription>>,
    chains: HashMap<u64, ChainIndex>,
}

impl SubscriptionSet {
    pub fn new(subscriptions: Vec<Arc<Subscription>>) -> SubscriptionSet {
        let mut chains: HashMap<u64, ChainIndex> = HashMap::new();
        for (i, sub) in subscriptions.iter().enumerate() {
            if sub.status == SubscriptionStatus::Paused {
                continue;
            }
            let index = chains.entry(sub.chain_id).or_default();
            match (&sub.addresses, sub.topic0_options()) {
                (Some(addresses), _) => {
                    for address in addresses {
                        index.by_address.entry(*address).or_default().push(i);
                    }
                }
                (None, Some(topic0s)) => {
                    for topic in topic0s {
                        index
                            .any_address_by_topic0
                            .entry(*topic)
                            .or_default()
                            .push(i);
                    }
                }
                (None, None) => index.any_address_any_topic0.push(i),
            }
        }
        SubscriptionSet {
            subscriptions,
            chains,
        }
    }

    /// The subscription with this id (a scan: asked only when a plugin fails to load).
    pub fn get(&self, id: &str) -> Option<&Arc<Subscription>> {
        self.subscriptions.iter().find(|s| s.id == id)
    }

    /// This set with `changed` applied — an entry replaces the subscription of its id, `None`
    /// removes it, an id not in the set is added at the end (in id order) — and indexed anew.
    /// Linear in the set and shares every unchanged subscription: what one admin change costs.
    pub fn with_changes(
        &self,
        mut changed: HashMap<String, Option<Arc<Subscription>>>,
    ) -> SubscriptionSet {
        let mut subscriptions = Vec::with_capacity(self.subscriptions.len() + changed.len());
        for sub in &self.subscriptions {
            match changed.remove(&sub.id) {
                None => subscriptions.push(sub.clone()),
                Some(replacement) => subscriptions.extend(replacement),
            }
        }
        let mut added: Vec<Arc<Subscription>> = changed.into_values().flatten().collect();
        added.sort_by(|a, b| a.id.cmp(&b.id));
        subscriptions.extend(added);
        SubscriptionSet::new(subscriptions)
    }

    /// Indexes (into `subscriptions`) of the subscriptions `log` matches, appended to `out`.
    pub fn matching(&self, chain_id: u64, log: &ChainLog, out: &mut Vec<usize>) {
        let start = out.len();
        out.extend(
            self.candidates(chain_id, log)
                .filter(|&i| self.subscriptions[i].matches(log)),
        );
        // A subscription listing the same address twice must still match once.
        out[start..].sort_unstable();
        let mut seen = start;
        for j in start..out.len() {
            if j == start || out[j] != out[seen - 1] {
                out[seen] = out[j];
                seen += 1;
            }
        }
        out.truncate(seen);
    }

    /// Whether any subscription matches `log` (no allocation: ingest asks this of every log).
    pub fn matches_any(&self, chain_id: u64, log: &ChainLog) -> bool {
        self.candidates(chain_id, log)
            .any(|i| self.subscriptions[i].matches(log))
    }

    /// The subscriptions the index says may match `log` (by address, by topic0, wildcard); each
    /// still has to check its full filter.
    fn candidates<'a>(&'a self, chain_id: u64, log: &ChainLog) -> impl Iterator<Item = usize> + 'a {
        let index = self.chains.get(&chain_id);
        let by_address = index
            .and_then(|index| index.by_address.get(&log.address))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let by_topic = index
            .zip(log.topic0())
            .and_then(|(index, t)| index.any_address_by_topic0.get(t))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let wildcard = index
            .map(|index| index.any_address_any_topic0.as_slice())
            .unwrap_or_default();
        by_address.iter().chain(by_topic).chain(wildcard).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRANSFER: &str = r#"{"address":"0xf4eced2f682ce333f96f2d8966c613ded8fc95dd","topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef","0x0000000000000000000000001b63142628311395ceafeea5667e7c9026c862ca","0x000000000000000000000000ac4df82fe37ea2187bc8c011a23d743b4f39019a"],"data":"0x00000000000000000000000000000000000000000000000000000000000186a0","blockNumber":"0x76250","blockHash":"0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae","transactionHash":"0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#;
    const TRANSFER_TOPIC: &str =
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
    const TOKEN: &str = "0xf4eced2f682ce333f96f2d8966c613ded8fc95dd";

    fn sub(
        id: &str,
        chain_id: u64,
        addresses: Option<Vec<&str>>,
        topics: Vec<Option<Vec<&str>>>,
    ) -> Arc<Subscription> {
        Arc::new(Subscription {
            id: id.into(),
            endpoint_id: "ep".into(),
            chain_id,
            addresses: addresses.map(|a| a.iter().map(|s| s.parse().unwrap()).collect()),
            topics: topics
                .into_iter()
                .map(|t| t.map(|v| v.iter().map(|s| s.parse().unwrap()).collect()))
                .collect(),
            plugin: None,
            status: SubscriptionStatus::Active,
            confirmations: 0,
            load_error: None,
            canary: None,
            mode: Default::default(),
        })
    }

    fn check(subs: Vec<Arc<Subscription>>, expected: &[&str]) {
        let set = SubscriptionSet::new(subs);
        let log = ChainLog::from_json(TRANSFER).unwrap();
        let mut out = Vec::new();
        set.matching(1, &log, &mut out);
        assert_eq!(set.matches_any(1, &log), !expected.is_empty());
        let ids: Vec<&str> = out
            .iter()
            .map(|&i| set.subscriptions[i].id.as_str())
            .collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn matches_by_address_topic_and_wildcards() {
        let sender = "0x0000000000000000000000001b63142628311395ceafeea5667e7c9026c862ca";
        let other = "0x00000000000000000000000000000000000000000000000000000000000000ff";
        check(
            vec![
                sub("by_address", 1, Some(vec![TOKEN]), vec![]),
                sub("by_topic0", 1, None, vec![Some(vec![TRANSFER_TOPIC])]),
                sub("any", 1, None, vec![]),
                sub("other_chain", 2, None, vec![]),
                sub(
                    "wrong_address",
                    1,
                    Some(vec!["0x0000000000000000000000000000000000000001"]),
                    vec![],
                ),
                sub(
                    "topic1_or",
                    1,
                    Some(vec![TOKEN]),
                    vec![None, Some(vec![other, sender])],
                ),
                sub("topic1_miss", 1, None, vec![None, Some(vec![other])]),
                sub(
                    "topic3_absent",
                    1,
                    None,
                    vec![None, None, None, Some(vec![other])],
                ),
                sub("dup_address", 1, Some(vec![TOKEN, TOKEN]), vec![]),
            ],
            &["by_address", "by_topic0", "any", "topic1_or", "dup_address"],
        );
    }

    #[test]
    fn paused_subscriptions_match_nothing() {
        let mut paused = (*sub("paused", 1, None, vec![])).clone();
        paused.status = SubscriptionStatus::Paused;
        check(vec![Arc::new(paused)], &[]);
    }

    #[test]
    fn with_changes_replaces_removes_and_appends_in_place() {
        let other = "0x0000000000000000000000000000000000000001";
        let before = SubscriptionSet::new(vec![
            sub("a", 1, Some(vec![TOKEN]), vec![]),
            sub("b", 1, Some(vec![other]), vec![]),
            sub("c", 1, None, vec![]),
        ]);
        let unchanged = before.subscriptions[2].clone();
        let changed = HashMap::from([
            (
                "b".to_string(),
                Some(sub("b", 1, Some(vec![TOKEN]), vec![])),
            ),
            ("a".to_string(), None),
            (
                "e".to_string(),
                Some(sub("e", 1, Some(vec![TOKEN]), vec![])),
            ),
            ("d".to_string(), Some(sub("d", 2, None, vec![]))),
            ("gone".to_string(), None),
        ]);
        let after = before.with_changes(changed);
        let ids: Vec<&str> = after.subscriptions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "d", "e"], "in place, then new ones by id");
        assert!(Arc::ptr_eq(&after.subscriptions[1], &unchanged), "shared");
        // The index is the new set's: "b" now matches the token, "a" is gone.
        let log = ChainLog::from_json(TRANSFER).unwrap();
        let mut out = Vec::new();
        after.matching(1, &log, &mut out);
        let matched: Vec<&str> = out
            .iter()
            .map(|&i| after.subscriptions[i].id.as_str())
            .collect();
        assert_eq!(matched, ["b", "c", "e"]);
        assert!(after.get("a").is_none() && after.get("d").is_some());
    }
}
