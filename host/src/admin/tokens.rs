//! `/v1/tokens` (admin scope): API tokens with a name and a scope, created (the token shown once),
//! listed (never the token) and revoked (401 from then on; the row stays, showing when).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{Scope, hash_token, new_token};
use super::{AdminState, ApiError, ApiResult, Id, new_id, parse_json, rfc3339};
use crate::store::{TokenRow, now_ms};

const MAX_NAME_LEN: usize = 200;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/tokens", post(create).get(list))
        .route("/tokens/{id}", delete(revoke))
}

/// A token as the API shows it; `token` only in the answer to its creation.
#[derive(Debug, Serialize)]
struct TokenView {
    id: String,
    name: String,
    scope: String,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
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

#[derive(Serialize)]
struct TokenList {
    items: Vec<TokenView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    scope: Scope,
}

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

async fn list(State(state): State<AdminState>) -> ApiResult<Json<TokenList>> {
    let items = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(Json(TokenList {
        items,
        next_cursor: None,
    }))
}

async fn revoke(State(state): State<AdminState>, Id(id): Id) -> ApiResult<StatusCode> {
    if !state.store.revoke_token(&id, now_ms()).await? {
        return Err(ApiError::not_found("token", &id));
    }
    tracing::info!(token = %id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
