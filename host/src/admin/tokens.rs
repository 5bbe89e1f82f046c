//! `/v1/tokens` (admin scope): API tokens with a name and a scope, created (the token shown once),
//! listed (never the token) and revoked (401 from then on; the row stays, showing when).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Scope, hash_token, new_token};
use super::{AdminState, ApiError, ApiResult, Id, IdParam, Page, new_id, parse_json, rfc3339};
use crate::store::{TokenRow, now_ms};

const MAX_NAME_LEN: usize = 200;

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// A token as the API shows it; `token` only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Token)]
struct TokenView {
    id: String,
    name: String,
    #[schema(value_type = Scope)]
    scope: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    /// Only in the answer to the creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<TokenRow> for TokenView {
    fn from(row: TokenRow) -> TokenView {
        TokenView {
            id: row.id,
            name: row.name,
            scope: row.scope,
            created_at: rfc3339(row.created_at),
            last_used_at: row.last_used_at.map(rfc3339),
            revoked_at: row.revoked_at.map(rfc3339),
            token: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TokenCreate)]
struct CreateToken {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    scope: Scope,
}

/// Create an API token (admin scope); the answer shows the token, once.
#[utoipa::path(post, path = "/tokens", tag = "tokens",
    request_body = CreateToken,
    responses((status = 201, description = "Created", body = TokenView)))]
async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let request: CreateToken = parse_json(&body?)?;
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("name must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    let token = new_token();
    let row = TokenRow {
        id: new_id("tok"),
        name,
        scope: request.scope.as_str().to_string(),
        created_at: now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    state
        .store
        .insert_token(&row, &hex::encode(hash_token(&token)))
        .await?;
    tracing::info!(token = %row.id, scope = %row.scope, "API token created");
    let mut view = TokenView::from(row);
    view.token = Some(token);
    Ok((StatusCode::CREATED, Json(view)))
}

/// List API tokens (admin scope), revoked ones included; never the token.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, description = "Every token", body = Page<TokenView>)))]
async fn list(State(state): State<AdminState>) -> ApiResult<Json<Page<TokenView>>> {
    let items = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(Json(Page::all(items)))
}

/// Revoke an API token (admin scope); it is refused with 401 from then on.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(IdParam),
    responses((status = 204, description = "Revoked")))]
async fn revoke(State(state): State<AdminState>, Id(id): Id) -> ApiResult<StatusCode> {
    if !state.store.revoke_token(&id, now_ms()).await? {
        return Err(ApiError::not_found("token", &id));
    }
    tracing::info!(token = %id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
