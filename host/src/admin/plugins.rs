//! `/v1/plugins`: upload (validate, compile, store by sha256), list, inspect, delete, and dry-run
//! a plugin on sample events with production limits.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{AdminState, ApiError, ApiResult, Id, parse_json, parse_query, rfc3339};
use crate::event::ChainLog;
use crate::plugin::dry_run::{DryRunReport, dry_run};
use crate::plugin::{CompiledPlugin, PluginError};
use crate::store::{PluginRow, now_ms};

/// Events per plugin call in a dry run, as in production batches.
const DRY_RUN_BATCH: usize = 100;
/// More sample events than this is a load test, not a dry run.
const MAX_DRY_RUN_EVENTS: usize = 10_000;
const MAX_NAME_LEN: usize = 200;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/plugins", post(upload).get(list))
        .route("/plugins/{id}", get(show).delete(remove))
        .route("/plugins/{id}/test", post(test))
}

/// A plugin as the API shows it.
#[derive(Debug, Serialize)]
pub struct PluginView {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub created_at: String,
}

impl From<PluginRow> for PluginView {
    fn from(row: PluginRow) -> PluginView {
        PluginView {
            id: row.id,
            name: row.name,
            size: row.size,
            created_at: rfc3339(row.created_at),
        }
    }
}

#[derive(Serialize)]
struct PluginList {
    items: Vec<PluginView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestRequest {
    #[serde(default)]
    config: Option<serde_json::Value>,
    events: Vec<Box<RawValue>>,
}

/// Oversized or unreadable bodies answer in the API's error shape, not axum's plain text.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(rejection.status(), code, rejection.body_text())
    }
}

pub(crate) async fn upload(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PluginView>)> {
    let query: UploadQuery = parse_query(query.as_deref())?;
    let body = body?;
    let compiled = state.runtime.compile_async(body.to_vec()).await?;
    let name = plugin_name(query.name, &compiled.id)?;
    let row = PluginRow {
        id: compiled.id.clone(),
        name,
        size: body.len() as i64,
        created_at: now_ms(),
    };
    if state.store.insert_plugin(&row, &body).await? {
        state.registry.save_precompiled(&compiled).await;
        tracing::info!(plugin = %row.id, name = %row.name, size = row.size, "plugin uploaded");
        return Ok((StatusCode::CREATED, Json(row.into())));
    }
    // Same bytes as a stored plugin: answer with the stored one (its name and time).
    let stored = state.store.get_plugin(&row.id).await?.unwrap_or(row);
    Ok((StatusCode::OK, Json(stored.into())))
}

fn plugin_name(name: Option<String>, id: &str) -> ApiResult<String> {
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    match name {
        Some(name) if name.len() > MAX_NAME_LEN => Err(ApiError::bad_request(
            "invalid_name",
            format!("name is longer than {MAX_NAME_LEN} bytes"),
        )),
        Some(name) => Ok(name),
        None => Ok(format!("plugin-{}", id.get(..12).unwrap_or(id))),
    }
}

async fn list(State(state): State<AdminState>) -> ApiResult<Json<PluginList>> {
    let items = state
        .store
        .list_plugins()
        .await?
        .into_iter()
        .map(PluginView::from)
        .collect();
    Ok(Json(PluginList {
        items,
        next_cursor: None,
    }))
}

async fn show(State(state): State<AdminState>, Id(id): Id) -> ApiResult<Json<PluginView>> {
    let row = state
        .store
        .get_plugin(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("plugin", &id))?;
    Ok(Json(row.into()))
}

async fn remove(State(state): State<AdminState>, Id(id): Id) -> ApiResult<StatusCode> {
    if !state.store.delete_plugin(&id).await? {
        return Err(ApiError::not_found("plugin", &id));
    }
    state.runtime.forget(&id);
    tracing::info!(plugin = %id, "plugin deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn test(
    State(state): State<AdminState>,
    Id(id): Id,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<DryRunReport>> {
    let request: TestRequest = parse_json(&body?)?;
    if request.events.len() > MAX_DRY_RUN_EVENTS {
        let message = format!(
            "{} events; a dry run takes at most {MAX_DRY_RUN_EVENTS}",
            request.events.len()
        );
        return Err(ApiError::bad_request("too_many_events", message));
    }
    let logs = parse_events(&request.events)?;
    let config_json = request
        .config
        .map(|c| c.to_string())
        .unwrap_or_else(|| "null".to_string());
    let plugin = load_plugin(&state, &id).await?;
    let runtime = state.runtime.clone();
    let report =
        run_blocking(move || dry_run(&runtime, plugin, &config_json, &logs, DRY_RUN_BATCH)).await?;
    Ok(Json(report))
}

fn parse_events(events: &[Box<RawValue>]) -> ApiResult<Vec<ChainLog>> {
    events
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            ChainLog::from_raw(raw).map_err(|e| {
                ApiError::bad_request("invalid_event", format!("events[{index}]: {e}"))
            })
        })
        .collect()
}

/// The compiled plugin `id`: from memory, this host's precompiled code, or compiled from the store.
pub(super) async fn load_plugin(state: &AdminState, id: &str) -> ApiResult<Arc<CompiledPlugin>> {
    if state.store.get_plugin(id).await?.is_none() {
        return Err(ApiError::not_found("plugin", id));
    }
    state
        .registry
        .plugin(id)
        .await
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, "compile_failed", message))
}

/// Runs CPU-bound plugin work off the async runtime.
pub(super) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        tracing::error!(%error, "plugin task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the plugin task failed unexpectedly",
        )
    })
}

/// Checks that `config_json` is accepted by the plugin's `pipeline_init`, on a blocking thread.
pub(super) async fn check_config(
    state: &AdminState,
    plugin: Arc<CompiledPlugin>,
    config_json: String,
) -> ApiResult<()> {
    let runtime = state.runtime.clone();
    match run_blocking(move || runtime.instantiate(plugin, &config_json).map(drop)).await? {
        Ok(()) => Ok(()),
        Err(PluginError::ConfigRejected(message)) => {
            Err(ApiError::bad_request("invalid_plugin_config", message))
        }
        Err(other) => Err(ApiError::bad_request(
            "plugin_failed",
            format!("the plugin failed to start with this config: {other}"),
        )),
    }
}
