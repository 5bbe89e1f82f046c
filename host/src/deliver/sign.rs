//! Standard Webhooks signing: `whsec_` secrets and the `webhook-signature` header value
//! (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one entry per active secret).

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of every secret Pipeline generates; Standard Webhooks libraries strip it before decoding.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a secret could not be used for signing. Never carries the secret itself.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("webhook secret is empty")]
    EmptySecret,
    #[error("webhook secret is not valid base64: {0}")]
    InvalidBase64(String),
    #[error("no secret to sign with")]
    NoSecrets,
}

/// A new random secret: `whsec_` + base64 of 24 random bytes (192 bits, as Svix generates).
pub fn generate_secret() -> String {
    let key: [u8; 24] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// Signs one message with one secret; returns `v1,<base64 signature>`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
    let key = decode_secret(secret)?;
    // HMAC accepts keys of any length, so this only fails for the empty key ruled out above.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignError::EmptySecret)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header value: one signature per secret, space-separated, so a
/// receiver holding either the old or the new secret verifies during a rotation.
pub fn signature_header(
    secrets: &[&str],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignError> {
    if secrets.is_empty() {
        return Err(SignError::NoSecrets);
    }
    let signatures = secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Decodes the key bytes of a secret, with or without the `whsec_` prefix. Padding is optional
/// because integrators sometimes paste secrets with the trailing `=` lost.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SignError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    if encoded.is_empty() {
        return Err(SignError::EmptySecret);
    }
    let key = LENIENT
        .decode(encoded)
        .map_err(|error| SignError::InvalidBase64(error.to_string()))?;
    if key.is_empty() {
        return Err(SignError::EmptySecret);
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // Tests may panic (DESIGN §6).
mod tests {
    use super::*;

    // The Standard Webhooks specification's published test vector.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn check(secret: &str, expected: Result<&str, SignError>) {
        let actual = sign(secret, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(
            actual.as_deref().map_err(Clone::clone),
            expected,
            "secret {secret:?}"
        );
    }

    #[test]
    fn reproduces_the_standard_webhooks_vector() {
        check(VECTOR_SECRET, Ok(VECTOR_SIGNATURE));
    }

    #[test]
    fn accepts_a_secret_without_prefix_or_padding() {
        check("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Ok(VECTOR_SIGNATURE));
        // 24-byte keys need no padding; a 20-byte key ends in one `=` that a paste may lose.
        let padded = format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(b"0123456789abcdefghij")
        );
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        let with = sign(&padded, "msg_1", 1, b"{}").unwrap();
        assert_eq!(sign(unpadded, "msg_1", 1, b"{}").unwrap(), with);
    }

    #[test]
    fn rejects_bad_secrets() {
        check("", Err(SignError::EmptySecret));
        check("whsec_", Err(SignError::EmptySecret));
        assert!(matches!(
            sign("whsec_not base64!", VECTOR_ID, 1, b""),
            Err(SignError::InvalidBase64(_))
        ));
        assert!(matches!(
            sign("whsec_%%%%", VECTOR_ID, 1, b""),
            Err(SignError::InvalidBase64(_))
        ));
    }

    #[test]
    fn every_part_of_the_message_is_signed() {
        let base = sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY).unwrap();
        let variants = [
            sign(VECTOR_SECRET, "msg_other", VECTOR_TIMESTAMP, VECTOR_BODY),
            sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY),
            sign(
                VECTOR_SECRET,
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                br#"{"test": 2432232315}"#,
            ),
        ];
        for variant in variants {
            assert_ne!(variant.unwrap(), base);
        }
    }

    #[test]
    fn header_has_one_signature_per_secret_in_order() {
        let other = generate_secret();
        let header = signature_header(
            &[VECTOR_SECRET, &other],
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
        )
        .unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], VECTOR_SIGNATURE);
        assert_eq!(
            parts[1],
            sign(&other, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY).unwrap()
        );
        assert_ne!(parts[0], parts[1]);

        let single = signature_header(&[VECTOR_SECRET], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(single.unwrap(), VECTOR_SIGNATURE);
    }

    #[test]
    fn header_fails_without_secrets_or_with_any_bad_one() {
        assert_eq!(
            signature_header(&[], VECTOR_ID, 1, b""),
            Err(SignError::NoSecrets)
        );
        assert_eq!(
            signature_header(&[VECTOR_SECRET, "whsec_"], VECTOR_ID, 1, b""),
            Err(SignError::EmptySecret)
        );
    }

    #[test]
    fn generated_secrets_are_fresh_24_byte_keys() {
        let secret = generate_secret();
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), 24);
        assert_ne!(secret, generate_secret());
        assert!(sign(&secret, "msg_1", 1, b"{}").unwrap().starts_with("v1,"));
    }
}
