//! Spawning: every channel between the stages is created here, bounded, and every stage and
//! background loop goes into the one `TaskTracker` that `run` drains. Each stage gets its own
//! section of the configuration, already parsed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{chain_filters, maintenance};
use crate::admin::{self, AdminState};
use crate::batch;
use crate::config::Config;
use crate::console::ConsoleShared;
use crate::deliver::client::WebhookClient;
use crate::deliver::poller::Wake;
use crate::deliver::{self, Dispatcher};
use crate::event::{BlockLogs, Budget};
use crate::ingest::{self, ChainHealth};
use crate::matcher::{MatchedBatch, Matcher, PluginLogBook};
use crate::metrics::{self, Metrics};
use crate::outbox::{self, DeliveryJob};
use crate::plugin::PluginRuntime;
use crate::registry::Registry;
use crate::store::Store;

/// What every spawn needs, borrowed from `run`.
pub(super) struct Wiring<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub registry: &'a Registry,
    pub metrics: &'a Metrics,
    pub tracker: &'a TaskTracker,
    pub shutdown: &'a CancellationToken,
}

/// What the admin API and the metrics server are given, beside the wiring.
pub(super) struct Services {
    pub runtime: PluginRuntime,
    pub client: WebhookClient,
    pub log_book: PluginLogBook,
    pub chains: Vec<Arc<ChainHealth>>,
    pub console: ConsoleShared,
    pub token_sha256: [u8; 32],
    pub admin_listener: TcpListener,
    pub metrics_listener: TcpListener,
}

impl Wiring<'_> {
    fn confirmations(&self) -> HashMap<u64, u64> {
        self.config
            .chains
            .iter()
            .map(|c| (c.chain_id, c.confirmations))
            .collect()
    }

    /// One ingest task per chain, sending into `blocks`; returns each chain's health for `/readyz`.
    pub fn spawn_ingest(&self, blocks: mpsc::Sender<BlockLogs>) -> Vec<Arc<ChainHealth>> {
        let config = self.config;
        let downstream = ingest::Downstream::with_budget(blocks, config.batch.max_in_flight_mib);
        let mut chains = Vec::new();
        for chain in &config.chains {
            let health = ChainHealth::new(chain);
            chains.push(health.clone());
            let subscriptions = self.registry.subscriptions();
            let task = ingest::ChainTask {
                chain: chain.clone(),
                limits: config.ingest.limits(),
                health,
                relevant: chain_filters::relevance(chain.chain_id, subscriptions.clone()),
                filter: chain_filters::filter_union(chain.chain_id, subscriptions),
            };
            self.tracker.spawn(ingest::run(
                task,
                self.store.clone(),
                downstream.clone(),
                self.metrics.clone(),
                self.shutdown.clone(),
            ));
        }
        chains
    }

    /// Batching, the held-delivery reconciler, the matcher and the canary worker; returns the
    /// matched batches' receiver and the plugin log book the admin API reads.
    pub fn spawn_matching(
        &self,
        runtime: &PluginRuntime,
        blocks: mpsc::Receiver<BlockLogs>,
    ) -> (mpsc::Receiver<MatchedBatch>, PluginLogBook) {
        let (batches_tx, batches_rx) = mpsc::channel(8);
        let (matched_tx, matched_rx) = mpsc::channel(8);
        let (store, metrics) = (self.store, self.metrics);
        let batch = self.config.batch.clone();
        let budget = Budget::mib(batch.max_in_flight_mib);
        self.tracker
            .spawn(batch::run(batch, blocks, batches_tx, metrics.clone()));
        self.tracker.spawn(deliver::held::run(
            store.clone(),
            self.confirmations(),
            deliver::held::INTERVAL,
            self.shutdown.clone(),
        ));
        let subscriptions = self.registry.subscriptions();
        let log_book = PluginLogBook::default();
        let (canary_feed, canary_worker) = crate::canary::worker::channel(
            store.clone(),
            runtime.clone(),
            metrics.clone(),
            subscriptions.clone(),
        );
        self.tracker.spawn(canary_worker.run());
        let matcher = Matcher::new(
            runtime.clone(),
            subscriptions,
            self.confirmations(),
            log_book.clone(),
            metrics.clone(),
        )
        .with_budget(budget)
        .with_canary(canary_feed);
        self.tracker.spawn(matcher.run(batches_rx, matched_tx));
        (matched_rx, log_book)
    }

    /// The outbox and its sealer, the retry poller, the dispatcher, the recorder and the 410
    /// handler; returns the state the console shares with the dispatcher (breakers, samples).
    pub fn spawn_delivery(
        &self,
        client: &WebhookClient,
        matched: mpsc::Receiver<MatchedBatch>,
    ) -> ConsoleShared {
        let (jobs_tx, jobs_rx) = mpsc::channel(4096);
        let wake = Wake::default();
        let room = deliver::JobRoom::default();
        self.spawn_sources(matched, room.sender(jobs_tx), &room, &wake);
        self.spawn_dispatch(client, jobs_rx, room, wake)
    }

    /// What feeds the dispatcher: the outbox (new deliveries from memory), the sealer of
    /// count batches and the poller (due retries, expired leases, what the others woke it for).
    fn spawn_sources(
        &self,
        matched: mpsc::Receiver<MatchedBatch>,
        jobs: deliver::JobSender,
        room: &deliver::JobRoom,
        wake: &Wake,
    ) {
        let delivery = &self.config.delivery;
        let (store, metrics, shutdown) = (self.store, self.metrics, self.shutdown);
        let lease_ms = delivery.lease_ms as i64;
        let outbox_config = outbox::OutboxConfig {
            lease_ms,
            send_before_commit: delivery.send_before_commit,
        };
        self.tracker.spawn(outbox::run(
            store.clone(),
            matched,
            jobs.clone(),
            metrics.clone(),
            outbox_config,
            wake.clone(),
        ));
        self.tracker.spawn(outbox::sealer::run(
            store.clone(),
            wake.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        self.tracker.spawn(deliver::poller::run(
            store.clone(),
            jobs,
            room.clone(),
            Duration::from_millis(delivery.poll_interval_ms),
            lease_ms,
            metrics.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
    }

    /// The dispatcher (with the configured retry schedule), the recorder of its outcomes and the
    /// handler of 410 answers.
    fn spawn_dispatch(
        &self,
        client: &WebhookClient,
        jobs: mpsc::Receiver<DeliveryJob>,
        room: deliver::JobRoom,
        wake: Wake,
    ) -> ConsoleShared {
        let delivery = &self.config.delivery;
        let (store, metrics) = (self.store, self.metrics);
        let (results_tx, results_rx) = mpsc::channel(4096);
        let (gone_tx, gone_rx) = mpsc::channel(64);
        let console = ConsoleShared::default();
        let dispatcher = Dispatcher {
            client: client.clone(),
            schedule: delivery.retry_schedule.clone(),
            endpoints: self.registry.endpoints(),
            metrics: metrics.clone(),
            workers: delivery.workers,
            per_endpoint: delivery.per_endpoint_concurrency,
            gone: gone_tx,
            room,
            store: store.clone(),
            lease_margin: Duration::from_millis(delivery.request_timeout_ms),
            breakers: console.breakers.clone(),
        };
        self.tracker.spawn(dispatcher.run(jobs, results_tx));
        let recorder = deliver::recorder::run(store.clone(), results_rx, metrics.clone(), wake);
        self.tracker.spawn(recorder);
        let registry = self.registry.clone();
        let gone = maintenance::disable_gone_endpoints(store.clone(), registry, gone_rx);
        self.tracker.spawn(gone);
        console
    }

    /// The admin API, the metrics server and the background loops of `maintenance.rs`.
    pub fn spawn_services(&self, services: Services) {
        let (config, store, metrics, shutdown) =
            (self.config, self.store, self.metrics, self.shutdown);
        let scheduler_lag_ms = Arc::new(AtomicU64::new(0));
        let state = AdminState {
            store: store.clone(),
            registry: self.registry.clone(),
            runtime: services.runtime,
            client: services.client,
            log_book: services.log_book,
            chains: services.chains,
            metrics: metrics.clone(),
            token_sha256: Arc::new(services.token_sha256),
            scheduler_lag_ms: scheduler_lag_ms.clone(),
            limits: config.server.clone(),
            chain_confirmations: Arc::new(self.confirmations()),
            console: services.console.clone(),
        };
        let t = self.tracker;
        t.spawn(admin::run(services.admin_listener, state, shutdown.clone()));
        t.spawn(metrics::run(
            services.metrics_listener,
            metrics.clone(),
            config.server.clone(),
            shutdown.clone(),
        ));
        let lag = scheduler_lag_ms;
        t.spawn(maintenance::watchdog(
            metrics.clone(),
            lag,
            shutdown.clone(),
        ));
        t.spawn(crate::console::samples::run(
            services.console.samples,
            metrics.clone(),
            config.chains.iter().map(|c| c.name.clone()).collect(),
            shutdown.clone(),
        ));
        t.spawn(crate::backlog::run(
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let registry = self.registry.clone();
        t.spawn(maintenance::refresh_registry(
            registry,
            metrics.clone(),
            shutdown.clone(),
        ));
        t.spawn(maintenance::checkpoint_wal(store.clone(), shutdown.clone()));
        t.spawn(maintenance::prune_expired(
            store.clone(),
            config.retention.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
}
