//! `/v1/plugins`: upload (validate, compile, store by sha256), list, inspect, delete, and dry-run
//! a plugin on sample events with production limits.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{AdminState, ApiError, ApiResult, Id, IdParam, Page, parse_json, parse_query, rfc3339};
use crate::event::ChainLog;
use crate::plugin::dry_run::{DryRunReport, dry_run};
use crate::plugin::{CompiledPlugin, PluginError};
use crate::registry::PluginLoadError;
use crate::store::{PluginRow, now_ms};

/// Events per plugin call in a dry run, as in production batches.
const DRY_RUN_BATCH: usize = 100;
/// More sample events than this is a load test, not a dry run.
const MAX_DRY_RUN_EVENTS: usize = 10_000;
const MAX_NAME_LEN: usize = 200;

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(upload, list))
        .routes(routes!(show, remove))
        .routes(routes!(test))
}

/// A plugin as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Plugin)]
pub struct PluginView {
    /// The sha256 of the module's bytes.
    pub id: String,
    pub name: String,
    /// Bytes.
    pub size: i64,
    #[schema(format = DateTime)]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// Display name of the plugin (at most 200 bytes); `plugin-<id prefix>` when absent.
    name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DryRunRequest)]
pub(crate) struct TestRequest {
    /// Any JSON, passed to `pipeline_init`.
    #[serde(default)]
    #[schema(value_type = Value)]
    config: Option<serde_json::Value>,
    /// JSON-RPC log objects as a node returns them (at most 10,000).
    #[schema(value_type = Vec<Object>)]
    events: Vec<Box<RawValue>>,
}

/// The module's bytes, as the OpenAPI document shows them.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
struct WasmModule(#[allow(dead_code)] Vec<u8>);

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

/// Upload a plugin; the id is the sha256 of the bytes (200 when already stored).
#[utoipa::path(post, path = "/plugins", tag = "plugins", params(UploadQuery),
    request_body(description = "A WebAssembly module built with the guest SDK (the body is read as the module whatever its Content-Type)",
        content((WasmModule = "application/octet-stream"), (WasmModule = "application/wasm"))),
    responses(
        (status = 201, description = "Stored", body = PluginView),
        (status = 200, description = "The same bytes were already stored", body = PluginView),
        (status = 413, description = "Larger than the module limit", body = ErrorBody),
    ))]
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

/// List plugins.
#[utoipa::path(get, path = "/plugins", tag = "plugins",
    responses((status = 200, description = "Every plugin", body = Page<PluginView>)))]
async fn list(State(state): State<AdminState>) -> ApiResult<Json<Page<PluginView>>> {
    let items = state
        .store
        .list_plugins()
        .await?
        .into_iter()
        .map(PluginView::from)
        .collect();
    Ok(Json(Page::all(items)))
}

/// Show a plugin.
#[utoipa::path(get, path = "/plugins/{id}", tag = "plugins", params(IdParam),
    responses((status = 200, description = "The plugin", body = PluginView)))]
async fn show(State(state): State<AdminState>, Id(id): Id) -> ApiResult<Json<PluginView>> {
    let row = state
        .store
        .get_plugin(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("plugin", &id))?;
    Ok(Json(row.into()))
}

/// Delete a plugin (409 while a subscription uses it).
#[utoipa::path(delete, path = "/plugins/{id}", tag = "plugins", params(IdParam),
    responses((status = 204, description = "Deleted")))]
async fn remove(State(state): State<AdminState>, Id(id): Id) -> ApiResult<StatusCode> {
    if !state.store.delete_plugin(&id).await? {
        return Err(ApiError::not_found("plugin", &id));
    }
    state.runtime.forget(&id);
    tracing::info!(plugin = %id, "plugin deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Dry-run the plugin on sample events with production limits.
#[utoipa::path(post, path = "/plugins/{id}/test", tag = "plugins", params(IdParam),
    request_body = TestRequest,
    responses((status = 200, description = "What the plugin did with each event", body = DryRunReport)))]
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
        .map_err(|error| match error {
            PluginLoadError::Store(error) => ApiError::from(error),
            PluginLoadError::Missing(_) => ApiError::not_found("plugin", id),
            PluginLoadError::Compile(error) => ApiError::from(error),
        })
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
