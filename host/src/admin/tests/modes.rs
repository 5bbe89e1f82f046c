//! The delivery-mode fields of a subscription through the router: shown with their defaults,
//! set by POST and PATCH (only what is given), refused out of range with `invalid_field`.

use super::*;

#[tokio::test]
async fn delivery_modes_are_shown_set_patched_and_validated() {
    let h = harness().await;
    let (status, plain) = h.subscription(json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(
        (
            &plain["batch"],
            &plain["ordering"],
            &plain["ordering_key"],
            &plain["on_dead"]
        ),
        (
            &Value::Null,
            &json!("none"),
            &json!("subscription"),
            &json!("halt")
        )
    );
    assert_eq!(plain["ordering_blocked"], json!([]));

    let modes = json!({"batch": {"max_events": 50, "max_wait_ms": 250}, "ordering": "chain", "on_dead": "skip"});
    let (status, created) = h.subscription(modes).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["batch"],
        json!({"max_events": 50, "max_wait_ms": 250})
    );
    let uri = format!("/v1/subscriptions/{}", created["id"].as_str().unwrap());
    let (_, shown) = h.get(&uri).await;
    assert_eq!(
        (&shown["ordering"], &shown["on_dead"]),
        (&json!("chain"), &json!("skip"))
    );

    // A PATCH changes only what it names, and checks the combination.
    let (status, patched) = h.json(Method::PATCH, &uri, json!({"batch": "block"})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (&patched["batch"], &patched["ordering"], &patched["on_dead"]),
        (&json!("block"), &json!("chain"), &json!("skip"))
    );
    let (status, body) = h
        .json(Method::PATCH, &uri, json!({"ordering_key": "address"}))
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_field"
    );
    let (status, patched) = h
        .json(
            Method::PATCH,
            &uri,
            json!({"batch": null, "ordering_key": "address"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (&patched["batch"], &patched["ordering_key"]),
        (&Value::Null, &json!("address"))
    );

    for bad in [
        json!({"batch": {"max_events": 0, "max_wait_ms": 10}}),
        json!({"batch": {"max_events": 1001, "max_wait_ms": 10}}),
        json!({"batch": {"max_events": 10, "max_wait_ms": 60001}}),
        json!({"batch": {"max_events": 10}}),
        json!({"batch": "blocks"}),
        json!({"ordering": "total"}),
        json!({"on_dead": "retry"}),
        json!({"ordering_key": "topic"}),
    ] {
        let (status, body) = h.subscription(bad.clone()).await;
        let code = error_code(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(code, "invalid_field", "{bad}: {body}");
    }
    let (status, body) = h
        .subscription(json!({"batch": {"max_events": 10, "max_wait_ms": 0}}))
        .await;
    error_code(status, &body, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batch.max_wait_ms"),
        "{body}"
    );
}
