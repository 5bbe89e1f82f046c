//! Finds deliveries that are due (retries, and rows orphaned by a crashed replica whose lease
//! expired), leases them and feeds them to the workers. A source: it watches the shutdown token.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::outbox::DeliveryJob;
use crate::store::Store;

const CLAIM_LIMIT: i64 = 500;
/// Below this much room the poller waits rather than claim a handful.
const MIN_CLAIM: i64 = 50;

/// Wakes the poller before its interval is over: deliveries became due that only it sends
/// (ordered deliveries, whose key's previous one was just recorded; sealed batches).
pub type Wake = Arc<Notify>;

#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Store,
    jobs: mpsc::Sender<DeliveryJob>,
    capacity: Arc<Semaphore>,
    interval: Duration,
    lease_ms: i64,
    metrics: Metrics,
    wake: Wake,
    shutdown: CancellationToken,
) {
    loop {
        // Claim only what the workers have room for: a claimed job that finds no room is handed
        // back to the store, and claiming it again and again would only churn the database.
        let limit = CLAIM_LIMIT.min((capacity.available_permits() / 2) as i64);
        let claimed = if limit < MIN_CLAIM {
            Vec::new()
        } else {
            match store.claim_due(limit, lease_ms).await {
                Ok(rows) => rows,
                Err(error) => {
                    metrics.db_errors.with_label_values(&["claim"]).inc();
                    tracing::warn!(%error, "claiming due deliveries failed");
                    Vec::new()
                }
            }
        };
        for row in claimed {
            let job = DeliveryJob {
                id: row.id,
                seq: row.seq,
                endpoint_id: row.endpoint_id,
                body: Arc::from(row.body),
                attempts: row.attempts,
                received_at: None,
                lease_until: row.lease_until,
                ordered: row.ordered,
                pending_seq: None,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                sent = jobs.send(job) => if sent.is_err() { return },
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
    }
}
