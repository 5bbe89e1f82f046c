//! `/healthz` (the process answers) and `/readyz` (the store answers, every chain is connected,
//! the async runtime is not stalled). Both open: load balancers carry no token.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AdminState;
use crate::ingest::ChainHealth;

const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// Timer lateness above this means the runtime is too busy to serve the pipeline.
const MAX_SCHEDULER_LAG_MS: u64 = 1000;

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The process answers.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadyStatus {
    Ready,
    NotReady,
}

/// Readiness: every check, by name (`store`, `chain:<name>`, `runtime`).
#[derive(Serialize, ToSchema)]
struct Readiness {
    status: ReadyStatus,
    checks: BTreeMap<String, Check>,
}

/// One readiness check: whether it passed, and why not.
#[derive(Serialize, ToSchema)]
struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Check {
    fn pass() -> Check {
        Check {
            ok: true,
            detail: None,
        }
    }

    fn fail(detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            detail: Some(detail.into()),
        }
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "The process answers", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: store reachable, chains connected, runtime responsive.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the failing checks say why", body = Readiness),
    ))]
async fn readyz(State(state): State<AdminState>) -> (StatusCode, Json<Readiness>) {
    let mut checks = BTreeMap::from([("store".to_string(), store_check(&state).await)]);
    checks.extend(
        state
            .chains
            .iter()
            .map(|chain| (format!("chain:{}", chain.name), chain_check(chain))),
    );
    checks.insert("runtime".to_string(), runtime_check(&state));
    let ready = checks.values().all(|check| check.ok);
    let (status, code) = if ready {
        (ReadyStatus::Ready, StatusCode::OK)
    } else {
        (ReadyStatus::NotReady, StatusCode::SERVICE_UNAVAILABLE)
    };
    (code, Json(Readiness { status, checks }))
}

async fn store_check(state: &AdminState) -> Check {
    match tokio::time::timeout(STORE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Check::pass(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: store ping failed");
            Check::fail("the database did not answer")
        }
        Err(_) => Check::fail(format!(
            "the database did not answer within {} s",
            STORE_TIMEOUT.as_secs()
        )),
    }
}

/// A chain that has never connected is not ready either; the reason (last error, node URL
/// redacted to scheme and host) shows either way.
fn chain_check(chain: &ChainHealth) -> Check {
    match chain.readiness() {
        Ok(detail) => Check { ok: true, detail },
        Err(why) => Check::fail(why),
    }
}

fn runtime_check(state: &AdminState) -> Check {
    let lag_ms = state.scheduler_lag_ms.load(Ordering::Relaxed);
    if lag_ms < MAX_SCHEDULER_LAG_MS {
        Check::pass()
    } else {
        Check::fail(format!("timers fire {lag_ms} ms late"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_check_says_why_without_the_node_url_secret() {
        let chain = ChainHealth::default();
        let raw = "wss://x.example/v3/KEY123?apikey=KEY456";
        if let Ok(mut slot) = chain.last_error.lock() {
            *slot = Some(crate::ingest::LastError {
                url: crate::redact::url(raw),
                message: "connection closed by the node".into(),
                at_ms: crate::store::now_ms(),
            });
        }
        let check = serde_json::json!(chain_check(&chain));
        assert_eq!(check["ok"], false);
        let detail = check["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with(
                "chain 0 not connected: wss://x.example/…: connection closed by the node"
            ),
            "{detail}"
        );
        assert!(!check.to_string().contains("KEY"), "{check}");
    }
}
