//! A client-chosen endpoint secret is `whsec_` and base64 of 24 to 64 bytes.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

#[tokio::test]
async fn a_client_secret_must_be_whsec_and_24_to_64_bytes() {
    let h = harness().await;
    let secret = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
    for (given, ok) in [
        (secret(24), true),
        (secret(64), true),
        (secret(23), false),
        (secret(65), false),
        ("whsec_!!!".to_string(), false),
        (STANDARD.encode([7u8; 32]), false),
    ] {
        let (status, body) = h
            .json(
                Method::POST,
                "/v1/endpoints",
                json!({"url": "http://127.0.0.1:9/hook", "secret": given}),
            )
            .await;
        if ok {
            assert_eq!(status, StatusCode::CREATED, "{given}: {body}");
        } else {
            assert_eq!(
                error_code(status, &body, StatusCode::BAD_REQUEST),
                "invalid_secret",
                "{given}"
            );
        }
    }
}
