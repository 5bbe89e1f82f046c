//! `/v1/subscriptions/{id}/canary`: start a candidate plugin in shadow on the subscription's live
//! batches, read how its decisions compare, promote it (one store transaction swaps it in; the
//! matcher uses it from its next batch) or discard it. A second canary while one runs is `409`:
//! the running one's results would be lost silently, so discarding it is the caller's explicit act.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{SubscriptionView, json_value, load, view};
use crate::admin::plugins::{check_config, load_plugin};
use crate::admin::{AdminState, ApiError, ApiResult, Id, IdParam, new_id, parse_json, rfc3339};
use crate::store::{CanaryExample, CanaryRow, CanaryTally, now_ms};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CanaryStart)]
pub(super) struct StartCanary {
    plugin_id: String,
    /// The config passed to the candidate's `pipeline_init`, any JSON.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    plugin_config: Option<Value>,
}

/// A canary as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Canary)]
pub struct CanaryView {
    pub id: String,
    pub subscription_id: String,
    pub plugin_id: String,
    #[schema(value_type = Value)]
    pub plugin_config: Value,
    /// Per event, the candidate's decision against the live plugin's.
    pub events: EventCounts,
    /// Candidate batches that failed; each failed batch's events are not compared.
    pub failures: FailureCounts,
    pub batches_compared: i64,
    /// Batches not compared because the canary's queue was full (the live path never waits).
    pub batches_skipped: i64,
    pub events_skipped: i64,
    /// The first differing events (at most 100), in chain order, with both outputs.
    pub examples: Vec<ExampleView>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CanaryEventCounts)]
pub struct EventCounts {
    pub compared: i64,
    pub same: i64,
    pub only_live_kept: i64,
    pub only_canary_kept: i64,
    pub data_differs: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CanaryFailureCounts)]
pub struct FailureCounts {
    pub traps: i64,
    pub out_of_fuel: i64,
    pub bad_output: i64,
    pub other: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CanaryExample)]
pub struct ExampleView {
    pub block_number: i64,
    pub block_hash: String,
    pub transaction_hash: String,
    pub log_index: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `{"kept": bool, "data": …}`
    #[schema(value_type = Value)]
    pub live: Value,
    #[schema(value_type = Value)]
    pub canary: Value,
}

impl CanaryView {
    pub fn new(row: CanaryRow, examples: Vec<CanaryExample>) -> CanaryView {
        let CanaryTally {
            events_compared,
            same,
            only_live_kept,
            only_canary_kept,
            data_differs,
            batches_compared,
            batches_skipped,
            events_skipped,
            traps,
            out_of_fuel,
            bad_output,
            other_failures,
            last_failure,
        } = row.tally;
        CanaryView {
            plugin_config: json_value(row.plugin_config.as_deref()),
            id: row.id,
            subscription_id: row.subscription_id,
            plugin_id: row.plugin_id,
            events: EventCounts {
                compared: events_compared,
                same,
                only_live_kept,
                only_canary_kept,
                data_differs,
            },
            failures: FailureCounts {
                traps,
                out_of_fuel,
                bad_output,
                other: other_failures,
                last_error: last_failure,
            },
            batches_compared,
            batches_skipped,
            events_skipped,
            examples: examples.into_iter().map(ExampleView::from).collect(),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

impl From<CanaryExample> for ExampleView {
    fn from(e: CanaryExample) -> ExampleView {
        ExampleView {
            live: json_value(Some(&e.live)),
            canary: json_value(Some(&e.canary)),
            block_number: e.block_number,
            block_hash: e.block_hash,
            transaction_hash: e.tx_hash,
            log_index: e.log_index,
            event_type: e.event_type,
        }
    }
}

/// `POST /v1/subscriptions/{id}/canary`
#[utoipa::path(post, path = "/subscriptions/{id}/canary", tag = "subscriptions", params(IdParam),
    request_body = StartCanary,
    responses((status = 201, description = "The canary, started", body = CanaryView)))]
pub(super) async fn start(
    State(state): State<AdminState>,
    Id(id): Id,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CanaryView>)> {
    let request: StartCanary = parse_json(&body?)?;
    load(&state, &id).await?;
    if state.store.get_plugin(&request.plugin_id).await?.is_none() {
        let message = format!("plugin {:?} does not exist", request.plugin_id);
        return Err(ApiError::bad_request("unknown_plugin", message));
    }
    let plugin_config = request
        .plugin_config
        .filter(|c| !c.is_null())
        .map(|c| c.to_string());
    let plugin = load_plugin(&state, &request.plugin_id).await?;
    let config_json = plugin_config.clone().unwrap_or_else(|| "null".to_string());
    check_config(&state, plugin, config_json).await?;
    let now = now_ms();
    let row = CanaryRow {
        id: new_id("can"),
        subscription_id: id.clone(),
        plugin_id: request.plugin_id,
        plugin_config,
        tally: CanaryTally::default(),
        created_at: now,
        updated_at: now,
    };
    if !state.store.insert_canary(&row).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "canary_exists",
            format!("subscription {id} already has a canary; DELETE it first to start another"),
        ));
    }
    state.registry.reload_subscription(&id).await?;
    tracing::info!(subscription = %id, canary = %row.id, plugin = %row.plugin_id, "canary started");
    Ok((StatusCode::CREATED, Json(CanaryView::new(row, Vec::new()))))
}

/// `GET /v1/subscriptions/{id}/canary`
#[utoipa::path(get, path = "/subscriptions/{id}/canary", tag = "subscriptions", params(IdParam),
    responses((status = 200, description = "How the candidate's decisions compare", body = CanaryView)))]
pub(super) async fn show(
    State(state): State<AdminState>,
    Id(id): Id,
) -> ApiResult<Json<CanaryView>> {
    load(&state, &id).await?;
    let row = running(&state, &id).await?;
    let examples = state.store.list_canary_examples(&row.id).await?;
    Ok(Json(CanaryView::new(row, examples)))
}

/// `POST /v1/subscriptions/{id}/canary/promote`: the subscription as it is now.
#[utoipa::path(post, path = "/subscriptions/{id}/canary/promote", tag = "subscriptions", params(IdParam),
    responses((status = 200, description = "The subscription, now with the candidate's plugin", body = SubscriptionView)))]
pub(super) async fn promote(
    State(state): State<AdminState>,
    Id(id): Id,
) -> ApiResult<Json<SubscriptionView>> {
    load(&state, &id).await?;
    let Some(canary) = state.store.promote_canary(&id).await? else {
        return Err(no_canary(&id));
    };
    // The matcher takes one snapshot per batch: every batch is decided wholly by the old plugin
    // or wholly by the new one.
    state.registry.reload_subscription(&id).await?;
    tracing::info!(subscription = %id, canary = %canary.id, plugin = %canary.plugin_id, "canary promoted");
    view(&state, load(&state, &id).await?).await
}

/// `DELETE /v1/subscriptions/{id}/canary`
#[utoipa::path(delete, path = "/subscriptions/{id}/canary", tag = "subscriptions", params(IdParam),
    responses((status = 204, description = "Discarded")))]
pub(super) async fn discard(State(state): State<AdminState>, Id(id): Id) -> ApiResult<StatusCode> {
    load(&state, &id).await?;
    if !state.store.delete_canary(&id).await? {
        return Err(no_canary(&id));
    }
    state.registry.reload_subscription(&id).await?;
    tracing::info!(subscription = %id, "canary discarded");
    Ok(StatusCode::NO_CONTENT)
}

async fn running(state: &AdminState, id: &str) -> ApiResult<CanaryRow> {
    state
        .store
        .get_canary(id)
        .await?
        .ok_or_else(|| no_canary(id))
}

fn no_canary(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("subscription {id} has no canary"),
    )
}
