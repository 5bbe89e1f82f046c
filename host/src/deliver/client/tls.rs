//! TLS for `https` endpoints, as reqwest's `rustls` feature set it up before the webhook client
//! used hyper-util directly: rustls with the aws-lc-rs provider (unless the process installed
//! another default) and the platform's certificate verifier, which trusts what the system trusts.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;

use super::ClientBuildError;

pub(super) fn client_config() -> Result<ClientConfig, ClientBuildError> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier =
        rustls_platform_verifier::Verifier::new(Arc::clone(&provider)).map_err(|error| {
            ClientBuildError(format!("the platform's certificate verifier: {error}"))
        })?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientBuildError(format!("TLS versions: {error}")))?
        .dangerous()
        // Not dangerous: the platform verifier checks chains and names as the system does.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}
