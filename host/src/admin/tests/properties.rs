//! Property test: arbitrary JSON-ish bodies (random values, valid bodies with fields replaced by
//! random values, raw bytes) into every admin POST/PATCH handler through the router. Whatever
//! the input, the answer is never a 5xx and nothing panics. 64 cases per route keep it brief.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::*;

/// Field names the handlers know, so random bodies reach past `deny_unknown_fields`.
const FIELDS: &[&str] = &[
    "url",
    "description",
    "secret",
    "status",
    "since",
    "endpoint_id",
    "chain_id",
    "addresses",
    "topics",
    "plugin_id",
    "plugin_config",
    "confirmations",
    "batch",
    "ordering",
    "ordering_key",
    "on_dead",
    "config",
    "events",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "0x[0-9a-fA-F]{0,66}".prop_map(Value::from),
        "(http|https|ftp)://(127\\.0\\.0\\.1|\\[::1\\]|10\\.0\\.0\\.1|\\[2001::1\\])(:[0-9]{1,5})?/.{0,10}"
            .prop_map(Value::from),
        "whsec_[A-Za-z0-9+/=]{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body: the route's valid body with some fields replaced, any JSON value, or raw bytes.
fn body(valid: Value) -> impl Strategy<Value = Vec<u8>> {
    let fields = btree_map(proptest::sample::select(FIELDS), json_value(), 0..4);
    prop_oneof![
        4 => fields.prop_map(move |changes| {
            let mut body = valid.clone();
            if let Value::Object(object) = &mut body {
                object.extend(changes.into_iter().map(|(k, v)| (k.to_string(), v)));
            }
            body.to_string().into_bytes()
        }),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..64),
    ]
}

#[test]
fn no_admin_body_gets_a_5xx_or_a_panic() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = runtime.block_on(harness());
    let (ep, sub, plugin) = runtime.block_on(async {
        let ep = h.endpoint().await;
        let (_, sub) = h.subscription(json!({})).await;
        let (_, uploaded) = h.upload(plugin("")).await;
        (
            ep,
            sub["id"].as_str().unwrap().to_string(),
            uploaded["id"].as_str().unwrap().to_string(),
        )
    });
    let routes = [
        (
            Method::POST,
            "/v1/endpoints".to_string(),
            json!({"url": "http://127.0.0.1:9/h"}),
        ),
        (Method::PATCH, format!("/v1/endpoints/{ep}"), json!({})),
        (
            Method::POST,
            format!("/v1/endpoints/{ep}/recover"),
            json!({"since": 0}),
        ),
        (
            Method::POST,
            "/v1/subscriptions".to_string(),
            json!({"endpoint_id": ep, "chain_id": 1}),
        ),
        (Method::PATCH, format!("/v1/subscriptions/{sub}"), json!({})),
        (
            Method::POST,
            format!("/v1/plugins/{plugin}/test"),
            json!({"events": [serde_json::from_str::<Value>(LOG).unwrap()]}),
        ),
        (Method::POST, "/v1/plugins?name=p".to_string(), json!({})),
        (
            Method::POST,
            "/v1/deliveries/msg_x/retry".to_string(),
            json!({}),
        ),
    ];
    for (method, uri, valid) in routes {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&body(valid), |bytes| {
            let (status, answer) = runtime.block_on(h.send(
                method.clone(),
                &uri,
                Some("t"),
                Body::from(bytes.clone()),
            ));
            prop_assert!(
                !status.is_server_error(),
                "{method} {uri} with {:?}: {status} {answer}",
                String::from_utf8_lossy(&bytes)
            );
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}
