//! One Prometheus registry with typed handles, and the `/metrics` server. Labels stay
//! low-cardinality: chain, status, stage — never subscription, endpoint or address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServerLimits;

mod known;

/// Cheap to clone: every handle is an `Arc` inside.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub events_received: IntCounterVec,
    pub events_processed: IntCounterVec,
    pub deliveries_attempted: IntCounterVec,
    pub e2e_latency: Histogram,
    pub batch_latency: Histogram,
    pub batch_size: Histogram,
    pub plugin_calls: IntCounterVec,
    pub plugin_fuel: IntCounter,
    pub plugin_call_latency: Histogram,
    pub plugin_failures: IntCounterVec,
    pub plugin_log_lines_dropped: IntCounter,
    pub subscriptions_quarantined: IntGauge,
    pub chain_head: IntGaugeVec,
    pub chain_head_lag: HistogramVec,
    pub reorgs: IntCounterVec,
    pub ws_reconnects: IntCounterVec,
    pub cursor_writes_fenced: IntCounter,
    pub chain_stale: IntGaugeVec,
    pub reorgs_too_deep: IntCounterVec,
    pub backfill_blocks: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub breaker_open: IntGauge,
    pub db_statements: IntCounterVec,
    pub pruned_rows: IntCounterVec,
    pub runtime_lag: Histogram,
    pub deliveries_outstanding: IntGauge,
    pub deliveries_due: IntGauge,
    pub ordered_keys_blocked: IntGauge,
    pub deliveries_oldest_due_age: Gauge,
    pub db_errors: IntCounterVec,
    pub canary_events: IntCounterVec,
    pub canary_failures: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let r = Registry::new();
        Ok(Metrics {
            events_received: counter_vec(
                &r,
                "pipeline_events_received_total",
                "Logs received from chain nodes",
                &["chain"],
            )?,
            events_processed: counter_vec(
                &r,
                "pipeline_events_processed_total",
                "Candidate events by outcome: matched (queued for delivery), dropped (by a plugin), parked",
                &["status"],
            )?,
            deliveries_attempted: counter_vec(
                &r,
                "pipeline_deliveries_attempted_total",
                "Webhook delivery attempts by outcome",
                &["status"],
            )?,
            e2e_latency: histogram(
                &r,
                "pipeline_e2e_latency_seconds",
                "Chain event received to webhook answered",
                LATENCY_BUCKETS,
            )?,
            batch_latency: histogram(
                &r,
                "pipeline_batch_latency_seconds",
                "Time to match, run plugins on and store one batch",
                LATENCY_BUCKETS,
            )?,
            batch_size: histogram(
                &r,
                "pipeline_batch_events",
                "Events per batch",
                &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0],
            )?,
            plugin_calls: counter_vec(
                &r,
                "pipeline_plugin_calls_total",
                "Plugin calls by outcome",
                &["status"],
            )?,
            plugin_fuel: counter(
                &r,
                "pipeline_plugin_fuel_consumed_total",
                "Fuel consumed by plugin calls",
            )?,
            plugin_call_latency: histogram(
                &r,
                "pipeline_plugin_call_seconds",
                "Duration of one plugin call",
                LATENCY_BUCKETS,
            )?,
            plugin_log_lines_dropped: counter(
                &r,
                "pipeline_plugin_log_lines_dropped_total",
                "Plugin log lines dropped by the per-call cap or the per-subscription rate limit",
            )?,
            plugin_failures: counter_vec(
                &r,
                "pipeline_plugin_failures_total",
                "Failed plugin batches by cause",
                &["cause"],
            )?,
            subscriptions_quarantined: gauge(
                &r,
                "pipeline_subscriptions_quarantined",
                "Subscriptions currently quarantined",
            )?,
            chain_head: gauge_vec(
                &r,
                "pipeline_chain_head_block",
                "Latest head block seen per chain",
                &["chain"],
            )?,
            chain_head_lag: histogram_vec(
                &r,
                "pipeline_chain_head_lag_seconds",
                "Head block timestamp to head received",
                &["chain"],
            )?,
            reorgs: counter_vec(
                &r,
                "pipeline_reorgs_total",
                "Chain reorganisations handled",
                &["chain"],
            )?,
            ws_reconnects: counter_vec(
                &r,
                "pipeline_ws_reconnects_total",
                "WebSocket reconnects to chain nodes",
                &["chain"],
            )?,
            backfill_blocks: counter_vec(
                &r,
                "pipeline_backfill_blocks_total",
                "Blocks caught up through eth_getLogs ranges (far below the head) rather than one by one",
                &["chain"],
            )?,
            reorgs_too_deep: counter_vec(
                &r,
                "pipeline_reorgs_too_deep_total",
                "Reorgs deeper than the reorg window: delivered logs of orphaned blocks could not be withdrawn",
                &["chain"],
            )?,
            chain_stale: gauge_vec(
                &r,
                "pipeline_chain_stale",
                "1 while a chain has had no new head for its stale_after period (reconnecting or failing over)",
                &["chain"],
            )?,
            cursor_writes_fenced: counter(
                &r,
                "pipeline_cursor_writes_fenced_total",
                "Batch writes whose chain cursor was refused: another replica owns the chain now",
            )?,
            queue_depth: gauge_vec(
                &r,
                "pipeline_queue_depth",
                "Items waiting between stages",
                &["queue"],
            )?,
            breaker_open: gauge(
                &r,
                "pipeline_endpoint_breakers_open",
                "Endpoints whose circuit breaker is open or waiting on its probe",
            )?,
            db_statements: counter_vec(
                &r,
                "pipeline_db_statements_total",
                "Database statements by purpose",
                &["purpose"],
            )?,
            pruned_rows: counter_vec(
                &r,
                "pipeline_pruned_rows_total",
                "Rows deleted by retention, by table",
                &["table"],
            )?,
            runtime_lag: histogram(
                &r,
                "pipeline_runtime_scheduler_lag_seconds",
                "Watchdog: how late a 100 ms timer fires",
                LATENCY_BUCKETS,
            )?,
            deliveries_outstanding: gauge(
                &r,
                "pipeline_deliveries_outstanding",
                "Deliveries not finished (pending or retrying, held ones excluded), sampled from the store",
            )?,
            deliveries_due: gauge(
                &r,
                "pipeline_deliveries_due",
                "Deliveries due now and leased to no replica, sampled from the store",
            )?,
            ordered_keys_blocked: gauge(
                &r,
                "pipeline_ordered_keys_blocked",
                "Ordering keys held back by a failing first delivery (retrying, or dead under on_dead=halt), sampled from the store",
            )?,
            deliveries_oldest_due_age: register(
                &r,
                Gauge::new(
                    "pipeline_deliveries_oldest_due_age_seconds",
                    "How long the longest-waiting due delivery has been due (0 when none is)",
                )?,
            )?,
            db_errors: counter_vec(
                &r,
                "pipeline_db_errors_total",
                "Failed database operations by purpose",
                &["purpose"],
            )?,
            canary_events: counter_vec(
                &r,
                "pipeline_canary_events_total",
                "Events a plugin canary saw, by how its decision compared with the live plugin's (skipped: its queue was full)",
                &["outcome"],
            )?,
            canary_failures: counter_vec(
                &r,
                "pipeline_canary_failures_total",
                "Canary batches the candidate plugin failed (the live plugin is unaffected), by kind",
                &["kind"],
            )?,
            registry: Arc::new(r),
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| {
                tracing::error!(%error, "metrics encoding failed");
                String::new()
            })
    }
}

/// Serves `/metrics` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    metrics: Metrics,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    crate::server::serve("metrics", listener, app, &limits, shutdown).await;
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

/// Binds the metrics listener; a separate step so start-up errors surface before anything runs.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(r, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    register(r, IntCounter::new(name, help)?)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    register(r, IntGauge::new(name, help)?)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> prometheus::Result<Histogram> {
    register(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?,
    )
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    register(r, HistogramVec::new(opts, labels)?)
}

fn register<M>(r: &Registry, metric: M) -> prometheus::Result<M>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    r.register(Box::new(metric.clone()))?;
    Ok(metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_design_metric_names() {
        let m = Metrics::new().unwrap();
        m.events_received.with_label_values(&["anvil"]).inc();
        m.events_processed.with_label_values(&["delivered"]).inc();
        m.deliveries_attempted.with_label_values(&["success"]).inc();
        m.e2e_latency.observe(0.002);
        m.batch_latency.observe(0.001);
        let text = m.render();
        for name in [
            "pipeline_events_received_total",
            "pipeline_events_processed_total",
            "pipeline_deliveries_attempted_total",
            "pipeline_e2e_latency_seconds_bucket",
            "pipeline_batch_latency_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
