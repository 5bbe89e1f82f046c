//! Keeps held deliveries from being stranded (`Store::reconcile_held`): once at start — the
//! chain's `confirmations` may have changed in the configuration since they were held — and then
//! periodically, for what the admin API cannot do at once: a delivery written by a batch matched
//! against a subscription that was deleted or changed meanwhile, a change made through a replica
//! that does not ingest the chain. A source: it watches the shutdown token.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{HeldChanges, Store};

/// Between passes. A pass reads only the rows still held (one index range).
pub const INTERVAL: Duration = Duration::from_secs(30);
/// A pass that takes longer is abandoned and tried again at the next interval.
const PASS_TIMEOUT: Duration = Duration::from_secs(60);

/// Reconciles every chain in `chains` (chain id → the chain's confirmations) now, then every
/// `interval`, until `shutdown`.
pub async fn run(
    store: Store,
    chains: HashMap<u64, u64>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        for (&chain_id, &confirmations) in &chains {
            let pass = store.reconcile_held(chain_id, confirmations);
            match tokio::time::timeout(PASS_TIMEOUT, pass).await {
                Ok(Ok(changes)) if changes != HeldChanges::default() => {
                    tracing::info!(
                        chain_id,
                        cancelled = changes.cancelled,
                        rescheduled = changes.rescheduled,
                        released = changes.released,
                        "held deliveries reconciled"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(chain_id, %error, "reconciling held deliveries failed")
                }
                Err(_) => tracing::warn!(chain_id, "reconciling held deliveries timed out"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
