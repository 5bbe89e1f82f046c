//! Wiring. `build` opens and checks everything (store, migrations, plugins, sockets) so start-up
//! errors surface before anything runs; `run` creates every channel, spawns the stages and, on
//! shutdown, lets them drain in order: ingest → batch → matcher → outbox → deliver → recorder.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod chain_filters;
mod maintenance;
mod secrets;
mod stages;

use crate::admin;
use crate::config::Config;
use crate::deliver::client::{ClientSettings, WebhookClient};
use crate::event::BlockLogs;
use crate::metrics::{self, Metrics};
use crate::plugin::PluginRuntime;
use crate::registry::Registry;
use crate::store::Store;

/// How long stages get to drain after a shutdown signal (longer than one delivery attempt).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(40);

/// Everything opened and checked, nothing running yet.
pub struct App {
    config: Config,
    store: Store,
    registry: Registry,
    runtime: PluginRuntime,
    metrics: Metrics,
    client: WebhookClient,
    token_sha256: [u8; 32],
    admin_listener: TcpListener,
    metrics_listener: TcpListener,
    blocks_tx: mpsc::Sender<BlockLogs>,
    blocks_rx: mpsc::Receiver<BlockLogs>,
}

impl App {
    pub fn admin_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.admin_listener.local_addr()
    }

    pub fn metrics_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// A sender into the batch stage beside the chain ingesters: for benchmarks and tests that
    /// feed recorded blocks. The pipeline drains once every sender is dropped and shutdown is asked.
    pub fn blocks(&self) -> mpsc::Sender<BlockLogs> {
        self.blocks_tx.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

pub async fn build(config: Config) -> anyhow::Result<App> {
    crate::server::raise_open_file_limit(&config.server);
    let metrics = Metrics::new().context("metrics registry")?;
    let chain_names: Vec<String> = config.chains.iter().map(|c| c.name.clone()).collect();
    metrics.preinit(&chain_names);
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot open the database at {}",
                redact(&config.database_url)
            )
        })?;
    store
        .migrate()
        .await
        .context("database migrations failed")?;
    let store = secrets::seal(store, &config).await?;
    let runtime = PluginRuntime::new(config.plugin.clone())?;
    let registry = Registry::new(store.clone(), runtime.clone());
    registry.reload().await.context("loading subscriptions")?;
    let client = WebhookClient::new(ClientSettings {
        connect_timeout: Duration::from_millis(config.delivery.connect_timeout_ms),
        request_timeout: Duration::from_millis(config.delivery.request_timeout_ms),
        allowed_cidrs: config.delivery.allowed_cidrs.clone(),
        max_response_body: 4096,
        body_timeout: Duration::from_millis(config.delivery.body_timeout_ms),
    })
    .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
    let token_sha256 =
        admin::auth::resolve_token(config.admin_token.as_deref(), &store, &config.data_dir).await?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on PIPELINE_ADMIN_ADDR {}", config.admin_addr))?;
    let metrics_listener = metrics::bind(config.metrics_addr).await.with_context(|| {
        format!(
            "cannot listen on PIPELINE_METRICS_ADDR {}",
            config.metrics_addr
        )
    })?;
    let (blocks_tx, blocks_rx) = mpsc::channel(1024);
    Ok(App {
        config,
        store,
        registry,
        runtime,
        metrics,
        client,
        token_sha256,
        admin_listener,
        metrics_listener,
        blocks_tx,
        blocks_rx,
    })
}

/// Runs every stage until `shutdown` is cancelled, then drains them within the grace period.
pub async fn run(app: App, shutdown: CancellationToken) -> anyhow::Result<()> {
    let App {
        config,
        store,
        registry,
        runtime,
        metrics,
        client,
        token_sha256,
        admin_listener,
        metrics_listener,
        blocks_tx,
        blocks_rx,
    } = app;
    let tracker = TaskTracker::new();
    let wiring = stages::Wiring {
        config: &config,
        store: &store,
        registry: &registry,
        metrics: &metrics,
        tracker: &tracker,
        shutdown: &shutdown,
    };
    let chains = wiring.spawn_ingest(blocks_tx);
    let (matched_rx, log_book) = wiring.spawn_matching(&runtime, blocks_rx);
    let console = wiring.spawn_delivery(&client, matched_rx);
    let services = stages::Services {
        runtime,
        client,
        log_book,
        chains,
        console,
        token_sha256,
        admin_listener,
        metrics_listener,
    };
    wiring.spawn_services(services);
    tracker.close();
    tracing::info!(chains = config.chains.len(), admin = %config.admin_addr, metrics = %config.metrics_addr, "pipeline running");

    shutdown.cancelled().await;
    tracing::info!("shutdown requested; draining");
    drain(&tracker, &store).await;
    Ok(())
}

/// Waits for the stages to finish what they hold, at most the grace period, then closes the store.
async fn drain(tracker: &TaskTracker, store: &Store) {
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_ok();
    if drained {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "stages did not drain in time; undelivered work stays in the store"
        );
    }
    if tokio::time::timeout(Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections did not close in time");
    }
}

/// The database URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
