//! Bearer-token auth for `/v1`, and where the token comes from: `PIPELINE_ADMIN_TOKEN`, or one
//! generated on first start, stored hashed and written once to `data/admin-token` (0600).

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{AdminState, ApiError};
use crate::store::{Store, StoreError};

const TOKEN_SETTING: &str = "admin_token_sha256";

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The sha256 of the admin token: the configured one, the stored one, or a new one.
pub async fn resolve_token(
    configured: Option<&str>,
    store: &Store,
    data_dir: &Path,
) -> anyhow::Result<[u8; 32]> {
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(hash_token(token));
    }
    if let Some(stored) = store.get_setting(TOKEN_SETTING).await? {
        let bytes = hex::decode(&stored)
            .map_err(|e| anyhow::anyhow!("stored admin token hash is corrupt: {e}"))?;
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| anyhow::anyhow!("stored admin token hash has the wrong length"));
    }
    let token = format!("pat_{}", hex::encode(rand::random::<[u8; 24]>()));
    let hash = hash_token(&token);
    write_token_file(data_dir, &token)?;
    store
        .set_setting(TOKEN_SETTING, &hex::encode(hash))
        .await
        .map_err(|e: StoreError| anyhow::anyhow!(e))?;
    tracing::warn!(path = %data_dir.join("admin-token").display(), "generated an admin token; it is shown once in that file");
    Ok(hash)
}

fn write_token_file(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("admin-token");
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
    Ok(())
}

/// Middleware: 401 unless `Authorization: Bearer <token>` matches.
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
        .map(str::trim);
    match presented {
        Some(token) if hash_token(token) == *state.token_sha256 => Ok(next.run(request).await),
        _ => Err(ApiError::unauthorized()),
    }
}
