//! The live view of subscriptions and endpoints. The admin API changes the store, then calls
//! `reload`, which rebuilds both snapshots and publishes them on `watch` channels: the matcher and
//! the delivery workers read the latest snapshot, nobody shares a lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256};
use tokio::sync::{Mutex, watch};

use crate::canary::CanaryBinding;
use crate::matcher::index::{PluginBinding, Subscription, SubscriptionSet};
use crate::modes::DeliveryMode;
use crate::plugin::{CompiledPlugin, PluginRuntime};
use crate::store::{CanaryRow, EndpointRow, Store, StoreError, SubscriptionRow};

pub type Endpoints = Arc<HashMap<String, EndpointRow>>;

#[derive(Clone)]
pub struct Registry {
    store: Store,
    runtime: PluginRuntime,
    subscriptions: watch::Sender<Arc<SubscriptionSet>>,
    endpoints: watch::Sender<Endpoints>,
    /// Serialises reloads so an older snapshot never overwrites a newer one. It holds the
    /// generation the last finished reload covers (see `reload`).
    reload_lock: Arc<Mutex<u64>>,
    /// Reloads asked for so far; each caller bumps it after its own store write.
    requested: Arc<AtomicU64>,
    /// Full rebuilds done (what `reload`'s sharing saves is visible here).
    rebuilds: Arc<AtomicU64>,
}

impl Registry {
    pub fn new(store: Store, runtime: PluginRuntime) -> Registry {
        Registry {
            store,
            runtime,
            subscriptions: watch::Sender::new(Arc::new(SubscriptionSet::default())),
            endpoints: watch::Sender::new(Arc::new(HashMap::new())),
            reload_lock: Arc::new(Mutex::new(0)),
            requested: Arc::new(AtomicU64::new(0)),
            rebuilds: Arc::new(AtomicU64::new(0)),
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
    ///
    /// Concurrent callers share reloads: a caller's store write is done before it asks, so a
    /// reload that *started* after the ask (it read `requested` at or above the caller's number)
    /// already shows that write, and the caller returns without reading the store again. Without
    /// this, N clients creating subscriptions at once cost N full reloads of N rows.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.reload_lock.lock().await;
        if *covered >= ticket {
            return Ok(());
        }
        let generation = self.requested.load(Ordering::SeqCst);
        self.rebuild().await?;
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        *covered = generation;
        Ok(())
    }

    /// Full rebuilds of the snapshots so far.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    async fn rebuild(&self) -> Result<(), StoreError> {
        let endpoints: HashMap<String, EndpointRow> = self
            .store
            .list_endpoints()
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        let rows = self.store.list_subscriptions().await?;
        let mut canaries: HashMap<String, CanaryRow> = self
            .store
            .list_canaries()
            .await?
            .into_iter()
            .map(|c| (c.subscription_id.clone(), c))
            .collect();
        let previous = self.subscriptions.borrow().clone();
        let mut subscriptions = Vec::with_capacity(rows.len());
        for row in rows {
            let canary = canaries.remove(&row.id);
            match self.compile_subscription(&row).await {
                Ok(sub) => {
                    let canary = self.compile_canary(canary).await;
                    subscriptions.push(Arc::new(Subscription { canary, ..sub }))
                }
                Err(error) => {
                    // Never drop a subscription from the live set: keep its last working form,
                    // or, for a new one, keep it so its events are parked with the error.
                    tracing::error!(subscription = %row.id, %error, "subscription cannot load its plugin");
                    match previous
                        .subscriptions
                        .iter()
                        .find(|s| s.id == row.id && s.load_error.is_none())
                    {
                        Some(working) => subscriptions.push(working.clone()),
                        None => match self.filter_only(&row) {
                            Ok(filter) => subscriptions.push(Arc::new(Subscription {
                                load_error: Some(format!("plugin cannot be loaded: {error}")),
                                ..filter
                            })),
                            Err(error) => {
                                tracing::error!(subscription = %row.id, %error, "subscription skipped")
                            }
                        },
                    }
                }
            }
        }
        self.endpoints.send_replace(Arc::new(endpoints));
        self.subscriptions
            .send_replace(Arc::new(SubscriptionSet::new(subscriptions)));
        Ok(())
    }

    /// A stored plugin ready to instantiate: from memory, else from this host's precompiled code in
    /// the store, else compiled from its wasm (and the result stored for the next start).
    pub async fn plugin(&self, id: &str) -> Result<Arc<CompiledPlugin>, String> {
        if let Some(hit) = self.runtime.cached(id) {
            return Ok(hit);
        }
        let engine = self.runtime.engine_fingerprint();
        if let Ok(Some(artifact)) = self.store.get_plugin_artifact(id, &engine).await {
            let (runtime, plugin_id) = (self.runtime.clone(), id.to_string());
            let loaded = tokio::task::spawn_blocking(move || {
                runtime.load_precompiled(&plugin_id, &artifact)
            })
            .await;
            if let Ok(Some(compiled)) = loaded {
                return Ok(compiled);
            }
        }
        let wasm = self
            .store
            .get_plugin_wasm(id)
            .await
            .map_err(|e| e.to_string())?;
        let wasm = wasm.ok_or_else(|| format!("plugin {id} is not stored"))?;
        let compiled = self
            .runtime
            .compile_async(wasm)
            .await
            .map_err(|e| e.to_string())?;
        self.save_precompiled(&compiled).await;
        Ok(compiled)
    }

    /// Stores a plugin's compiled code so the next start skips compilation (best effort).
    pub async fn save_precompiled(&self, compiled: &CompiledPlugin) {
        let Some(artifact) = compiled.serialize() else {
            return;
        };
        let engine = self.runtime.engine_fingerprint();
        if let Err(error) = self
            .store
            .put_plugin_artifact(&compiled.id, &engine, &artifact)
            .await
        {
            tracing::warn!(plugin = %compiled.id, %error, "could not store the precompiled plugin");
        }
    }

    async fn compile_subscription(&self, row: &SubscriptionRow) -> Result<Subscription, String> {
        let plugin = match &row.plugin_id {
            None => None,
            Some(id) => {
                let compiled = self.plugin(id).await?;
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
            plugin,
            ..self.filter_only(row).map_err(|e| e.to_string())?
        })
    }

    /// A subscription's canary, ready to run. One whose plugin cannot be loaded is left out
    /// (logged): it only ever observes, so nothing is lost but its comparisons.
    async fn compile_canary(&self, row: Option<CanaryRow>) -> Option<CanaryBinding> {
        let row = row?;
        match self.plugin(&row.plugin_id).await {
            Ok(plugin) => Some(CanaryBinding {
                id: row.id,
                binding: PluginBinding {
                    plugin,
                    config_json: row.plugin_config.unwrap_or_else(|| "null".to_string()),
                },
            }),
            Err(error) => {
                tracing::error!(subscription = %row.subscription_id, canary = %row.id, %error, "canary cannot load its plugin; not run");
                None
            }
        }
    }

    /// The subscription's filter and identity, without its plugin.
    fn filter_only(&self, row: &SubscriptionRow) -> Result<Subscription, StoreError> {
        let invalid = |e: String| StoreError::Conflict(format!("subscription {}: {e}", row.id));
        Ok(Subscription {
            id: row.id.clone(),
            endpoint_id: row.endpoint_id.clone(),
            chain_id: row.chain_id as u64,
            addresses: parse_addresses(row.addresses.as_deref()).map_err(invalid)?,
            topics: parse_topics(row.topics.as_deref()).map_err(invalid)?,
            plugin: None,
            status: row.status,
            confirmations: row.confirmations.max(0) as u64,
            load_error: None,
            canary: None,
            mode: DeliveryMode::from_columns(&row.mode).map_err(invalid)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginLimits;
    use crate::event::ChainLog;
    use crate::store::PluginRow;

    const KEEP_NONE: &str = r#"(module (memory (export "memory") 2) (data (i32.const 8192) "\01\00\00\00\00\00")
      (func (export "pipeline_abi_v1"))
      (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
      (func (export "pipeline_process") (param i32) (result i64) (i64.const 35184372088838)))"#;

    fn subscription_row(id: &str) -> SubscriptionRow {
        SubscriptionRow {
            id: id.to_string(),
            endpoint_id: "ep_1".into(),
            chain_id: 1,
            addresses: None,
            topics: None,
            plugin_id: None,
            plugin_config: None,
            confirmations: 0,
            status: crate::store::SubscriptionStatus::Active,
            last_error: None,
            created_at: 0,
            updated_at: 0,
            mode: Default::default(),
        }
    }

    #[tokio::test]
    async fn concurrent_reloads_share_rebuilds_and_each_sees_its_own_write() {
        let dir = std::env::temp_dir().join(format!("pipeline-registry-{}", rand::random::<u32>()));
        let store = Store::connect(&format!("sqlite://{}/r.db", dir.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let endpoint = crate::store::EndpointRow {
            id: "ep_1".into(),
            url: "http://127.0.0.1:9/hook".into(),
            description: "d".into(),
            secret: "whsec_first".into(),
            previous_secret: None,
            previous_secret_expires_at: None,
            status: crate::store::EndpointStatus::Enabled,
            disabled_reason: None,
            created_at: 1,
            updated_at: 1,
        };
        store.insert_endpoint(&endpoint).await.unwrap();
        let registry = Registry::new(
            store.clone(),
            PluginRuntime::new(PluginLimits::default()).unwrap(),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..40 {
            let (store, registry) = (store.clone(), registry.clone());
            tasks.spawn(async move {
                let id = format!("sub_{n}");
                store
                    .insert_subscription(&subscription_row(&id))
                    .await
                    .unwrap();
                registry.reload().await.unwrap();
                // When reload returns, the caller's own write is in the live snapshot.
                let live = registry.subscriptions().borrow().clone();
                assert!(
                    live.subscriptions.iter().any(|s| s.id == id),
                    "{id} missing"
                );
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(registry.subscriptions().borrow().subscriptions.len(), 40);
        let rebuilds = registry.rebuilds();
        assert!(
            rebuilds < 40,
            "40 concurrent reloads took {rebuilds} rebuilds"
        );

        // One at a time, every reload rebuilds.
        let before = registry.rebuilds();
        registry.reload().await.unwrap();
        registry.reload().await.unwrap();
        assert_eq!(registry.rebuilds(), before + 2);
    }

    #[tokio::test]
    async fn a_restart_loads_precompiled_plugins_from_the_store() {
        let dir = std::env::temp_dir().join(format!("pipeline-registry-{}", rand::random::<u32>()));
        let store = Store::connect(&format!("sqlite://{}/r.db", dir.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let wasm = wat::parse_str(KEEP_NONE).unwrap();
        let id = crate::plugin::plugin_id(&wasm);
        let row = PluginRow {
            id: id.clone(),
            name: "n".into(),
            size: wasm.len() as i64,
            created_at: 0,
        };
        store.insert_plugin(&row, &wasm).await.unwrap();

        let first = Registry::new(
            store.clone(),
            PluginRuntime::new(PluginLimits::default()).unwrap(),
        );
        first.plugin(&id).await.unwrap();
        let engine = first.runtime().engine_fingerprint();
        let artifact = store
            .get_plugin_artifact(&id, &engine)
            .await
            .unwrap()
            .expect("stored after compiling");

        // A new process: empty cache, same engine configuration.
        let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
        assert_eq!(runtime.engine_fingerprint(), engine);
        let loaded = runtime
            .load_precompiled(&id, &artifact)
            .expect("precompiled code loads");
        let mut instance = runtime.instantiate(loaded, "null").unwrap();
        let log = ChainLog::from_json(r#"{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"0x1","blockHash":"0x0000000000000000000000000000000000000000000000000000000000000001","transactionHash":"0x0000000000000000000000000000000000000000000000000000000000000002","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#).unwrap();
        assert!(instance.process(&[&log]).is_ok());
        // Garbage in the artifact slot is refused, not trusted.
        assert!(runtime.load_precompiled(&id, b"not an artifact").is_none());
        let second = Registry::new(store.clone(), runtime);
        assert_eq!(second.plugin(&id).await.unwrap().id, id);
    }
}
