//! `/v1/endpoints`: webhook targets with their signing secret (shown once, on create), secret
//! rotation with a 24 h overlap (a second rotation within it keeps the secret still signing), and
//! recovery of dead deliveries. Secrets are encrypted at rest by the store (`store/secrets.rs`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::schema::{self, EndpointStatus};
use super::{AdminState, ApiError, ApiResult, Id, IdParam, Page, new_id, parse_json, rfc3339};
use crate::deliver::sign::{self, SECRET_PREFIX};
use crate::store::{EndpointRow, UnknownState, now_ms};

/// How long the previous secret keeps signing after a rotation.
const ROTATION_GRACE_MS: i64 = 24 * 60 * 60 * 1000;
const MAX_DESCRIPTION_LEN: usize = 1000;
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, remove))
        .routes(routes!(rotate_secret))
        .routes(routes!(recover))
}

/// An endpoint as the API shows it; `secret` only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Endpoint)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub description: String,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    /// Only in the answer to the creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<EndpointRow> for EndpointView {
    fn from(row: EndpointRow) -> EndpointView {
        EndpointView {
            id: row.id,
            url: row.url,
            description: row.description,
            status: row.status,
            disabled_reason: row.disabled_reason,
            secret: None,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EndpointCreate)]
struct CreateEndpoint {
    /// Where webhooks are POSTed; private and loopback addresses are refused unless allow-listed.
    #[schema(format = "uri")]
    url: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// `whsec_` and base64 of 24 to 64 bytes; generated when absent.
    #[serde(default)]
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+={0,2}$")]
    secret: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EndpointUpdate)]
struct UpdateEndpoint {
    #[serde(default)]
    #[schema(format = "uri")]
    url: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<EndpointStatus>)]
    status: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverRequest {
    /// Dead deliveries created at or after this time are re-driven.
    #[schema(schema_with = schema::since)]
    since: Since,
}

/// `since` as an RFC 3339 time or Unix milliseconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum Since {
    UnixMs(i64),
    Rfc3339(String),
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SecretAnswer {
    pub(crate) secret: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RecoverAnswer {
    pub(crate) recovered: u64,
}

/// Create an endpoint; the answer shows its secret, once.
#[utoipa::path(post, path = "/endpoints", tag = "endpoints",
    request_body = CreateEndpoint,
    responses((status = 201, description = "Created", body = EndpointView)))]
async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    let request: CreateEndpoint = parse_json(&body?)?;
    let url = checked_url(&state, &request.url).await?;
    let description = checked_description(request.description.unwrap_or_default())?;
    let secret = match request.secret {
        Some(secret) => checked_secret(secret)?,
        None => sign::generate_secret(),
    };
    let now = now_ms();
    let row = EndpointRow {
        id: new_id("ep"),
        url,
        description,
        secret: secret.clone(),
        previous_secret: None,
        previous_secret_expires_at: None,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_endpoint(&row).await?;
    state.registry.reload_endpoint(&row.id).await?;
    tracing::info!(endpoint = %row.id, url = %row.url, "endpoint created");
    let mut view = EndpointView::from(row);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

/// List endpoints.
#[utoipa::path(get, path = "/endpoints", tag = "endpoints",
    responses((status = 200, description = "Every endpoint", body = Page<EndpointView>)))]
async fn list(State(state): State<AdminState>) -> ApiResult<Json<Page<EndpointView>>> {
    let items = state
        .store
        .list_endpoints()
        .await?
        .into_iter()
        .map(EndpointView::from)
        .collect();
    Ok(Json(Page::all(items)))
}

/// Show an endpoint.
#[utoipa::path(get, path = "/endpoints/{id}", tag = "endpoints", params(IdParam),
    responses((status = 200, description = "The endpoint", body = EndpointView)))]
async fn show(State(state): State<AdminState>, Id(id): Id) -> ApiResult<Json<EndpointView>> {
    Ok(Json(load(&state, &id).await?.into()))
}

/// Change url, description or status.
#[utoipa::path(patch, path = "/endpoints/{id}", tag = "endpoints", params(IdParam),
    request_body = UpdateEndpoint,
    responses((status = 200, description = "The endpoint as changed", body = EndpointView)))]
pub(crate) async fn update(
    State(state): State<AdminState>,
    Id(id): Id,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<EndpointView>> {
    let request: UpdateEndpoint = parse_json(&body?)?;
    let current = load(&state, &id).await?;
    let url = match request.url {
        Some(url) => Some(checked_url(&state, &url).await?),
        None => None,
    };
    let description = request.description.map(checked_description).transpose()?;
    let status = match request.status.as_deref().map(str::parse) {
        None => None,
        Some(Ok(EndpointStatus::Enabled)) => Some((EndpointStatus::Enabled, None)),
        // Disabling again keeps the first reason (a 410's, say).
        Some(Ok(EndpointStatus::Disabled)) if current.status != EndpointStatus::Disabled => Some((
            EndpointStatus::Disabled,
            Some("disabled through the admin API"),
        )),
        Some(Ok(EndpointStatus::Disabled)) => None,
        Some(Err(UnknownState { value, .. })) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                format!("status {value:?} is not one of enabled, disabled"),
            ));
        }
    };
    // Only the fields given are written: a rotation or a 410 committed since `load` stays.
    let patched = state
        .store
        .patch_endpoint(
            &id,
            url.as_deref(),
            description.as_deref(),
            status,
            now_ms(),
        )
        .await?;
    saved(&state, &id, patched).await?;
    Ok(Json(load(&state, &id).await?.into()))
}

/// Delete an endpoint (409 while subscriptions use it).
#[utoipa::path(delete, path = "/endpoints/{id}", tag = "endpoints", params(IdParam),
    responses((status = 204, description = "Deleted")))]
async fn remove(State(state): State<AdminState>, Id(id): Id) -> ApiResult<StatusCode> {
    if !state.store.delete_endpoint(&id).await? {
        return Err(ApiError::not_found("endpoint", &id));
    }
    state.registry.reload_endpoint(&id).await?;
    tracing::info!(endpoint = %id, "endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// New secret; the previous one keeps signing for 24 h.
#[utoipa::path(post, path = "/endpoints/{id}/rotate-secret", tag = "endpoints", params(IdParam),
    responses((status = 200, description = "The new secret, shown once", body = SecretAnswer)))]
pub(crate) async fn rotate_secret(
    State(state): State<AdminState>,
    Id(id): Id,
) -> ApiResult<Json<SecretAnswer>> {
    let now = now_ms();
    let secret = sign::generate_secret();
    // The secret it replaces is read inside the UPDATE, so a concurrent change cannot slip one in.
    let rotated = state
        .store
        .rotate_endpoint_secret(&id, &secret, now + ROTATION_GRACE_MS, now)
        .await?;
    saved(&state, &id, rotated).await?;
    tracing::info!(endpoint = %id, "endpoint secret rotated");
    Ok(Json(SecretAnswer { secret }))
}

/// Re-drive the endpoint's dead deliveries created since a time.
#[utoipa::path(post, path = "/endpoints/{id}/recover", tag = "endpoints", params(IdParam),
    request_body = RecoverRequest,
    responses((status = 200, description = "How many were re-driven", body = RecoverAnswer)))]
pub(crate) async fn recover(
    State(state): State<AdminState>,
    Id(id): Id,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<RecoverAnswer>> {
    let request: RecoverRequest = parse_json(&body?)?;
    let since_ms = since_ms(request.since)?;
    load(&state, &id).await?;
    let recovered = state.store.recover_endpoint(&id, since_ms).await?;
    tracing::info!(endpoint = %id, since_ms, recovered, "dead deliveries recovered");
    Ok(Json(RecoverAnswer { recovered }))
}

async fn load(state: &AdminState, id: &str) -> ApiResult<EndpointRow> {
    state
        .store
        .get_endpoint(id)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint", id))
}

/// After a write: 404 when it found no endpoint, else the registry picks the change up.
async fn saved(state: &AdminState, id: &str, written: bool) -> ApiResult<()> {
    if !written {
        return Err(ApiError::not_found("endpoint", id));
    }
    state.registry.reload_endpoint(id).await?;
    Ok(())
}

/// The URL as given, if deliveries would be allowed to reach it (a name: every address it
/// resolves to now).
async fn checked_url(state: &AdminState, url: &str) -> ApiResult<String> {
    let url = url.trim();
    state
        .client
        .vet_url(url)
        .await
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    Ok(url.to_string())
}

fn checked_description(description: String) -> ApiResult<String> {
    if description.len() > MAX_DESCRIPTION_LEN {
        let message = format!("description is longer than {MAX_DESCRIPTION_LEN} bytes");
        return Err(ApiError::bad_request("invalid_description", message));
    }
    Ok(description)
}

/// A caller-chosen secret: `whsec_` and base64 of 24 to 64 key bytes, decoded exactly as signing
/// will (fewer bytes is a weak key; Standard Webhooks libraries use 24 to 64).
fn checked_secret(secret: String) -> ApiResult<String> {
    if !secret.starts_with(SECRET_PREFIX) {
        return Err(ApiError::bad_request(
            "invalid_secret",
            format!("secret must start with {SECRET_PREFIX}"),
        ));
    }
    let key = sign::decode_secret(&secret)
        .map_err(|e| ApiError::bad_request("invalid_secret", e.to_string()))?;
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
        return Err(ApiError::bad_request(
            "invalid_secret",
            format!(
                "secret must be {SECRET_PREFIX} and base64 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, got {} bytes",
                key.len()
            ),
        ));
    }
    Ok(secret)
}

fn since_ms(since: Since) -> ApiResult<i64> {
    match since {
        Since::UnixMs(ms) if ms >= 0 => Ok(ms),
        Since::UnixMs(ms) => Err(ApiError::bad_request(
            "invalid_since",
            format!("since {ms} is before 1970"),
        )),
        Since::Rfc3339(text) => {
            let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
                ApiError::bad_request(
                    "invalid_since",
                    format!("since {text:?} is not an RFC 3339 UTC time: {e}"),
                )
            })?;
            let ms = time
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            Ok(i64::try_from(ms).unwrap_or(i64::MAX))
        }
    }
}
