//! The host's background loops beside the pipeline's stages: disabling endpoints that answered
//! 410, the scheduler-lag watchdog, the periodic registry reload, retention and SQLite's
//! write-ahead-log checkpoints. Each ends when `shutdown` is cancelled (or its input closes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Store;

/// Other replicas may change subscriptions; every replica reloads this often.
const REGISTRY_REFRESH: Duration = Duration::from_secs(10);

/// A 410 from a receiver disables its endpoint.
pub(super) async fn disable_gone_endpoints(
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
pub(super) async fn watchdog(
    metrics: Metrics,
    lag_ms: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
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

pub(super) async fn refresh_registry(
    registry: Registry,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
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

/// Retention: every `interval`, deletes delivered, dead and parked rows older than their period,
/// in small chunks (`Store::prune`), off the hot path.
pub(super) async fn prune_expired(
    store: Store,
    retention: RetentionConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retention.interval) => {}
        }
        let now = crate::store::now_ms();
        let cutoffs = crate::store::Cutoffs {
            delivered_before: now.saturating_sub(ms(retention.delivered)),
            dead_before: now.saturating_sub(ms(retention.dead)),
            parked_before: now.saturating_sub(ms(retention.parked)),
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

/// SQLite's write-ahead log is copied back into the database here, beside the writer, instead of
/// inside whichever commit crosses the log's size threshold. A round that could not copy
/// everything (the writer kept appending) is followed by another soon, so the log is restarted
/// from its beginning often and stays small.
pub(super) async fn checkpoint_wal(store: Store, shutdown: CancellationToken) {
    const EVERY: Duration = Duration::from_millis(500);
    const AGAIN: Duration = Duration::from_millis(100);
    /// How long a checkpoint waits for the writer to end the transaction it is in.
    const WRITER_WAIT: Duration = Duration::from_millis(100);
    let mut wait = EVERY;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // Between the writer's transactions, not beside a commit (`Store::writer_idle`).
        store.writer_idle(WRITER_WAIT).await;
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
