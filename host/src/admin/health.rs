//! `/healthz` (the process answers) and `/readyz` (the store answers, every chain is connected,
//! the async runtime is not stalled). Both open: load balancers carry no token.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::AdminState;
use crate::ingest::ChainHealth;

const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// Timer lateness above this means the runtime is too busy to serve the pipeline.
const MAX_SCHEDULER_LAG_MS: u64 = 1000;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// One readiness check: whether it passed, and why not.
#[derive(Serialize)]
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

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, Json<Value>) {
    let mut checks = vec![("store".to_string(), store_check(&state).await)];
    checks.extend(
        state
            .chains
            .iter()
            .map(|chain| (format!("chain:{}", chain.name), chain_check(chain))),
    );
    checks.push(("runtime".to_string(), runtime_check(&state)));
    let ready = checks.iter().all(|(_, check)| check.ok);
    let checks: Map<String, Value> = checks
        .into_iter()
        .map(|(name, check)| (name, json!(check)))
        .collect();
    if ready {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": checks})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "checks": checks})),
        )
    }
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
        let check = json!(chain_check(&chain));
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
