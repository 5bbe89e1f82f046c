//! The live view of subscriptions and endpoints. The admin API changes the store, then calls
//! `reload`, which rebuilds both snapshots and publishes them on `watch` channels: the matcher and
//! the delivery workers read the latest snapshot, nobody shares a lock.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use tokio::sync::{Mutex, watch};

use crate::matcher::index::{PluginBinding, Subscription, SubscriptionSet, SubscriptionStatus};
use crate::plugin::PluginRuntime;
use crate::store::{EndpointRow, Store, StoreError, SubscriptionRow};

pub type Endpoints = Arc<HashMap<String, EndpointRow>>;

#[derive(Clone)]
pub struct Registry {
    store: Store,
    runtime: PluginRuntime,
    subscriptions: watch::Sender<Arc<SubscriptionSet>>,
    endpoints: watch::Sender<Endpoints>,
    /// Serialises reloads so an older snapshot never overwrites a newer one.
    reload_lock: Arc<Mutex<()>>,
}

impl Registry {
    pub fn new(store: Store, runtime: PluginRuntime) -> Registry {
        Registry {
            store,
            runtime,
            subscriptions: watch::Sender::new(Arc::new(SubscriptionSet::default())),
            endpoints: watch::Sender::new(Arc::new(HashMap::new())),
            reload_lock: Arc::new(Mutex::new(())),
        }
    }

    pub fn subscriptions(&self) -> watch::Receiver<Arc<SubscriptionSet>> {
        self.subscriptions.subscribe()
    }

    pub fn endpoints(&self) -> watch::Receiver<Endpoints> {
        self.endpoints.subscribe()
    }

    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    /// Rebuilds both snapshots from the store. A subscription whose plugin cannot be compiled is
    /// left out (and logged) rather than failing the whole reload.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _guard = self.reload_lock.lock().await;
        let endpoints: HashMap<String, EndpointRow> = self
            .store
            .list_endpoints()
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        let rows = self.store.list_subscriptions().await?;
        let mut subscriptions = Vec::with_capacity(rows.len());
        for row in rows {
            match self.compile_subscription(&row).await {
                Ok(sub) => subscriptions.push(Arc::new(sub)),
                Err(error) => {
                    tracing::error!(subscription = %row.id, %error, "subscription skipped")
                }
            }
        }
        self.endpoints.send_replace(Arc::new(endpoints));
        self.subscriptions
            .send_replace(Arc::new(SubscriptionSet::new(subscriptions)));
        Ok(())
    }

    async fn compile_subscription(&self, row: &SubscriptionRow) -> Result<Subscription, String> {
        let plugin = match &row.plugin_id {
            None => None,
            Some(id) => {
                let compiled = match self.runtime.cached(id) {
                    Some(hit) => hit,
                    None => {
                        let wasm = self
                            .store
                            .get_plugin_wasm(id)
                            .await
                            .map_err(|e| e.to_string())?;
                        let wasm = wasm.ok_or_else(|| format!("plugin {id} is not stored"))?;
                        self.runtime
                            .compile_async(wasm)
                            .await
                            .map_err(|e| e.to_string())?
                    }
                };
                let config_json = row
                    .plugin_config
                    .clone()
                    .unwrap_or_else(|| "null".to_string());
                Some(PluginBinding {
                    plugin: compiled,
                    config_json,
                })
            }
        };
        Ok(Subscription {
            id: row.id.clone(),
            endpoint_id: row.endpoint_id.clone(),
            chain_id: row.chain_id as u64,
            addresses: parse_addresses(row.addresses.as_deref())?,
            topics: parse_topics(row.topics.as_deref())?,
            plugin,
            status: SubscriptionStatus::parse(&row.status).unwrap_or(SubscriptionStatus::Active),
            confirmations: row.confirmations.max(0) as u64,
        })
    }
}

/// `["0x…", …]` or absent (any emitter).
pub fn parse_addresses(json: Option<&str>) -> Result<Option<Vec<Address>>, String> {
    let Some(json) = json else { return Ok(None) };
    let values: Option<Vec<String>> =
        serde_json::from_str(json).map_err(|e| format!("addresses: {e}"))?;
    values
        .map(|list| {
            list.iter()
                .map(|a| {
                    a.parse::<Address>()
                        .map_err(|e| format!("address {a:?}: {e}"))
                })
                .collect()
        })
        .transpose()
}

/// Positional topics: each entry `null` (any), a topic, or a list of topics (any of them).
pub fn parse_topics(json: Option<&str>) -> Result<Vec<Option<Vec<B256>>>, String> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("topics: {e}"))?;
    let positions = match value {
        serde_json::Value::Null => return Ok(Vec::new()),
        serde_json::Value::Array(p) => p,
        _ => return Err("topics must be an array".into()),
    };
    if positions.len() > 4 {
        return Err(format!(
            "topics has {} positions; a log has at most 4",
            positions.len()
        ));
    }
    let topic = |v: &serde_json::Value| -> Result<B256, String> {
        let s = v
            .as_str()
            .ok_or_else(|| format!("topic {v} is not a string"))?;
        s.parse::<B256>().map_err(|e| format!("topic {s:?}: {e}"))
    };
    positions
        .iter()
        .map(|p| match p {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Array(options) if options.is_empty() => {
                Err("an empty topic list matches nothing; use null for any".into())
            }
            serde_json::Value::Array(options) => options
                .iter()
                .map(topic)
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            single => topic(single).map(|t| Some(vec![t])),
        })
        .collect()
}
