//! `/v1/deliveries`: delivery status with filters and cursor pagination (newest first), one
//! delivery with its body and attempts, and manual retry.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::schema::{DeliveryStatus, EventTypeName};
use super::{AdminState, ApiError, ApiResult, Id, IdParam, Page, parse_query, rfc3339};
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(retry))
}

/// A delivery as the API shows it, times as RFC 3339.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView {
    pub id: String,
    pub subscription_id: String,
    pub endpoint_id: String,
    pub chain_id: i64,
    #[schema(value_type = EventTypeName)]
    pub event_type: String,
    pub block_number: i64,
    pub status: DeliveryStatus,
    pub attempt_count: i64,
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(row: DeliveryRow) -> DeliveryView {
        DeliveryView {
            id: row.id,
            subscription_id: row.subscription_id,
            endpoint_id: row.endpoint_id,
            chain_id: row.chain_id,
            event_type: row.event_type,
            block_number: row.block_number,
            status: row.status,
            attempt_count: row.attempts,
            next_attempt_at: rfc3339(row.next_attempt_at),
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Attempt)]
pub struct AttemptView {
    pub attempt: i64,
    /// The receiver's status; null when no answer came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The first 4 KiB of the receiver's answer, control characters escaped.
    pub response_body: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> AttemptView {
        AttemptView {
            attempt: row.attempt,
            status_code: row.status_code,
            latency_ms: row.latency_ms,
            error: row.error,
            response_body: row.response_body,
            created_at: rfc3339(row.created_at),
        }
    }
}

/// One delivery in full: every attempt, and the webhook body as sent.
#[derive(Serialize, ToSchema)]
struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryView,
    /// The webhook body as sent.
    #[schema(value_type = Value)]
    body: Value,
    /// Every attempt, oldest first.
    attempts: Vec<AttemptView>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RetryAnswer {
    id: String,
    /// Always `retrying`.
    status: DeliveryStatus,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this subscription's.
    subscription_id: Option<String>,
    /// Only this endpoint's.
    endpoint_id: Option<String>,
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
    /// Page size, 50 by default; more than 500 is taken as 500.
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// List deliveries, newest first.
#[utoipa::path(get, path = "/deliveries", tag = "deliveries", params(ListQuery),
    responses((status = 200, description = "A page of deliveries", body = Page<DeliveryView>)))]
async fn list(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let query: ListQuery = parse_query(query.as_deref())?;
    let filter = filter(query)?;
    let rows = state.store.list_deliveries(&filter).await?;
    let next_cursor = match rows.last() {
        Some(last) if rows.len() as i64 == filter.limit => Some(last.seq.to_string()),
        _ => None,
    };
    let items = rows.into_iter().map(DeliveryView::from).collect();
    Ok(Json(Page { items, next_cursor }))
}

fn filter(query: ListQuery) -> ApiResult<DeliveryFilter> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            s.parse::<DeliveryStatus>().map_err(|_| {
                let names: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
                let message = format!("status {s:?} is not one of {}", names.join(", "));
                ApiError::bad_request("invalid_status", message)
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit < 1 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be at least 1",
        ));
    }
    let before_seq = query
        .cursor
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_cursor",
                    format!("cursor {c:?} is not one this API gave out"),
                )
            })
        })
        .transpose()?;
    Ok(DeliveryFilter {
        subscription_id: query.subscription_id,
        endpoint_id: query.endpoint_id,
        status,
        before_seq,
        created_from: None,
        created_before: None,
        limit: limit.min(MAX_LIMIT),
    })
}

/// Show a delivery with its body and attempts.
#[utoipa::path(get, path = "/deliveries/{id}", tag = "deliveries", params(IdParam),
    responses((status = 200, description = "The delivery", body = DeliveryDetail)))]
async fn show(State(state): State<AdminState>, Id(id): Id) -> ApiResult<Json<DeliveryDetail>> {
    let (row, body) = state
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?;
    let attempts = state.store.delivery_attempts(&id).await?;
    let delivery = DeliveryView::from(row);
    let attempts = attempts.into_iter().map(AttemptView::from).collect();
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok(Json(DeliveryDetail {
        delivery,
        body,
        attempts,
    }))
}

/// Send the delivery again now.
#[utoipa::path(post, path = "/deliveries/{id}/retry", tag = "deliveries", params(IdParam),
    responses((status = 202, description = "Queued", body = RetryAnswer)))]
pub(crate) async fn retry(
    State(state): State<AdminState>,
    Id(id): Id,
) -> ApiResult<(StatusCode, Json<RetryAnswer>)> {
    if !state.store.retry_delivery(&id).await? {
        if state.store.get_delivery(&id).await?.is_none() {
            return Err(ApiError::not_found("delivery", &id));
        }
        return Err(ApiError::conflict(
            "the delivery is being attempted right now, is still waiting for confirmations or is a batch still filling",
        ));
    }
    tracing::info!(delivery = %id, "manual retry");
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryAnswer {
            id,
            status: DeliveryStatus::Retrying,
        }),
    ))
}
