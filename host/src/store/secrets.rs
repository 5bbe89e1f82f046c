//! Endpoint secrets at rest: XChaCha20-Poly1305 (`chacha20poly1305`) under the keys of
//! `PIPELINE_SECRET_KEY`. A sealed value is `enc:v1:<key id>:<base64 of nonce ‖ ciphertext>`; the
//! key id is derived from the key (not its position), so reordering the list changes nothing,
//! and the endpoint id is the associated data, so a sealed secret copied to another endpoint's
//! row does not open. Without keys, secrets are stored as given (`whsec_…`), and a plaintext value
//! is always read as itself: that is how rows written before encryption are recognised.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};

const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secret of endpoint {endpoint} is encrypted with key {key_id}, which secret_key (PIPELINE_SECRET_KEY) does not hold"
    )]
    UnknownKey { endpoint: String, key_id: String },
    #[error(
        "the stored secret of endpoint {endpoint} does not decrypt (corrupt, or not this endpoint's)"
    )]
    Corrupt { endpoint: String },
    #[error("the secret of endpoint {endpoint} cannot be encrypted")]
    Encrypt { endpoint: String },
}

/// The configured keys with their ids, the encrypting one first. `Debug` shows only the ids.
#[derive(Clone, Default)]
pub struct SecretKeys {
    keys: std::sync::Arc<Vec<(String, [u8; 32])>>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SecretKeys").field("ids", &ids).finish()
    }
}

impl SecretKeys {
    pub fn new(keys: &[[u8; 32]]) -> SecretKeys {
        let keys = keys.iter().map(|k| (key_id(k), *k)).collect();
        SecretKeys {
            keys: std::sync::Arc::new(keys),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `secret` as it is stored: sealed under the first key, or as given when there is none.
    pub fn seal(&self, endpoint: &str, secret: &str) -> Result<String, SecretError> {
        let Some((id, key)) = self.keys.first() else {
            return Ok(secret.to_string());
        };
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: endpoint.as_bytes(),
        };
        // Encryption fails only for messages beyond the cipher's 256 GiB limit; still, an error,
        // never an empty ciphertext stored in place of the secret.
        let sealed = XChaCha20Poly1305::new(key.into())
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SecretError::Encrypt {
                endpoint: endpoint.to_string(),
            })?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{id}:{}", STANDARD.encode(bytes)))
    }

    /// The secret a stored value holds.
    pub fn open(&self, endpoint: &str, stored: &str) -> Result<String, SecretError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_string());
        };
        let corrupt = || SecretError::Corrupt {
            endpoint: endpoint.to_string(),
        };
        let (id, data) = rest.split_once(':').ok_or_else(corrupt)?;
        let (_, key) =
            self.keys
                .iter()
                .find(|(k, _)| k == id)
                .ok_or_else(|| SecretError::UnknownKey {
                    endpoint: endpoint.to_string(),
                    key_id: id.to_string(),
                })?;
        let bytes = STANDARD.decode(data).map_err(|_| corrupt())?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| corrupt())?;
        let payload = Payload {
            msg: sealed,
            aad: endpoint.as_bytes(),
        };
        let plain = XChaCha20Poly1305::new(key.into())
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }

    /// Whether `stored` is as `seal` would store it now (under the first key, or plaintext
    /// when there are no keys).
    fn is_current(&self, stored: &str) -> bool {
        match self.keys.first() {
            None => !stored.starts_with(SEALED_PREFIX),
            Some((id, _)) => stored
                .strip_prefix(SEALED_PREFIX)
                .is_some_and(|rest| rest.starts_with(&format!("{id}:"))),
        }
    }
}

/// A key's id: 8 hex digits of a hash of it (which says nothing useful about the key).
fn key_id(key: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"pipeline endpoint secret key id\0");
    hasher.update(key);
    hex::encode(&hasher.finalize()[..4])
}

/// One endpoint's stored secrets, as read for re-sealing.
#[derive(sqlx::FromRow)]
struct StoredSecrets {
    id: String,
    secret: String,
    previous_secret: Option<String>,
}

impl Store {
    /// At start: every endpoint secret not stored as `seal` would store it now — plaintext rows
    /// from before encryption, rows under an older key — is re-sealed under the first key.
    /// Fails (naming the endpoint and key id) when a stored secret cannot be opened, before
    /// anything runs. Returns how many endpoints were re-sealed.
    pub async fn reseal_endpoint_secrets(&self) -> Result<u64, StoreError> {
        let rows: Vec<StoredSecrets> =
            sqlx::query_as("SELECT id, secret, previous_secret FROM endpoints ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        let mut resealed = 0;
        for row in rows {
            let current = self.secrets.open(&row.id, &row.secret)?;
            let previous = match &row.previous_secret {
                Some(p) => Some(self.secrets.open(&row.id, p)?),
                None => None,
            };
            let stale = !self.secrets.is_current(&row.secret)
                || row
                    .previous_secret
                    .as_deref()
                    .is_some_and(|p| !self.secrets.is_current(p));
            if stale && self.reseal_row(&row, &current, previous.as_deref()).await? {
                resealed += 1;
            }
        }
        Ok(resealed)
    }

    /// Writes the row's secrets sealed anew, unless a rotation changed them since they were read.
    async fn reseal_row(
        &self,
        row: &StoredSecrets,
        current: &str,
        previous: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE endpoints SET secret = $2, previous_secret = $3 WHERE id = $1 AND secret = $4 \
             AND (previous_secret = $5 OR (previous_secret IS NULL AND $6))",
        )
        .bind(&row.id)
        .bind(self.secrets.seal(&row.id, current)?)
        .bind(
            previous
                .map(|p| self.secrets.seal(&row.id, p))
                .transpose()?,
        )
        .bind(&row.secret)
        .bind(row.previous_secret.clone().unwrap_or_default())
        .bind(row.previous_secret.is_none())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
