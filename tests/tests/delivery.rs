//! The delivery policy against a real receiver: retries on the configured schedule (the tests run
//! with `200ms,500ms,1s`), the dead-letter state, manual retry, 410 disabling the endpoint, and
//! recovery of dead deliveries after the endpoint is fixed.

use std::time::Duration;

use pipeline_tests::admin::Body;
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::receiver::describe;
use pipeline_tests::{DbKind, Fixture, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

async fn delivery(fx: &Fixture, id: &str) -> Value {
    fx.admin()
        .get(&format!("/v1/deliveries/{id}"))
        .await
        .expect_status(&[200])
        .clone()
}

async fn wait_status(fx: &Fixture, id: &str, status: &str) -> Value {
    wait_until(
        &format!("delivery {id} {status}"),
        TIMEOUT,
        POLL,
        || async {
            let d = delivery(fx, id).await;
            if d["status"] == json!(status) {
                Ok(d)
            } else {
                Err(d.to_string())
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_dead_letters_410_and_recovery_sqlite() {
    let fx = Fixture::start(DbKind::Sqlite).await;
    let admin = fx.admin();
    let plugin = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let (endpoint, _) = fx.endpoint_for(&fx.receiver).await;
    fx.subscribe_transfers(&endpoint, &plugin, json!({"min_value": "0"}))
        .await;
    let to = fx.anvil.account(6);

    // 503 on every attempt: the first attempt and three retries, then dead.
    fx.receiver.set_status(503);
    fx.anvil.transfer(&fx.token, &to, 7).await;
    let attempts = fx.receiver.wait_for(4, TIMEOUT).await;
    let id = attempts[0].required_header("webhook-id").to_string();
    assert!(
        attempts
            .iter()
            .all(|r| r.required_header("webhook-id") == id),
        "one delivery, one id:\n{}",
        describe(&attempts)
    );
    for (pair, minimum_ms) in attempts.windows(2).zip([200u128, 500, 1000]) {
        let gap = pair[1].at.duration_since(pair[0].at).as_millis();
        assert!(
            gap >= minimum_ms * 9 / 10,
            "retry came after {gap} ms, schedule says {minimum_ms} ms"
        );
    }
    let dead = wait_status(&fx, &id, "dead").await;
    let history = dead["attempts"].as_array().expect("attempt history");
    assert_eq!(history.len(), 4, "{dead}");
    assert!(
        history.iter().all(|a| a["status_code"] == json!(503)),
        "{dead}"
    );
    let listed = admin.get("/v1/deliveries?status=dead").await;
    assert_eq!(
        listed.expect_status(&[200])["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    fx.receiver
        .expect_exactly(4, Duration::from_millis(1500))
        .await;

    // The receiver is fixed: a manual retry delivers it, same id.
    fx.receiver.set_status(200);
    admin
        .post_json(&format!("/v1/deliveries/{id}/retry"), json!({}))
        .await
        .expect_status(&[202]);
    let got = fx.receiver.wait_for(5, TIMEOUT).await;
    assert_eq!(got[4].required_header("webhook-id"), id);
    wait_status(&fx, &id, "delivered").await;

    // 410 Gone: the endpoint is disabled; later deliveries to it are dead, not sent.
    fx.receiver.set_status(410);
    fx.anvil.transfer(&fx.token, &to, 8).await;
    fx.receiver.wait_for(6, TIMEOUT).await;
    let path = format!("/v1/endpoints/{endpoint}");
    wait_until("endpoint disabled after 410", TIMEOUT, POLL, || async {
        let e = admin.get(&path).await;
        if e.body["status"] == json!("disabled") {
            Ok(())
        } else {
            Err(e.text)
        }
    })
    .await;
    fx.anvil.transfer(&fx.token, &to, 9).await;
    wait_until("two dead deliveries", TIMEOUT, POLL, || async {
        let dead = admin.get("/v1/deliveries?status=dead").await;
        match dead.body["items"].as_array().map(Vec::len) {
            Some(2) => Ok(()),
            _ => Err(dead.text),
        }
    })
    .await;
    fx.receiver
        .expect_exactly(6, Duration::from_millis(1500))
        .await;

    // Re-enable and recover: both dead deliveries go out.
    fx.receiver.set_status(200);
    let enabled = admin
        .request(
            Method::PATCH,
            &path,
            Body::Json(json!({"status": "enabled"})),
        )
        .await;
    assert_eq!(enabled.expect_status(&[200])["status"], json!("enabled"));
    let recovered = admin
        .post_json(&format!("{path}/recover"), json!({"since": 0}))
        .await;
    assert_eq!(
        recovered.expect_status(&[200])["recovered"],
        json!(2),
        "{}",
        recovered.text
    );
    let all = fx.receiver.wait_for(8, TIMEOUT).await;
    let values: Vec<Value> = all[6..]
        .iter()
        .map(|r| r.json()["data"]["value"].clone())
        .collect();
    assert!(
        values.contains(&json!("8")) && values.contains(&json!("9")),
        "{}",
        describe(&all)
    );
}
