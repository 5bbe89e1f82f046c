//! `/v1/subscriptions`: what to watch (chain, addresses, positional topics), which plugin filters
//! it, where it goes; plus the plugin's recent logs, parked events and their reprocessing, and a
//! candidate plugin's canary (`canary.rs`).

pub(crate) mod canary;
mod chain_view;
pub(crate) mod modes;
pub(crate) mod reprocess;
pub(crate) mod update;
mod views;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::plugins::{check_config, load_plugin};
use super::schema::{self, OnDead, Ordering, OrderingKey};
use super::{AdminState, ApiError, ApiResult, Id, IdParam, Page, new_id, parse_json, rfc3339};
use crate::registry::{parse_addresses, parse_topics};
use crate::store::{SubscriptionRow, SubscriptionStatus, now_ms};
pub use views::SubscriptionView;
use views::{ParkedView, PluginLogLine, PluginLogLines};

/// Parked events listed per request.
const PARKED_PAGE: i64 = 100;

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update::update, remove))
        .routes(routes!(logs))
        .routes(routes!(parked))
        .routes(routes!(reprocess::reprocess))
        .routes(routes!(canary::start, canary::show, canary::discard))
        .routes(routes!(canary::promote))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SubscriptionCreate)]
struct CreateSubscription {
    endpoint_id: String,
    /// A chain this host ingests.
    #[schema(minimum = 1)]
    chain_id: i64,
    #[serde(default)]
    #[schema(schema_with = schema::addresses)]
    addresses: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = schema::topics)]
    topics: Option<Value>,
    #[serde(default)]
    plugin_id: Option<String>,
    /// Any JSON, passed to the plugin's `pipeline_init`; needs `plugin_id`.
    #[serde(default)]
    #[schema(value_type = Value)]
    plugin_config: Option<Value>,
    /// Blocks to wait past the event's block before delivering it.
    #[serde(default)]
    #[schema(maximum = 1_000_000)]
    confirmations: Option<u32>,
    #[serde(default, deserialize_with = "update::present")]
    #[schema(schema_with = schema::batch)]
    batch: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Ordering>)]
    ordering: Option<String>,
    /// `address`: one order per contract (not with `batch`).
    #[serde(default)]
    #[schema(value_type = Option<OrderingKey>)]
    ordering_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<OnDead>)]
    on_dead: Option<String>,
}

/// Create a subscription.
#[utoipa::path(post, path = "/subscriptions", tag = "subscriptions",
    request_body = CreateSubscription,
    responses((status = 201, description = "Created", body = SubscriptionView)))]
async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    let request: CreateSubscription = parse_json(&body?)?;
    if request.chain_id <= 0 {
        return Err(ApiError::bad_request(
            "invalid_chain_id",
            "chain_id must be a positive integer",
        ));
    }
    // A typo in chain_id would otherwise give a subscription that silently never fires.
    let configured: Vec<u64> = state.chains.iter().map(|c| c.chain_id).collect();
    if !configured.is_empty() && !configured.contains(&(request.chain_id as u64)) {
        return Err(ApiError::bad_request(
            "unknown_chain",
            format!(
                "chain_id {} is not ingested by this host; configured: {configured:?}",
                request.chain_id
            ),
        ));
    }
    if state
        .store
        .get_endpoint(&request.endpoint_id)
        .await?
        .is_none()
    {
        let message = format!("endpoint {:?} does not exist", request.endpoint_id);
        return Err(ApiError::bad_request("unknown_endpoint", message));
    }
    let now = now_ms();
    let row = SubscriptionRow {
        id: new_id("sub"),
        endpoint_id: request.endpoint_id,
        chain_id: request.chain_id,
        addresses: addresses_text(request.addresses.as_ref())?,
        topics: topics_text(request.topics.as_ref())?,
        plugin_id: request.plugin_id,
        plugin_config: request
            .plugin_config
            .filter(|c| !c.is_null())
            .map(|c| c.to_string()),
        confirmations: checked_confirmations(request.confirmations)?.unwrap_or(0),
        status: SubscriptionStatus::Active,
        last_error: None,
        created_at: now,
        updated_at: now,
        mode: modes::ModeFields {
            batch: request.batch,
            ordering: request.ordering,
            ordering_key: request.ordering_key,
            on_dead: request.on_dead,
        }
        .apply(&Default::default())?,
    };
    check_plugin(&state, &row).await?;
    state.store.insert_subscription(&row).await?;
    state.registry.reload_subscription(&row.id).await?;
    tracing::info!(subscription = %row.id, endpoint = %row.endpoint_id, chain_id = row.chain_id, "subscription created");
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionView::new(row, 0, Vec::new())),
    ))
}

/// List subscriptions.
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions",
    responses((status = 200, description = "Every subscription", body = Page<SubscriptionView>)))]
async fn list(State(state): State<AdminState>) -> ApiResult<Json<Page<SubscriptionView>>> {
    let rows = state.store.list_subscriptions().await?;
    let parked_counts = state.store.count_parked_by_subscription().await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let parked = parked_counts.get(&row.id).copied().unwrap_or(0);
        // Only an ordered subscription asks the store (unordered ones have no blocked keys).
        let blocked = modes::blocked(&state, &row).await?;
        items.push(SubscriptionView::new(row, parked, blocked));
    }
    Ok(Json(Page::all(items)))
}

/// Show a subscription with its status, last plugin error and parked events.
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "subscriptions", params(IdParam),
    responses((status = 200, description = "The subscription", body = SubscriptionView)))]
async fn show(State(state): State<AdminState>, Id(id): Id) -> ApiResult<Json<SubscriptionView>> {
    let row = load(&state, &id).await?;
    view(&state, row).await
}

/// Delete a subscription and its parked events.
#[utoipa::path(delete, path = "/subscriptions/{id}", tag = "subscriptions", params(IdParam),
    responses((status = 204, description = "Deleted")))]
async fn remove(State(state): State<AdminState>, Id(id): Id) -> ApiResult<StatusCode> {
    if !state.store.delete_subscription(&id).await? {
        return Err(ApiError::not_found("subscription", &id));
    }
    state.store.delete_all_parked(&id).await?;
    state.registry.reload_subscription(&id).await?;
    tracing::info!(subscription = %id, "subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Recent plugin log lines.
#[utoipa::path(get, path = "/subscriptions/{id}/logs", tag = "subscriptions", params(IdParam),
    responses((status = 200, description = "Oldest first", body = PluginLogLines)))]
async fn logs(State(state): State<AdminState>, Id(id): Id) -> ApiResult<Json<PluginLogLines>> {
    load(&state, &id).await?;
    let items = state
        .log_book
        .recent(&id)
        .into_iter()
        .map(|line| PluginLogLine {
            at: rfc3339(line.at),
            level: line.level.to_string(),
            message: line.message,
        })
        .collect();
    Ok(Json(PluginLogLines { items }))
}

/// Events held back by a failing plugin (first 100).
#[utoipa::path(get, path = "/subscriptions/{id}/parked", tag = "subscriptions", params(IdParam),
    responses((status = 200, description = "Oldest first", body = Page<ParkedView>)))]
async fn parked(State(state): State<AdminState>, Id(id): Id) -> ApiResult<Json<Page<ParkedView>>> {
    load(&state, &id).await?;
    let items = state
        .store
        .list_parked(&id, PARKED_PAGE)
        .await?
        .into_iter()
        .map(ParkedView::from)
        .collect();
    Ok(Json(Page::all(items)))
}

pub(crate) async fn load(state: &AdminState, id: &str) -> ApiResult<SubscriptionRow> {
    state
        .store
        .get_subscription(id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription", id))
}

async fn view(state: &AdminState, row: SubscriptionRow) -> ApiResult<Json<SubscriptionView>> {
    let parked = state.store.count_parked(&row.id).await?;
    let blocked = modes::blocked(state, &row).await?;
    Ok(Json(SubscriptionView::new(row, parked, blocked)))
}

/// The plugin exists and its `pipeline_init` accepts the config.
async fn check_plugin(state: &AdminState, row: &SubscriptionRow) -> ApiResult<()> {
    let Some(plugin_id) = &row.plugin_id else {
        if row.plugin_config.is_some() {
            return Err(ApiError::bad_request(
                "invalid_plugin_config",
                "plugin_config needs a plugin_id",
            ));
        }
        return Ok(());
    };
    if state.store.get_plugin(plugin_id).await?.is_none() {
        return Err(ApiError::bad_request(
            "unknown_plugin",
            format!("plugin {plugin_id:?} does not exist"),
        ));
    }
    let plugin = load_plugin(state, plugin_id).await?;
    let config_json = row
        .plugin_config
        .clone()
        .unwrap_or_else(|| "null".to_string());
    check_config(state, plugin, config_json).await
}

/// A subscription's confirmations, at most what a chain may be configured with (a larger one
/// would hold its deliveries for ever; schemathesis found 2^31 accepted).
fn checked_confirmations(confirmations: Option<u32>) -> ApiResult<Option<i64>> {
    match confirmations {
        Some(n) if u64::from(n) > crate::config::MAX_CONFIRMATIONS => Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "confirmations must be at most {}, got {n}",
                crate::config::MAX_CONFIRMATIONS
            ),
        )),
        other => Ok(other.map(i64::from)),
    }
}

/// Addresses as stored: a JSON array of lowercase hex, or `None` for any emitter.
fn addresses_text(value: Option<&Value>) -> ApiResult<Option<String>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let invalid = |message: String| ApiError::bad_request("invalid_filter", message);
    let parsed = parse_addresses(Some(&value.to_string())).map_err(invalid)?;
    let Some(addresses) = parsed else {
        return Ok(None);
    };
    if addresses.is_empty() {
        return Err(invalid(
            "an empty address list matches nothing; leave addresses out for any".into(),
        ));
    }
    let lowercase: Vec<String> = addresses.iter().map(|a| format!("{a:#x}")).collect();
    Ok(Some(Value::from(lowercase).to_string()))
}

/// Topics as stored: the positional filter with lowercase hex, or `None` for any.
fn topics_text(value: Option<&Value>) -> ApiResult<Option<String>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let text = value.to_string();
    let positions =
        parse_topics(Some(&text)).map_err(|e| ApiError::bad_request("invalid_filter", e))?;
    // Validated: only null, arrays and hex strings remain, so lowercasing the text is exact.
    Ok((!positions.is_empty()).then(|| text.to_ascii_lowercase()))
}

/// A stored JSON text as a value (a string if it somehow is not JSON).
fn json_value(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::from(text)),
    }
}
