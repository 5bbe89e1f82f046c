//! Plugin canaries through the router (issue 12): start (400/404/409), show, promote, discard,
//! and what the registry's snapshot carries for the matcher after each. On both stores.

use super::*;

const ACCEPTS_CONFIG: &str =
    r#"(func (export "pipeline_init") (param i32) (result i32) (i32.const 0))"#;

/// The live snapshot's subscription: its plugin id and its canary's id.
fn snapshot(h: &Harness, id: &str) -> (Option<String>, Option<String>) {
    let set = h.state.registry.subscriptions().borrow().clone();
    let sub = set.subscriptions.iter().find(|s| s.id == id).unwrap();
    (
        sub.plugin.as_ref().map(|p| p.plugin.id.clone()),
        sub.canary.as_ref().map(|c| c.id.clone()),
    )
}

#[tokio::test]
async fn canaries_are_started_shown_promoted_and_discarded() {
    each_store(async |h: Harness| {
        let (_, live) = h.upload(plugin("")).await;
        let (_, candidate) = h.upload(plugin(ACCEPTS_CONFIG)).await;
        let (_, picky) = h.upload(plugin(REJECTS_CONFIG)).await;
        let (live, candidate) = (live["id"].clone(), candidate["id"].clone());
        let (status, sub) = h
            .subscription(json!({"plugin_id": live, "plugin_config": {"min_value": "100"}}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        let id = sub["id"].as_str().unwrap().to_string();
        let uri = format!("/v1/subscriptions/{id}/canary");

        let (status, body) = h.get(&uri).await;
        assert_eq!(
            error_code(status, &body, StatusCode::NOT_FOUND),
            "not_found"
        );
        let start = json!({"plugin_id": candidate, "plugin_config": {"min_value": "50"}});
        let missing = "/v1/subscriptions/sub_missing/canary";
        assert_eq!(
            h.refused(Method::POST, missing, start.clone(), StatusCode::NOT_FOUND)
                .await,
            "not_found"
        );
        let unknown = json!({"plugin_id": "0".repeat(64)});
        assert_eq!(
            h.refused(Method::POST, &uri, unknown, StatusCode::BAD_REQUEST)
                .await,
            "unknown_plugin"
        );
        let rejected = json!({"plugin_id": picky["id"], "plugin_config": {"a": 1}});
        assert_eq!(
            h.refused(Method::POST, &uri, rejected, StatusCode::BAD_REQUEST)
                .await,
            "invalid_plugin_config"
        );
        assert_eq!(
            h.refused(Method::POST, &uri, json!({}), StatusCode::BAD_REQUEST)
                .await,
            "invalid_json"
        );

        let (status, started) = h.json(Method::POST, &uri, start.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{started}");
        assert_eq!(started["plugin_id"], candidate);
        assert_eq!(started["plugin_config"], json!({"min_value": "50"}));
        assert_eq!(started["events"]["compared"], 0);
        assert_eq!(started["examples"], json!([]));
        let canary_id = started["id"].as_str().unwrap().to_string();
        assert_eq!(
            h.refused(Method::POST, &uri, start.clone(), StatusCode::CONFLICT)
                .await,
            "canary_exists"
        );
        let (status, shown) = h.get(&uri).await;
        assert_eq!((status, &shown["id"]), (StatusCode::OK, &json!(canary_id)));
        assert_eq!(
            snapshot(&h, &id),
            (live.as_str().map(String::from), Some(canary_id.clone())),
            "the matcher's snapshot runs the canary beside the live plugin"
        );

        let promote = format!("{uri}/promote");
        let (status, promoted) = h.json(Method::POST, &promote, Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{promoted}");
        assert_eq!(promoted["plugin_id"], candidate);
        assert_eq!(promoted["plugin_config"], json!({"min_value": "50"}));
        let (status, body) = h.get(&uri).await;
        assert_eq!(
            error_code(status, &body, StatusCode::NOT_FOUND),
            "not_found"
        );
        assert_eq!(
            snapshot(&h, &id),
            (candidate.as_str().map(String::from), None)
        );
        assert_eq!(
            h.refused(Method::POST, &promote, Value::Null, StatusCode::NOT_FOUND)
                .await,
            "not_found"
        );

        // Discarding changes nothing live.
        let back = json!({"plugin_id": live});
        let (status, body) = h.json(Method::POST, &uri, back).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, _) = h.send(Method::DELETE, &uri, Some("t"), Body::empty()).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = h.send(Method::DELETE, &uri, Some("t"), Body::empty()).await;
        assert_eq!(
            error_code(status, &body, StatusCode::NOT_FOUND),
            "not_found"
        );
        assert_eq!(
            snapshot(&h, &id),
            (candidate.as_str().map(String::from), None)
        );
        let (_, sub) = h.get(&format!("/v1/subscriptions/{id}")).await;
        assert_eq!(sub["plugin_id"], candidate);
    })
    .await;
}

#[tokio::test]
async fn a_subscription_without_a_plugin_can_have_a_canary() {
    let h = harness().await;
    let (_, candidate) = h.upload(plugin("")).await;
    let (_, sub) = h.subscription(json!({})).await;
    let id = sub["id"].as_str().unwrap();
    let uri = format!("/v1/subscriptions/{id}/canary");
    let (status, body) = h
        .json(Method::POST, &uri, json!({"plugin_id": candidate["id"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["plugin_config"], Value::Null);
    assert_eq!(snapshot(&h, id).0, None, "no live plugin: every event kept");
    assert!(snapshot(&h, id).1.is_some());
    // Deleting the subscription takes the canary with it.
    let (status, _) = h
        .send(
            Method::DELETE,
            &format!("/v1/subscriptions/{id}"),
            Some("t"),
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.state.store.list_canaries().await.unwrap().is_empty());
}
