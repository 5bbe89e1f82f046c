//! Test module: compiled only under #[cfg(test)], from its parent module.
//! The admin API through `router(state).oneshot(request)`, on a real SQLite store and plugin runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::config::PluginLimits;
use crate::deliver::client::ClientSettings;
use crate::ingest::ChainHealth;
use crate::store::{OutboxWrite, ParkedEvent};

const LOG: &str = r#"{"address":"0xf4eced2f682ce333f96f2d8966c613ded8fc95dd","topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"],"data":"0x00000000000000000000000000000000000000000000000000000000000186a0","blockNumber":"0x76250","blockHash":"0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae","transactionHash":"0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#;
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// A plugin keeping every event of a one-event batch; `extra` adds exports (e.g. `pipeline_init`).
fn plugin(extra: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "pipeline" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 8192) "\01\00\00\00\01\00")
  (data (i32.const 9000) "bad config")
  (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param i32) (result i64) (i64.const 35184372088838))
  {extra}
)"#
    );
    wat::parse_str(&text).unwrap()
}

const REJECTS_CONFIG: &str = r#"(func (export "pipeline_init") (param i32) (result i32)
  (call $log (i32.const 0) (i32.const 9000) (i32.const 10)) (i32.const 1))"#;

/// The state of one test, on its own database; the directory is removed on drop.
struct Harness {
    state: AdminState,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn harness() -> Harness {
    harness_with_chains(vec![]).await
}

async fn harness_with_chains(chains: Vec<Arc<ChainHealth>>) -> Harness {
    let dir = std::env::temp_dir().join(new_id("pipeline-admin-test"));
    let store = Store::connect(&format!("sqlite://{}/a.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    harness_on(store, dir, chains)
}

/// The harness on SQLite, then on a fresh PostgreSQL database when the test server is configured.
async fn each_store(check: impl AsyncFn(Harness)) {
    check(harness().await).await;
    if let Some(store) = crate::store::tests::postgres().await {
        let dir = std::env::temp_dir().join(new_id("pipeline-admin-test"));
        check(harness_on(store, dir, vec![])).await;
    }
}

fn harness_on(store: Store, dir: PathBuf, chains: Vec<Arc<ChainHealth>>) -> Harness {
    let runtime = PluginRuntime::new(PluginLimits {
        call_timeout_ms: 2_000,
        max_module_bytes: 64 << 10,
        ..PluginLimits::default()
    })
    .unwrap();
    let settings = ClientSettings {
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        ..ClientSettings::default()
    };
    let state = AdminState {
        registry: Registry::new(store.clone(), runtime.clone()),
        store,
        runtime,
        client: WebhookClient::new(settings).unwrap(),
        log_book: PluginLogBook::default(),
        chains,
        metrics: Metrics::new().unwrap(),
        token_sha256: Arc::new(auth::hash_token("t")),
        scheduler_lag_ms: Arc::new(AtomicU64::new(0)),
        limits: crate::config::ServerLimits::default(),
        chain_confirmations: Arc::new([(31337, 2)].into_iter().collect()),
        console: Default::default(),
    };
    Harness { state, dir }
}

impl Harness {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Body,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = router(self.state.clone())
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(Method::GET, uri, Some("t"), Body::empty()).await
    }

    /// Sends a JSON request that must be refused with `status`; returns the error code.
    async fn refused(&self, method: Method, uri: &str, body: Value, status: StatusCode) -> String {
        let (got, answer) = self.json(method, uri, body).await;
        error_code(got, &answer, status)
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        self.send(method, uri, Some("t"), Body::from(body.to_string()))
            .await
    }

    async fn upload(&self, wasm: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            "/v1/plugins?name=test",
            Some("t"),
            Body::from(wasm),
        )
        .await
    }

    async fn endpoint(&self) -> String {
        let (status, body) = self
            .json(
                Method::POST,
                "/v1/endpoints",
                json!({"url": "http://127.0.0.1:9/hook"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Parks `LOG` for the subscription, as the matcher does when its plugin fails.
    async fn park(&self, subscription_id: &str) {
        self.park_log(subscription_id, LOG).await
    }

    /// Parks `log` for the subscription (parking the same log twice keeps one row).
    async fn park_log(&self, subscription_id: &str, log: &str) {
        let parked = ParkedEvent {
            subscription_id: subscription_id.to_string(),
            chain_id: 1,
            event_type: "log".into(),
            log: log.into(),
            error: "trap: unreachable".into(),
            event_index: None,
            event_key: crate::event::ChainLog::from_json(log)
                .ok()
                .map(|l| ParkedEvent::key("log", l.block_hash, l.log_index)),
        };
        self.state
            .store
            .write_batch(
                &OutboxWrite {
                    parked: vec![parked],
                    ..Default::default()
                },
                0,
            )
            .await
            .unwrap();
    }

    async fn subscription(&self, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({"endpoint_id": self.endpoint().await, "chain_id": 1});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.json(Method::POST, "/v1/subscriptions", body).await
    }
}

/// Asserts the error shape and returns the code.
fn error_code(status: StatusCode, body: &Value, expected: StatusCode) -> String {
    assert_eq!(status, expected, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"]["code"].as_str().unwrap().to_string()
}

mod console;
mod delivery_state;
mod modes;
mod openapi;
mod properties;
mod reprocess;
mod secrets;
mod slow_loris;
mod ssrf;
mod strings;
mod tokens;

#[tokio::test]
async fn v1_needs_the_token() {
    let h = harness().await;
    let (status, body) = h
        .send(Method::GET, "/v1/plugins", None, Body::empty())
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::UNAUTHORIZED),
        "unauthorized"
    );
    let (status, body) = h
        .send(Method::GET, "/v1/plugins", Some("wrong"), Body::empty())
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::UNAUTHORIZED),
        "unauthorized"
    );
    let (status, body) = h.get("/v1/nothing-here").await;
    assert_eq!(
        error_code(status, &body, StatusCode::NOT_FOUND),
        "not_found"
    );
}

#[tokio::test]
async fn uploads_are_validated_and_deduplicated() {
    let h = harness().await;
    let (status, body) = h.upload(b"this is not a wasm module".to_vec()).await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_wasm"
    );
    let (status, body) = h
        .upload(wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap())
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "missing_export"
    );

    let (status, body) = h.upload(vec![0; (64 << 10) + 1]).await;
    assert_eq!(
        error_code(status, &body, StatusCode::PAYLOAD_TOO_LARGE),
        "too_large"
    );
    let (status, body) = h.upload(vec![0; 2 << 20]).await;
    assert_eq!(
        error_code(status, &body, StatusCode::PAYLOAD_TOO_LARGE),
        "too_large"
    );

    let (status, first) = h.upload(plugin("")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["name"], "test");
    assert_eq!(first["id"].as_str().unwrap().len(), 64);
    let (status, again) = h.upload(plugin("")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);

    let (_, list) = h.get("/v1/plugins").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], Value::Null);
    let (status, shown) = h
        .get(&format!("/v1/plugins/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!((status, &shown["size"]), (StatusCode::OK, &first["size"]));
}

#[tokio::test]
async fn a_plugin_in_use_cannot_be_deleted() {
    let h = harness().await;
    let (_, uploaded) = h.upload(plugin("")).await;
    let id = uploaded["id"].as_str().unwrap();
    let (status, sub) = h.subscription(json!({"plugin_id": id})).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    let (status, body) = h
        .send(
            Method::DELETE,
            &format!("/v1/plugins/{id}"),
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(error_code(status, &body, StatusCode::CONFLICT), "conflict");

    let sub_uri = format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap());
    let (status, _) = h
        .send(Method::DELETE, &sub_uri, Some("t"), Body::empty())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .send(
            Method::DELETE,
            &format!("/v1/plugins/{id}"),
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.get(&format!("/v1/plugins/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dry_run_reports_decisions_and_bad_events() {
    let h = harness().await;
    let (_, uploaded) = h.upload(plugin("")).await;
    let uri = format!("/v1/plugins/{}/test", uploaded["id"].as_str().unwrap());
    let log: Value = serde_json::from_str(LOG).unwrap();
    let (status, report) = h
        .json(
            Method::POST,
            &uri,
            json!({"config": {"x": 1}, "events": [log]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["kept"].as_u64(), report["error"].clone()),
        (Some(1), Value::Null),
        "{report}"
    );
    assert!(report["fuel_used"].as_u64().unwrap() > 0);

    let (status, body) = h
        .json(Method::POST, &uri, json!({"events": [log, {"address": 5}]}))
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_event"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events[1]"),
        "{body}"
    );
    let (status, body) = h
        .send(Method::POST, &uri, Some("t"), Body::from("{not json"))
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_json"
    );
}

#[tokio::test]
async fn endpoints_get_a_secret_and_refuse_private_urls() {
    let h = harness().await;
    let (status, created) = h
        .json(
            Method::POST,
            "/v1/endpoints",
            json!({"url": "http://127.0.0.1:9/hook", "description": "d"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_str().unwrap().starts_with("ep_"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["status"], "enabled");
    let uri = format!("/v1/endpoints/{}", created["id"].as_str().unwrap());
    let (status, shown) = h.get(&uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.get("secret").is_none(), "{shown}");

    assert_eq!(
        h.refused(
            Method::POST,
            "/v1/endpoints",
            json!({"url": "http://10.0.0.1/"}),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_url"
    );
    assert_eq!(
        h.refused(
            Method::POST,
            "/v1/endpoints",
            json!({"url": "http://127.0.0.1/", "secret": "nope"}),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_secret"
    );
    let (status, body) = h
        .json(
            Method::POST,
            "/v1/endpoints",
            json!({"url": "http://127.0.0.1/", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        )
        .await;
    assert_eq!(
        (status, body["secret"].as_str()),
        (
            StatusCode::CREATED,
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        )
    );
}

#[tokio::test]
async fn endpoints_are_patched_rotated_and_recovered() {
    let h = harness().await;
    let id = h.endpoint().await;
    let uri = format!("/v1/endpoints/{id}");
    let (status, patched) = h
        .json(
            Method::PATCH,
            &uri,
            json!({"status": "disabled", "description": "off"}),
        )
        .await;
    assert_eq!(
        (status, &patched["status"]),
        (StatusCode::OK, &json!("disabled")),
        "{patched}"
    );
    assert!(patched["disabled_reason"].is_string());
    let (_, patched) = h
        .json(Method::PATCH, &uri, json!({"status": "enabled"}))
        .await;
    assert_eq!(
        (&patched["status"], &patched["disabled_reason"]),
        (&json!("enabled"), &Value::Null)
    );
    assert_eq!(
        h.refused(
            Method::PATCH,
            &uri,
            json!({"status": "sleeping"}),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_status"
    );

    let (status, rotated) = h
        .send(
            Method::POST,
            &format!("{uri}/rotate-secret"),
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    let row = h.state.store.get_endpoint(&id).await.unwrap().unwrap();
    assert_eq!(row.signing_secrets(crate::store::now_ms()).len(), 2);

    let (status, body) = h
        .json(
            Method::POST,
            &format!("{uri}/recover"),
            json!({"since": "2024-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"recovered": 0})));
    let (status, body) = h
        .json(Method::POST, &format!("{uri}/recover"), json!({"since": 0}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"recovered": 0})));
    assert_eq!(
        h.refused(
            Method::POST,
            &format!("{uri}/recover"),
            json!({"since": "yesterday"}),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_since"
    );
}

#[tokio::test]
async fn subscriptions_are_created_shown_and_validated() {
    let h = harness().await;
    let filter = json!({"addresses": ["0xF4ECED2F682CE333F96F2D8966C613DED8FC95DD"], "topics": [TRANSFER_TOPIC, null], "confirmations": 2});
    let (status, created) = h.subscription(filter).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_str().unwrap().starts_with("sub_"));
    assert_eq!(
        created["addresses"],
        json!(["0xf4eced2f682ce333f96f2d8966c613ded8fc95dd"])
    );
    assert_eq!(created["topics"], json!([TRANSFER_TOPIC, null]));
    assert_eq!(
        (&created["status"], &created["parked_events"]),
        (&json!("active"), &json!(0))
    );
    let (status, shown) = h
        .get(&format!(
            "/v1/subscriptions/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["topics"], created["topics"]);
    let (_, list) = h.get("/v1/subscriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let (status, body) = h.get("/v1/subscriptions/sub_doesnotexist").await;
    assert_eq!(
        error_code(status, &body, StatusCode::NOT_FOUND),
        "not_found"
    );
    let (status, body) = h.subscription(json!({"topics": ["0x1234"]})).await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_filter"
    );
    let (status, body) = h.subscription(json!({"addresses": ["nope"]})).await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_filter"
    );
    let (status, body) = h.subscription(json!({"plugin_id": "abc"})).await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "unknown_plugin"
    );
    assert_eq!(
        h.refused(
            Method::POST,
            "/v1/subscriptions",
            json!({"endpoint_id": "ep_x", "chain_id": 1}),
            StatusCode::BAD_REQUEST
        )
        .await,
        "unknown_endpoint"
    );
    let (status, body) = h.subscription(json!({"chain_id": 0})).await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_chain_id"
    );
}

#[tokio::test]
async fn plugin_config_is_checked_by_the_plugin() {
    let h = harness().await;
    let (_, picky) = h.upload(plugin(REJECTS_CONFIG)).await;
    let (status, body) = h
        .subscription(json!({"plugin_id": picky["id"], "plugin_config": {"a": 1}}))
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_plugin_config"
    );
    assert_eq!(body["error"]["message"], "bad config");

    let (_, easy) = h.upload(plugin("")).await;
    let (status, sub) = h
        .subscription(json!({"plugin_id": easy["id"], "plugin_config": {"a": 1}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["plugin_config"], json!({"a": 1}));
    let uri = format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap());
    assert_eq!(
        h.refused(
            Method::PATCH,
            &uri,
            json!({"plugin_id": picky["id"]}),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_plugin_config"
    );
    let (status, paused) = h
        .json(
            Method::PATCH,
            &uri,
            json!({"status": "paused", "topics": null}),
        )
        .await;
    assert_eq!(
        (status, &paused["status"]),
        (StatusCode::OK, &json!("paused")),
        "{paused}"
    );
    let (_, detached) = h
        .json(Method::PATCH, &uri, json!({"plugin_id": null}))
        .await;
    assert_eq!(
        (
            &detached["plugin_id"],
            &detached["plugin_config"],
            &detached["status"]
        ),
        (&Value::Null, &Value::Null, &json!("active"))
    );
    assert_eq!(
        h.refused(
            Method::PATCH,
            &uri,
            json!({"colour": "red"}),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_json"
    );
}

#[tokio::test]
async fn parked_events_are_reprocessed_into_deliveries() {
    let h = harness().await;
    let (_, sub) = h.subscription(json!({})).await;
    let sub_id = sub["id"].as_str().unwrap().to_string();
    h.park(&sub_id).await;
    let uri = format!("/v1/subscriptions/{sub_id}");
    let (_, shown) = h.get(&uri).await;
    assert_eq!(shown["parked_events"], 1);
    let (_, list) = h.get(&format!("{uri}/parked")).await;
    assert_eq!(list["items"][0]["log"]["logIndex"], "0x0", "{list}");
    // The list counts every subscription's parked events in one query: each row its own.
    let (_, other) = h.subscription(json!({})).await;
    let (_, third) = h.subscription(json!({})).await;
    h.park(other["id"].as_str().unwrap()).await;
    h.park(other["id"].as_str().unwrap()).await; // the same event again: still one row
    let second = LOG.replace("\"logIndex\":\"0x0\"", "\"logIndex\":\"0x1\"");
    h.park_log(other["id"].as_str().unwrap(), &second).await;
    let (_, all) = h.get("/v1/subscriptions").await;
    let counts: std::collections::BTreeMap<&str, i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["parked_events"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected = std::collections::BTreeMap::from([
        (sub_id.as_str(), 1),
        (other["id"].as_str().unwrap(), 2),
        (third["id"].as_str().unwrap(), 0),
    ]);
    assert_eq!(counts, expected);

    let (status, body) = h
        .send(
            Method::POST,
            &format!("{uri}/reprocess"),
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"reprocessed": 1, "delivered": 1, "dropped": 0, "orphaned": 0, "held": 0})
        )
    );
    let (_, shown) = h.get(&uri).await;
    assert_eq!(shown["parked_events"], 0);

    let (_, deliveries) = h
        .get(&format!(
            "/v1/deliveries?subscription_id={sub_id}&status=pending"
        ))
        .await;
    let id = deliveries["items"][0]["id"].as_str().unwrap().to_string();
    let (status, detail) = h.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(
        (&detail["body"]["subscription_id"], &detail["attempts"]),
        (&json!(sub_id), &json!([]))
    );
    assert_eq!(
        detail["body"]["log"],
        serde_json::from_str::<Value>(LOG).unwrap()
    );
    let (status, retried) = h
        .send(
            Method::POST,
            &format!("/v1/deliveries/{id}/retry"),
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, retried),
        (
            StatusCode::ACCEPTED,
            json!({"id": id, "status": "retrying"})
        )
    );
    let (_, logs) = h.get(&format!("{uri}/logs")).await;
    assert_eq!(logs, json!({"items": []}));
}

#[tokio::test]
async fn reprocessing_with_a_failing_plugin_keeps_the_events_parked() {
    let h = harness().await;
    let trap = r#"(module (memory (export "memory") 2) (func (export "pipeline_abi_v1"))
      (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
      (func (export "pipeline_process") (param i32) (result i64) unreachable))"#;
    let (_, uploaded) = h.upload(wat::parse_str(trap).unwrap()).await;
    let (_, sub) = h.subscription(json!({"plugin_id": uploaded["id"]})).await;
    let sub_id = sub["id"].as_str().unwrap().to_string();
    h.park(&sub_id).await;
    let uri = format!("/v1/subscriptions/{sub_id}");
    let (status, body) = h
        .send(
            Method::POST,
            &format!("{uri}/reprocess"),
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::CONFLICT),
        "plugin_failed"
    );
    let (_, shown) = h.get(&uri).await;
    assert_eq!(shown["parked_events"], 1);
    let (_, deliveries) = h.get("/v1/deliveries").await;
    assert_eq!(deliveries["items"], json!([]));
}

#[tokio::test]
async fn deliveries_list_has_the_list_shape_and_checks_filters() {
    let h = harness().await;
    let (status, body) = h.get("/v1/deliveries").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"items": [], "next_cursor": null}))
    );
    let (status, body) = h.get("/v1/deliveries?status=lost").await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_status"
    );
    let (status, body) = h.get("/v1/deliveries?limit=many").await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_query"
    );
    let (status, body) = h.get("/v1/deliveries?cursor=zz").await;
    assert_eq!(
        error_code(status, &body, StatusCode::BAD_REQUEST),
        "invalid_cursor"
    );
    let (status, body) = h
        .send(
            Method::POST,
            "/v1/deliveries/msg_none/retry",
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(
        error_code(status, &body, StatusCode::NOT_FOUND),
        "not_found"
    );
}

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let h = harness().await;
    let (status, body) = h.send(Method::GET, "/healthz", None, Body::empty()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = h.send(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("ready")),
        "{body}"
    );

    let chain = Arc::new(ChainHealth {
        chain_id: 1,
        name: "main".into(),
        ..ChainHealth::default()
    });
    let h = harness_with_chains(vec![chain.clone()]).await;
    let (status, body) = h.send(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["chain:main"]["ok"], false);
    chain
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    h.state
        .scheduler_lag_ms
        .store(5_000, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = h.send(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!(
        (status, &body["checks"]["runtime"]["ok"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!(false))
    );
}
