//! The admin API (axum): one file per resource, one `ApiError`, scoped bearer-token auth on `/v1`.
//! Every mutation writes the store first, then tells the registry which subscription or endpoint
//! it changed (`reload_subscription`/`reload_endpoint`), so the pipeline picks the change up
//! without a restart and before the response. Every route is registered from its handler's `#[utoipa::path]`
//! with `.routes(routes!(handler))`, so the OpenAPI document (`openapi.rs`) is the route table.

pub mod auth;
pub(crate) mod deliveries;
pub(crate) mod endpoints;
pub mod error;
mod health;
mod input;
pub(crate) mod openapi;
mod page;
pub(crate) mod plugins;
pub(crate) mod schema;
pub(crate) mod subscriptions;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::config::ServerLimits;
use crate::deliver::client::WebhookClient;
use crate::ingest::ChainHealth;
use crate::matcher::PluginLogBook;
use crate::metrics::Metrics;
use crate::plugin::PluginRuntime;
use crate::registry::Registry;
use crate::store::Store;
pub use error::{ApiError, ApiResult};
pub use input::{Id, IdParam, parse_json, parse_query};
pub use page::Page;

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub registry: Registry,
    pub runtime: PluginRuntime,
    /// Used to check endpoint URLs with the same rules deliveries follow.
    pub client: WebhookClient,
    pub log_book: PluginLogBook,
    pub chains: Vec<Arc<ChainHealth>>,
    pub metrics: Metrics,
    /// sha256 of the bootstrap token (admin scope); other tokens are in the store.
    pub token_sha256: Arc<[u8; 32]>,
    /// Watchdog: milliseconds the last 100 ms timer fired late; large = runtime stalled.
    pub scheduler_lag_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Connection cap and timeouts of the server (`[server]`).
    pub limits: ServerLimits,
    /// Each ingested chain's `confirmations`, to re-time held deliveries when a subscription's
    /// confirmations change.
    pub chain_confirmations: Arc<std::collections::HashMap<u64, u64>>,
    /// The console's sample ring and the dispatcher's circuit breakers.
    pub console: crate::console::ConsoleShared,
}

/// The full router: the API (`/healthz`, `/readyz`, `/v1` behind the token) and the console.
pub fn router(state: AdminState) -> Router {
    let (api, _) = api(Some(&state)).split_for_parts();
    Router::new()
        .merge(api)
        .merge(crate::console::router(state.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .with_state(state)
}

/// Every API route with its OpenAPI description (`openapi.rs`). With a state, `/v1` gets the
/// token check and the plugin upload its body limit; without one (the document alone) neither
/// changes what is documented.
fn api(state: Option<&AdminState>) -> OpenApiRouter<AdminState> {
    let max_upload = state.map_or(0, |s| s.runtime.limits().max_module_bytes + (1 << 20));
    let mut v1 = OpenApiRouter::new()
        .merge(plugins::routes().layer(DefaultBodyLimit::max(max_upload)))
        .merge(endpoints::routes())
        .merge(subscriptions::routes())
        .merge(deliveries::routes())
        .merge(tokens::routes())
        .merge(openapi::routes());
    if let Some(state) = state {
        v1 = v1.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    }
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::routes())
        .nest("/v1", v1)
}

/// Serves the admin API within `state.limits` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    let limits = state.limits.clone();
    crate::server::serve("admin", listener, router(state), &limits, shutdown).await;
}

/// Random id with a resource prefix, e.g. `ep_5f0c…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// Unix milliseconds as RFC 3339, for responses.
pub fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests;
