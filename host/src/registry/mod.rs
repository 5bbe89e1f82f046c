//! The live view of subscriptions and endpoints, published on `watch` channels: the matcher and
//! the delivery workers read the latest snapshot, nobody shares a lock. Two ways in: `reload`
//! rebuilds both snapshots from the whole store (at start and every `REGISTRY_REFRESH`, which is
//! how other replicas' changes arrive); `reload_subscription` and `reload_endpoint`, called by
//! the admin API after it changed one row, read that row and publish snapshots built from the
//! previous ones (`changes.rs`), so one change costs no read of every subscription.

mod changes;
mod filters;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, watch};

use crate::canary::CanaryBinding;
use crate::matcher::index::{PluginBinding, Subscription, SubscriptionSet};
use crate::modes::DeliveryMode;
use crate::plugin::{CompiledPlugin, PluginRuntime};
use crate::store::{CanaryRow, EndpointRow, Store, StoreError, SubscriptionRow};

pub use filters::{parse_addresses, parse_topics};

/// Why a stored plugin could not be made ready to run.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("plugin {0} is not stored")]
    Missing(String),
    #[error(transparent)]
    Compile(#[from] crate::plugin::ValidationError),
}

/// Shared rows: a delivery takes its endpoint by reference count, not by copying its strings.
pub type Endpoints = Arc<HashMap<String, Arc<EndpointRow>>>;

#[derive(Clone)]
pub struct Registry {
    store: Store,
    runtime: PluginRuntime,
    subscriptions: watch::Sender<Arc<SubscriptionSet>>,
    endpoints: watch::Sender<Endpoints>,
    /// Serialises snapshot changes so an older snapshot never overwrites a newer one. It holds
    /// which asks the published snapshots cover (see `reload` and `changes.rs`).
    covered: Arc<Mutex<Covered>>,
    /// Reloads asked for so far, whole or of one row; each caller bumps it after its own store
    /// write.
    requested: Arc<AtomicU64>,
    /// Rows the admin API changed and no snapshot shows yet.
    pending: Arc<std::sync::Mutex<changes::Pending>>,
    /// Full rebuilds done (what `reload`'s sharing saves is visible here).
    rebuilds: Arc<AtomicU64>,
    /// Snapshots published from changed rows only.
    updates: Arc<AtomicU64>,
}

/// The last ask (a number of `requested`) the published snapshots cover: `full` by a rebuild
/// that started after it, `rows` for asks about single rows (a rebuild covers those too).
#[derive(Default)]
struct Covered {
    full: u64,
    rows: u64,
}

impl Registry {
    pub fn new(store: Store, runtime: PluginRuntime) -> Registry {
        Registry {
            store,
            runtime,
            subscriptions: watch::Sender::new(Arc::new(SubscriptionSet::default())),
            endpoints: watch::Sender::new(Arc::new(HashMap::new())),
            covered: Arc::new(Mutex::new(Covered::default())),
            requested: Arc::new(AtomicU64::new(0)),
            pending: Arc::new(std::sync::Mutex::new(changes::Pending::default())),
            rebuilds: Arc::new(AtomicU64::new(0)),
            updates: Arc::new(AtomicU64::new(0)),
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
        let mut covered = self.covered.lock().await;
        if covered.full >= ticket {
            return Ok(());
        }
        // Rows asked for before this point are in what the rebuild reads. Taken before
        // `generation` is read, so a row asked for after it stays pending for its own caller.
        let taken = self.take_pending();
        let generation = self.requested.load(Ordering::SeqCst);
        if let Err(error) = self.rebuild().await {
            self.restore_pending(taken);
            return Err(error);
        }
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        covered.full = generation;
        covered.rows = covered.rows.max(generation);
        Ok(())
    }

    /// Full rebuilds of the snapshots so far.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// Snapshots published from changed rows only, so far.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    async fn rebuild(&self) -> Result<(), StoreError> {
        let endpoints: HashMap<String, Arc<EndpointRow>> = self
            .store
            .list_endpoints()
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
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
            subscriptions.extend(self.live(row, canary, &previous).await);
        }
        self.endpoints.send_replace(Arc::new(endpoints));
        self.subscriptions
            .send_replace(Arc::new(SubscriptionSet::new(subscriptions)));
        Ok(())
    }

    /// A stored subscription ready to match, with its plugin and canary loaded. One whose plugin
    /// cannot be loaded is never dropped from the live set: it keeps its last working form in
    /// `previous`, or, new, it is kept so that its events are parked with the error.
    async fn live(
        &self,
        row: SubscriptionRow,
        canary: Option<CanaryRow>,
        previous: &SubscriptionSet,
    ) -> Option<Arc<Subscription>> {
        let error = match self.compile_subscription(&row).await {
            Ok(sub) => {
                let canary = self.compile_canary(canary).await;
                return Some(Arc::new(Subscription { canary, ..sub }));
            }
            Err(error) => error,
        };
        tracing::error!(subscription = %row.id, %error, "subscription cannot load its plugin");
        if let Some(working) = previous.get(&row.id).filter(|s| s.load_error.is_none()) {
            return Some(working.clone());
        }
        match self.filter_only(&row) {
            Ok(filter) => Some(Arc::new(Subscription {
                load_error: Some(format!("plugin cannot be loaded: {error}")),
                ..filter
            })),
            Err(error) => {
                tracing::error!(subscription = %row.id, %error, "subscription skipped");
                None
            }
        }
    }

    /// A stored plugin ready to instantiate: from memory, else from this host's precompiled code in
    /// the store, else compiled from its wasm (and the result stored for the next start).
    pub async fn plugin(&self, id: &str) -> Result<Arc<CompiledPlugin>, PluginLoadError> {
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
        let wasm = self.store.get_plugin_wasm(id).await?;
        let wasm = wasm.ok_or_else(|| PluginLoadError::Missing(id.to_string()))?;
        let compiled = self.runtime.compile_async(wasm).await?;
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
                let compiled = self.plugin(id).await.map_err(|e| e.to_string())?;
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
