//! Wiring. `build` opens and checks everything (store, migrations, plugins, sockets) so start-up
//! errors surface before anything runs; `run` creates every channel, spawns the stages and, on
//! shutdown, lets them drain in order: ingest → batch → matcher → outbox → deliver → recorder.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod chain_filters;
mod secrets;

use crate::admin::{self, AdminState};
use crate::config::{self, Config};
use crate::deliver::client::{ClientSettings, WebhookClient};
use crate::deliver::schedule::RetrySchedule;
use crate::deliver::{self, Dispatcher};
use crate::event::BlockLogs;
use crate::ingest::{self, ChainHealth};
use crate::matcher::{Matcher, PluginLogBook};
use crate::metrics::{self, Metrics};
use crate::plugin::PluginRuntime;
use crate::registry::Registry;
use crate::store::Store;
use crate::{batch, outbox};

/// How long stages get to drain after a shutdown signal (longer than one delivery attempt).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(40);
/// Other replicas may change subscriptions; every replica reloads this often.
const REGISTRY_REFRESH: Duration = Duration::from_secs(10);

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
        allowed_cidrs: config::parse_cidrs(&config.delivery.allowed_cidrs)?,
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
    let lease_ms = config.delivery.lease_ms as i64;
    let (batches_tx, batches_rx) = mpsc::channel(8);
    let (matched_tx, matched_rx) = mpsc::channel(8);
    let (jobs_tx, jobs_rx) = mpsc::channel(4096);
    let (results_tx, results_rx) = mpsc::channel(4096);
    let (gone_tx, gone_rx) = mpsc::channel(64);
    let tracker = TaskTracker::new();

    let downstream = ingest::Downstream::with_budget(blocks_tx, config.batch.max_in_flight_mib);
    let mut chains = Vec::new();
    for chain in &config.chains {
        let health = ChainHealth::new(chain);
        chains.push(health.clone());
        let task = ingest::ChainTask {
            chain: chain.clone(),
            limits: config.ingest.limits(),
            health,
            relevant: chain_filters::relevance(chain.chain_id, registry.subscriptions()),
            filter: chain_filters::filter_union(chain.chain_id, registry.subscriptions()),
        };
        tracker.spawn(ingest::run(
            task,
            store.clone(),
            downstream.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    drop(downstream);
    tracker.spawn(batch::run(
        config.batch.clone(),
        blocks_rx,
        batches_tx,
        metrics.clone(),
    ));
    let confirmations: HashMap<u64, u64> = config
        .chains
        .iter()
        .map(|c| (c.chain_id, c.confirmations))
        .collect();
    tracker.spawn(deliver::held::run(
        store.clone(),
        confirmations.clone(),
        deliver::held::INTERVAL,
        shutdown.clone(),
    ));
    let log_book = PluginLogBook::default();
    let matcher = Matcher::new(
        runtime.clone(),
        registry.subscriptions(),
        confirmations.clone(),
        log_book.clone(),
        metrics.clone(),
    )
    .with_budget(crate::event::Budget::mib(config.batch.max_in_flight_mib));
    let (canary_feed, canary_worker) = crate::canary::worker::channel(
        store.clone(),
        runtime.clone(),
        metrics.clone(),
        registry.subscriptions(),
    );
    tracker.spawn(canary_worker.run());
    let matcher = matcher.with_canary(canary_feed);
    tracker.spawn(matcher.run(batches_rx, matched_tx));
    let poller_wake = deliver::poller::Wake::default();
    tracker.spawn(outbox::run(
        store.clone(),
        matched_rx,
        jobs_tx.clone(),
        metrics.clone(),
        lease_ms,
        poller_wake.clone(),
    ));
    tracker.spawn(outbox::sealer::run(
        store.clone(),
        poller_wake.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let poll_interval = Duration::from_millis(config.delivery.poll_interval_ms);
    let capacity = deliver::job_capacity();
    tracker.spawn(deliver::poller::run(
        store.clone(),
        jobs_tx,
        capacity.clone(),
        poll_interval,
        lease_ms,
        metrics.clone(),
        poller_wake.clone(),
        shutdown.clone(),
    ));
    let console = crate::console::ConsoleShared::default();
    let dispatcher = Dispatcher {
        client: client.clone(),
        schedule: RetrySchedule::new(config::parse_retry_schedule(
            &config.delivery.retry_schedule,
        )?),
        endpoints: registry.endpoints(),
        metrics: metrics.clone(),
        workers: config.delivery.workers,
        per_endpoint: config.delivery.per_endpoint_concurrency,
        gone: gone_tx,
        capacity,
        store: store.clone(),
        lease_margin: Duration::from_millis(config.delivery.request_timeout_ms),
        breakers: console.breakers.clone(),
    };
    tracker.spawn(dispatcher.run(jobs_rx, results_tx));
    tracker.spawn(deliver::recorder::run(
        store.clone(),
        results_rx,
        metrics.clone(),
        poller_wake,
    ));
    tracker.spawn(disable_gone_endpoints(
        store.clone(),
        registry.clone(),
        gone_rx,
    ));

    let scheduler_lag_ms = Arc::new(AtomicU64::new(0));
    let state = AdminState {
        store: store.clone(),
        registry: registry.clone(),
        runtime,
        client,
        log_book,
        chains,
        metrics: metrics.clone(),
        token_sha256: Arc::new(token_sha256),
        scheduler_lag_ms: scheduler_lag_ms.clone(),
        limits: config.server.clone(),
        chain_confirmations: Arc::new(confirmations),
        console: console.clone(),
    };
    tracker.spawn(admin::run(admin_listener, state, shutdown.clone()));
    tracker.spawn(metrics::run(
        metrics_listener,
        metrics.clone(),
        config.server.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(watchdog(
        metrics.clone(),
        scheduler_lag_ms,
        shutdown.clone(),
    ));
    tracker.spawn(crate::console::samples::run(
        console.samples,
        metrics.clone(),
        config.chains.iter().map(|c| c.name.clone()).collect(),
        shutdown.clone(),
    ));
    tracker.spawn(crate::backlog::run(
        store.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(refresh_registry(
        registry,
        metrics.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(checkpoint_wal(store.clone(), shutdown.clone()));
    tracker.spawn(prune_expired(
        store.clone(),
        config.retention.periods()?,
        metrics,
        shutdown.clone(),
    ));
    tracker.close();
    tracing::info!(chains = config.chains.len(), admin = %config.admin_addr, metrics = %config.metrics_addr, "pipeline running");

    shutdown.cancelled().await;
    tracing::info!("shutdown requested; draining");
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
    Ok(())
}

/// A 410 from a receiver disables its endpoint.
async fn disable_gone_endpoints(
    store: Store,
    registry: Registry,
    mut gone: mpsc::Receiver<String>,
) {
    while let Some(endpoint_id) = gone.recv().await {
        // Only the status and its reason: a rotation or PATCH committed meanwhile is kept.
        let reason = "receiver answered 410 Gone";
        match store
            .disable_endpoint(&endpoint_id, reason, crate::store::now_ms())
            .await
        {
            Ok(true) => {
                tracing::warn!(endpoint = %endpoint_id, "endpoint disabled after 410 Gone");
                if let Err(error) = registry.reload_endpoint(&endpoint_id).await {
                    tracing::error!(%error, "registry reload failed");
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::error!(endpoint = %endpoint_id, %error, "cannot disable endpoint")
            }
        }
    }
}

/// Measures how late a 100 ms timer fires: a stalled runtime shows in `/readyz` and metrics.
async fn watchdog(metrics: Metrics, lag_ms: Arc<AtomicU64>, shutdown: CancellationToken) {
    let period = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let lag = started.elapsed().saturating_sub(period);
        metrics.runtime_lag.observe(lag.as_secs_f64());
        lag_ms.store(lag.as_millis() as u64, Ordering::Relaxed);
    }
}

async fn refresh_registry(registry: Registry, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REGISTRY_REFRESH) => {}
        }
        if let Err(error) = registry.reload().await {
            metrics.db_errors.with_label_values(&["registry"]).inc();
            tracing::warn!(%error, "periodic registry reload failed");
        }
    }
}

/// SQLite's write-ahead log is copied back into the database here, beside the writer, instead of
/// inside whichever commit crosses the log's size threshold. A round that could not copy
/// everything (the writer kept appending) is followed by another soon, so the log is restarted
/// from its beginning often and stays small.
/// Retention: every `interval`, deletes delivered, dead and parked rows older than their period,
/// in small chunks (`Store::prune`), off the hot path.
async fn prune_expired(
    store: Store,
    [delivered, dead, parked, interval]: [Duration; 4],
    metrics: crate::metrics::Metrics,
    shutdown: CancellationToken,
) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = crate::store::now_ms();
        let cutoffs = crate::store::Cutoffs {
            delivered_before: now.saturating_sub(ms(delivered)),
            dead_before: now.saturating_sub(ms(dead)),
            parked_before: now.saturating_sub(ms(parked)),
        };
        match tokio::time::timeout(Duration::from_secs(300), store.prune(&cutoffs)).await {
            Ok(Ok(pruned)) => {
                metrics
                    .pruned_rows
                    .with_label_values(&["deliveries"])
                    .inc_by(pruned.deliveries);
                metrics
                    .pruned_rows
                    .with_label_values(&["parked_events"])
                    .inc_by(pruned.parked_events);
                if pruned != crate::store::Pruned::default() {
                    tracing::info!(
                        deliveries = pruned.deliveries,
                        parked_events = pruned.parked_events,
                        "retention: expired rows deleted"
                    );
                }
            }
            Ok(Err(error)) => {
                metrics.db_errors.with_label_values(&["retention"]).inc();
                tracing::warn!(%error, "retention pass failed; trying again later");
            }
            Err(_) => {
                metrics.db_errors.with_label_values(&["retention"]).inc();
                tracing::warn!("retention pass took over 5 minutes; trying again later");
            }
        }
    }
}

async fn checkpoint_wal(store: Store, shutdown: CancellationToken) {
    const EVERY: Duration = Duration::from_millis(500);
    const AGAIN: Duration = Duration::from_millis(100);
    let mut wait = EVERY;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match tokio::time::timeout(Duration::from_secs(30), store.checkpoint()).await {
            Ok(Ok(true)) => EVERY,
            Ok(Ok(false)) => AGAIN,
            Ok(Err(error)) => {
                tracing::warn!(%error, "checkpointing the write-ahead log failed");
                EVERY
            }
            Err(_) => {
                tracing::warn!("checkpointing the write-ahead log took over 30 s");
                EVERY
            }
        };
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
