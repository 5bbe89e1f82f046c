//! Samples the delivery backlog from the store into gauges (`pipeline_deliveries_outstanding`,
//! `_due`, `_oldest_due_age_seconds`). The store is the only place that knows it: a delivery may
//! wait there for a retry, a lease or another replica. Every replica samples the same database,
//! so dashboards take the `max` over instances, not the sum.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{Backlog, Store, now_ms};

/// How often the backlog is sampled: well under the alerts' `for` periods.
pub const EVERY: Duration = Duration::from_secs(10);
/// A sample slower than this counts as a database error.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Samples at once, then every [`EVERY`], until `shutdown`.
pub async fn run(store: Store, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        match tokio::time::timeout(TIMEOUT, store.backlog()).await {
            Ok(Ok(backlog)) => record(&metrics, &backlog, now_ms()),
            Ok(Err(error)) => {
                metrics.db_errors.with_label_values(&["backlog"]).inc();
                tracing::warn!(%error, "sampling the delivery backlog failed");
            }
            Err(_) => {
                metrics.db_errors.with_label_values(&["backlog"]).inc();
                tracing::warn!(
                    timeout_s = TIMEOUT.as_secs(),
                    "sampling the delivery backlog timed out"
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Sets the gauges from one sample taken at `now` (ms).
fn record(metrics: &Metrics, backlog: &Backlog, now: i64) {
    metrics.deliveries_outstanding.set(backlog.outstanding);
    metrics.deliveries_due.set(backlog.due);
    metrics
        .ordered_keys_blocked
        .set(backlog.ordered_keys_blocked);
    let age_ms = backlog
        .oldest_due_at
        .map_or(0, |at| now.saturating_sub(at).max(0));
    metrics
        .deliveries_oldest_due_age
        .set(age_ms as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_due_age_is_in_seconds_and_zero_without_due_rows() {
        let m = Metrics::new().unwrap();
        let sample = Backlog {
            outstanding: 9,
            due: 4,
            oldest_due_at: Some(10_000),
            ordered_keys_blocked: 2,
        };
        record(&m, &sample, 72_500);
        assert_eq!(m.deliveries_outstanding.get(), 9);
        assert_eq!(m.deliveries_due.get(), 4);
        assert_eq!(m.deliveries_oldest_due_age.get(), 62.5);
        // A row due in the future (clock skew between replicas) is not "waiting".
        record(
            &m,
            &Backlog {
                oldest_due_at: Some(80_000),
                ..sample
            },
            72_500,
        );
        assert_eq!(m.deliveries_oldest_due_age.get(), 0.0);
        record(&m, &Backlog::default(), 72_500);
        assert_eq!(m.deliveries_oldest_due_age.get(), 0.0);
    }
}
