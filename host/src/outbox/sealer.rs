//! Seals `{max_events, max_wait_ms}` batches whose wait is over, so a batch that stops filling
//! still leaves `max_wait_ms` (plus at most one period) after its first event. A source: it
//! watches the shutdown token. Sealing happens in the store (`Store::seal_expired_batches`,
//! `now` passed in); the batch is then due and the poller, woken, sends it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::deliver::poller::Wake;
use crate::metrics::Metrics;
use crate::store::{Store, now_ms};

/// How often the sealer looks for batches past their wait.
pub const PERIOD: Duration = Duration::from_millis(100);

pub async fn run(store: Store, poller: Wake, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PERIOD) => {}
        }
        let sealing = store.seal_expired_batches(now_ms());
        match tokio::time::timeout(Duration::from_secs(30), sealing).await {
            Ok(Ok(0)) => {}
            Ok(Ok(sealed)) => {
                tracing::debug!(sealed, "batches sealed after their wait");
                poller.notify_one();
            }
            Ok(Err(error)) => {
                metrics.db_errors.with_label_values(&["seal_batches"]).inc();
                tracing::warn!(%error, "sealing batches failed; trying again");
            }
            Err(_) => {
                metrics.db_errors.with_label_values(&["seal_batches"]).inc();
                tracing::warn!("sealing batches timed out; trying again");
            }
        }
    }
}
