//! Bearer-token auth for `/v1`, and where the bootstrap token comes from: `PIPELINE_ADMIN_TOKEN`,
//! or one generated on first start, stored hashed and written once to `data/admin-token` (0600).
//! Other tokens are created through `/v1/tokens` (`tokens.rs`) with a scope.
//!
//! Tokens are stored as plain sha256: they are 192 random bits, so no guess can be tested against
//! a leaked hash in useful time, and a slow password hash would only make every request slower.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AdminState, ApiError, ApiResult};
use crate::store::{Store, now_ms};

const TOKEN_SETTING: &str = "admin_token_sha256";
/// `last_used_at` is written at most once per this interval per token.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// What a token may do; each scope includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET` anything except `/v1/tokens`.
    Read,
    /// Also every mutation except on `/v1/tokens`.
    Write,
    /// Also token management. The bootstrap token has it.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// The scope a request needs: by path for token management, else by method.
    pub fn needed(method: &Method, path: &str) -> Scope {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        if path == "/tokens" || path.starts_with("/tokens/") {
            Scope::Admin
        } else if method == Method::GET || method == Method::HEAD {
            Scope::Read
        } else {
            Scope::Write
        }
    }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token's text: `pat_` and 192 random bits in hex.
pub fn new_token() -> String {
    format!("pat_{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// The sha256 of the bootstrap token: the configured one, the stored one, or a new one. Replicas
/// starting together on an empty database agree: the first hash stored wins, and only the
/// process that stored it keeps its token file.
pub async fn resolve_token(
    configured: Option<&str>,
    store: &Store,
    data_dir: &Path,
) -> anyhow::Result<[u8; 32]> {
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(hash_token(token));
    }
    if let Some(stored) = store.get_setting(TOKEN_SETTING).await? {
        return parse_hash(&stored);
    }
    let token = new_token();
    let ours = hex::encode(hash_token(&token));
    // Written aside first: the token must be on disk before its hash can win, and must not
    // replace a file when another replica's hash won.
    let pending = write_token_file(data_dir, "admin-token.new", &token)?;
    let stored = store
        .setting_first_writer_wins(TOKEN_SETTING, &ours)
        .await?;
    let path = data_dir.join("admin-token");
    if stored == ours {
        std::fs::rename(&pending, &path)?;
        tracing::warn!(path = %path.display(), "generated an admin token; it is shown once in that file");
    } else {
        std::fs::remove_file(&pending)?;
        tracing::info!(
            "another replica generated the admin token first; its data directory has the file"
        );
    }
    parse_hash(&stored)
}

fn parse_hash(stored: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(stored)
        .map_err(|e| anyhow::anyhow!("stored admin token hash is corrupt: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("stored admin token hash has the wrong length"))
}

fn write_token_file(
    data_dir: &Path,
    name: &str,
    token: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(path)
}

/// Middleware: 401 unless `Authorization: Bearer <token>` names the bootstrap token or a live API
/// token; 403 when its scope is below what the request needs.
pub async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    let scope = token_scope(&state, presented).await?;
    let needed = Scope::needed(request.method(), request.uri().path());
    if scope < needed {
        return Err(ApiError::forbidden(needed.as_str()));
    }
    Ok(next.run(request).await)
}

async fn token_scope(state: &AdminState, token: &str) -> ApiResult<Scope> {
    scope_of_hash(state, &hash_token(token)).await
}

/// The scope of the token with this sha256 (the bootstrap token or a live API token), or 401.
/// The console keeps only the hash in its session and asks again on every request, so a revoked
/// token's sessions end at once.
pub async fn scope_of_hash(state: &AdminState, hash: &[u8; 32]) -> ApiResult<Scope> {
    if *hash == *state.token_sha256 {
        return Ok(Scope::Admin);
    }
    let live = state
        .store
        .live_token(&hex::encode(hash))
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let now = now_ms();
    let stale_before = now - TOUCH_INTERVAL_MS;
    if live.last_used_at.is_none_or(|t| t < stale_before)
        && let Err(error) = state.store.touch_token(&live.id, now, stale_before).await
    {
        // Bookkeeping only: the request is still allowed.
        tracing::warn!(error = %error, token = %live.id, "could not record a token's use");
    }
    Scope::parse(&live.scope).ok_or_else(ApiError::unauthorized)
}
