//! Endpoint secrets at start: the store gets `secret_key`'s keys and every stored secret is
//! re-sealed under the first one (`store/secrets.rs`), or left in plaintext with a warning.

use crate::config::{self, Config};
use crate::store::Store;

/// The store with `secret_key`'s keys, every endpoint secret re-sealed under the first one. A
/// secret no configured key opens is a configuration error (exit 2), found before anything runs.
pub(super) async fn seal(store: Store, config: &Config) -> anyhow::Result<Store> {
    let keys = config.secret_keys().map_err(config::InvalidConfig)?;
    let store = store.with_secret_keys(crate::store::SecretKeys::new(&keys));
    match store.reseal_endpoint_secrets().await {
        Ok(resealed) if keys.is_empty() => {
            tracing::warn!(
                "secret_key (PIPELINE_SECRET_KEY) is not set: endpoint secrets are stored in plaintext"
            );
            if resealed > 0 {
                tracing::warn!(
                    endpoints = resealed,
                    "endpoint secrets decrypted to plaintext"
                );
            }
        }
        Ok(resealed) => tracing::info!(
            endpoints = resealed,
            "endpoint secrets re-encrypted under the first secret key"
        ),
        Err(crate::store::StoreError::Secret(e)) => {
            return Err(config::InvalidConfig(anyhow::anyhow!(e)).into());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("encrypting endpoint secrets")),
    }
    Ok(store)
}
