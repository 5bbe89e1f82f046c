//! Finds deliveries that are due (retries, and rows orphaned by a crashed replica whose lease
//! expired), leases them and feeds them to the workers. A source: it watches the shutdown token.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{JobRoom, JobSender};
use crate::metrics::Metrics;
use crate::outbox::DeliveryJob;
use crate::store::Store;

const CLAIM_LIMIT: i64 = 500;
/// Below this much room the poller waits rather than claim a handful.
const MIN_CLAIM: i64 = 50;
/// Nor does it claim with less than this much room for bodies (bytes).
const MIN_CLAIM_BODY_BYTES: i64 = 1 << 20;

/// Wakes the poller before its interval is over: deliveries became due that only it sends
/// (ordered deliveries, whose key's previous one was just recorded; sealed batches).
pub type Wake = Arc<Notify>;

#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Store,
    jobs: JobSender,
    room: JobRoom,
    interval: Duration,
    lease_ms: i64,
    metrics: Metrics,
    wake: Wake,
    shutdown: CancellationToken,
) {
    loop {
        // Claim only what the workers have room for, in jobs and in their bodies' bytes: a
        // claimed job that finds no room is handed back to the store, and claiming it again and
        // again would only churn the database.
        let limit = CLAIM_LIMIT.min((room.jobs.available_permits() / 2) as i64);
        let body_bytes = i64::try_from(room.bodies.available_kib() * 1024 / 2).unwrap_or(i64::MAX);
        let claimed = if limit < MIN_CLAIM || body_bytes < MIN_CLAIM_BODY_BYTES {
            Vec::new()
        } else {
            match store.claim_due(limit, body_bytes, lease_ms).await {
                Ok(rows) => rows,
                Err(error) => {
                    metrics.db_errors.with_label_values(&["claim"]).inc();
                    tracing::warn!(%error, "claiming due deliveries failed");
                    Vec::new()
                }
            }
        };
        if !claimed.is_empty() {
            tracing::debug!(claimed = claimed.len(), "due deliveries claimed");
        }
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
                room: Default::default(),
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
