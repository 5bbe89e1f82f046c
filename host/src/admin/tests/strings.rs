//! A NUL in any client string — body field, query value or path id — on every resource that takes
//! strings: a 400 `invalid_field` naming the field, on both stores (PostgreSQL cannot hold one and
//! used to answer 503), and nothing stored.

use super::*;

/// A request carrying a NUL and the field the answer must name.
struct Case {
    method: Method,
    uri: String,
    body: Body,
    field: &'static str,
}

fn case(method: Method, uri: impl Into<String>, body: Value, field: &'static str) -> Case {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    Case {
        method,
        uri: uri.into(),
        body,
        field,
    }
}

fn endpoint_cases(ep: &str) -> Vec<Case> {
    let url = "http://127.0.0.1:9/hook";
    let one = format!("/v1/endpoints/{ep}");
    vec![
        case(
            Method::POST,
            "/v1/endpoints",
            json!({"url": "http://127.0.0.1:9/\u{0}"}),
            "url",
        ),
        case(
            Method::POST,
            "/v1/endpoints",
            json!({"url": url, "description": "a\u{0}b"}),
            "description",
        ),
        case(
            Method::POST,
            "/v1/endpoints",
            json!({"url": url, "secret": "whsec_\u{0}"}),
            "secret",
        ),
        case(
            Method::PATCH,
            one.clone(),
            json!({"description": "\u{0}"}),
            "description",
        ),
        case(
            Method::PATCH,
            one.clone(),
            json!({"url": "http://127.0.0.1:9/\u{0}"}),
            "url",
        ),
        case(
            Method::PATCH,
            one.clone(),
            json!({"status": "enabled\u{0}"}),
            "status",
        ),
        case(
            Method::POST,
            format!("{one}/recover"),
            json!({"since": "2026\u{0}"}),
            "since",
        ),
        case(Method::GET, "/v1/endpoints/ep_%00", Value::Null, "id"),
        case(Method::PATCH, "/v1/endpoints/ep_%00", json!({}), "id"),
        case(Method::DELETE, "/v1/endpoints/ep_%00", Value::Null, "id"),
        case(
            Method::POST,
            "/v1/endpoints/ep_%00/rotate-secret",
            Value::Null,
            "id",
        ),
    ]
}

fn subscription_cases(ep: &str, sub: &str, plugin: &str) -> Vec<Case> {
    let one = format!("/v1/subscriptions/{sub}");
    let create = |extra: Value| {
        let mut body = json!({"endpoint_id": ep, "chain_id": 1});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    vec![
        case(
            Method::POST,
            "/v1/subscriptions",
            json!({"endpoint_id": "ep\u{0}", "chain_id": 1}),
            "endpoint_id",
        ),
        case(
            Method::POST,
            "/v1/subscriptions",
            create(json!({"plugin_id": "\u{0}"})),
            "plugin_id",
        ),
        case(
            Method::POST,
            "/v1/subscriptions",
            create(json!({"plugin_id": plugin, "plugin_config": {"k": ["\u{0}"]}})),
            "plugin_config.k[0]",
        ),
        case(
            Method::POST,
            "/v1/subscriptions",
            create(json!({"addresses": ["0x\u{0}"]})),
            "addresses[0]",
        ),
        case(
            Method::POST,
            "/v1/subscriptions",
            create(json!({"topics": [["\u{0}"]]})),
            "topics[0][0]",
        ),
        case(
            Method::PATCH,
            one.clone(),
            json!({"status": "paused\u{0}"}),
            "status",
        ),
        case(
            Method::PATCH,
            one.clone(),
            json!({"plugin_id": "x\u{0}"}),
            "plugin_id",
        ),
        case(
            Method::PATCH,
            one,
            json!({"plugin_config": {"k\u{0}": 1}}),
            "the key plugin_config.k\\u0000",
        ),
        case(Method::GET, "/v1/subscriptions/sub_%00", Value::Null, "id"),
        case(
            Method::GET,
            "/v1/subscriptions/sub_%00/logs",
            Value::Null,
            "id",
        ),
        case(
            Method::GET,
            "/v1/subscriptions/sub_%00/parked",
            Value::Null,
            "id",
        ),
        case(
            Method::POST,
            "/v1/subscriptions/sub_%00/reprocess",
            Value::Null,
            "id",
        ),
        case(
            Method::DELETE,
            "/v1/subscriptions/sub_%00",
            Value::Null,
            "id",
        ),
    ]
}

fn plugin_and_delivery_cases(plugin: &str) -> Vec<Case> {
    vec![
        case(
            Method::POST,
            format!("/v1/plugins/{plugin}/test"),
            json!({"config": "\u{0}", "events": []}),
            "config",
        ),
        case(
            Method::POST,
            "/v1/plugins/p%00/test",
            json!({"events": []}),
            "id",
        ),
        case(Method::GET, "/v1/plugins/p%00", Value::Null, "id"),
        case(Method::DELETE, "/v1/plugins/p%00", Value::Null, "id"),
        case(
            Method::GET,
            "/v1/deliveries?status=%00",
            Value::Null,
            "status",
        ),
        case(
            Method::GET,
            "/v1/deliveries?subscription_id=s%00",
            Value::Null,
            "subscription_id",
        ),
        case(
            Method::GET,
            "/v1/deliveries?endpoint_id=e%00",
            Value::Null,
            "endpoint_id",
        ),
        case(
            Method::GET,
            "/v1/deliveries?cursor=%00",
            Value::Null,
            "cursor",
        ),
        case(Method::GET, "/v1/deliveries/msg_%00", Value::Null, "id"),
        case(
            Method::POST,
            "/v1/deliveries/msg_%00/retry",
            Value::Null,
            "id",
        ),
    ]
}

#[tokio::test]
async fn a_nul_in_any_client_string_is_a_400_naming_the_field_on_both_stores() {
    each_store(async |h: Harness| {
        let ep = h.endpoint().await;
        let (_, sub) = h.subscription(json!({})).await;
        let sub = sub["id"].as_str().unwrap().to_string();
        let (_, uploaded) = h.upload(plugin("")).await;
        let plugin_id = uploaded["id"].as_str().unwrap().to_string();
        let mut cases = endpoint_cases(&ep);
        cases.extend(subscription_cases(&ep, &sub, &plugin_id));
        cases.extend(plugin_and_delivery_cases(&plugin_id));
        for case in cases {
            let what = format!("{} {} ({})", case.method, case.uri, case.field);
            let (status, answer) = h.send(case.method, &case.uri, Some("t"), case.body).await;
            assert_eq!(
                error_code(status, &answer, StatusCode::BAD_REQUEST),
                "invalid_field",
                "{what}: {answer}"
            );
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{} ", case.field)),
                "{what}: {message}"
            );
        }
        // The upload's name is a query value next to a binary body.
        let (status, answer) = h
            .send(
                Method::POST,
                "/v1/plugins?name=a%00",
                Some("t"),
                Body::from(plugin("")),
            )
            .await;
        assert_eq!(
            error_code(status, &answer, StatusCode::BAD_REQUEST),
            "invalid_field"
        );
        // Nothing was stored: the two endpoints and the subscription created above.
        let (_, endpoints) = h.get("/v1/endpoints").await;
        let (_, subscriptions) = h.get("/v1/subscriptions").await;
        assert_eq!(
            endpoints["items"].as_array().unwrap().len(),
            2,
            "{endpoints}"
        );
        assert_eq!(endpoints["items"][0]["description"], "");
        assert_eq!(
            subscriptions["items"].as_array().unwrap().len(),
            1,
            "{subscriptions}"
        );
        assert_eq!(subscriptions["items"][0]["status"], "active");
    })
    .await;
}
