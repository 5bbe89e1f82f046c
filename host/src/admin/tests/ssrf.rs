//! Endpoint URLs are vetted when created or changed, names included: `http://localhost:9/x`
//! used to be accepted and refused only at delivery.

use super::*;

#[tokio::test]
async fn endpoint_names_resolving_to_internal_addresses_are_refused_naming_address_and_rule() {
    let mut h = harness().await;
    let id = h.endpoint().await;
    // No allow-list from here on, as in production by default.
    h.state.client = WebhookClient::new(ClientSettings::default()).unwrap();
    for (method, uri) in [
        (Method::POST, "/v1/endpoints".to_string()),
        (Method::PATCH, format!("/v1/endpoints/{id}")),
    ] {
        let (status, answer) = h
            .json(method, &uri, json!({"url": "http://localhost:9/x"}))
            .await;
        assert_eq!(
            error_code(status, &answer, StatusCode::BAD_REQUEST),
            "invalid_url"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("localhost resolves to"), "{message}");
        assert!(message.contains("is a loopback address"), "{message}");
    }
    for literal in [
        "http://[::ffff:169.254.169.254]/",
        "http://[2001::1]/",
        "http://[3fff::1]/",
    ] {
        let code = h
            .refused(
                Method::POST,
                "/v1/endpoints",
                json!({"url": literal}),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert_eq!(code, "invalid_url", "{literal}");
    }
    let (_, shown) = h.get(&format!("/v1/endpoints/{id}")).await;
    assert_eq!(
        shown["url"], "http://127.0.0.1:9/hook",
        "the refused update changed nothing"
    );
}
