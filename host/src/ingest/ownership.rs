//! Which replica ingests a chain: wait for the chain's lock, stand by while another replica holds it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ChainHealth;
use crate::store::{ChainLock, Store};

/// How often a standby replica asks for the chain, and how often an owner checks it still owns it.
pub const OWNERSHIP_CHECK: Duration = Duration::from_secs(5);

/// Waits until this replica owns the chain; `None` if shutdown came first.
pub async fn acquire(
    store: &Store,
    health: &ChainHealth,
    shutdown: &CancellationToken,
) -> Option<ChainLock> {
    let mut announced = false;
    loop {
        match store.try_lock_chain(health.chain_id).await {
            Ok(Some(lock)) => {
                health.standby.store(false, Ordering::Relaxed);
                if announced {
                    tracing::info!(chain = %health.name, "took over the chain");
                }
                return Some(lock);
            }
            Ok(None) => {
                health.standby.store(true, Ordering::Relaxed);
                if !announced {
                    tracing::info!(chain = %health.name, "another replica ingests this chain; standing by");
                    announced = true;
                }
            }
            Err(error) => {
                tracing::warn!(chain = %health.name, %error, "cannot take the chain lock")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(OWNERSHIP_CHECK) => {}
        }
    }
}
