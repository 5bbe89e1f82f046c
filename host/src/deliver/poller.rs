//! Finds deliveries that are due (retries, and rows orphaned by a crashed replica whose lease
//! expired), leases them and feeds them to the workers. A source: it watches the shutdown token.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::outbox::DeliveryJob;
use crate::store::Store;

const CLAIM_LIMIT: i64 = 500;

pub async fn run(
    store: Store,
    jobs: mpsc::Sender<DeliveryJob>,
    interval: Duration,
    lease_ms: i64,
    shutdown: CancellationToken,
) {
    loop {
        let claimed = match store.claim_due(CLAIM_LIMIT, lease_ms).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "claiming due deliveries failed");
                Vec::new()
            }
        };
        let full = claimed.len() as i64 == CLAIM_LIMIT;
        for row in claimed {
            let job = DeliveryJob {
                id: row.id,
                endpoint_id: row.endpoint_id,
                body: Arc::from(row.body),
                attempts: row.attempts,
                received_at: None,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                sent = jobs.send(job) => if sent.is_err() { return },
            }
        }
        if full {
            continue; // more are due: claim again at once
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
