//! Receivers that answer to hurt — NUL bytes and invalid UTF-8 in the body, a 10 MB body, a body
//! that drips a byte every 100 ms, a redirect loop — beside a healthy endpoint, on PostgreSQL
//! (whose `text` refuses NUL: one such body used to fail the whole batch of recorded outcomes, so
//! every other endpoint's deliveries stayed leased and were sent again).

use std::time::Duration;

use pipeline_tests::plugins::example_plugin;
use pipeline_tests::postgres::server_url_or_skip;
use pipeline_tests::receiver::{Answer, describe};
use pipeline_tests::{Admin, DbKind, Fixture, Receiver, wait_until};
use serde_json::{Value, json};

const EVENTS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// The deliveries of `endpoint`, with their attempt history, once all `EVENTS` are final.
async fn final_deliveries(admin: &Admin, endpoint: &str) -> Vec<Value> {
    let ids: Vec<String> = wait_until(
        &format!("{EVENTS} final deliveries to {endpoint}"),
        TIMEOUT,
        POLL,
        || async {
            let page = admin
                .get(&format!("/v1/deliveries?endpoint_id={endpoint}"))
                .await;
            let items = page.expect_status(&[200])["items"].as_array().cloned();
            let items = items.unwrap_or_default();
            let done = items
                .iter()
                .filter(|d| d["status"] == json!("delivered") || d["status"] == json!("dead"))
                .count();
            match (items.len(), done) {
                (EVENTS, EVENTS) => Ok(items
                    .iter()
                    .map(|d| d["id"].as_str().unwrap().to_string())
                    .collect()),
                _ => Err(page.text.clone()),
            }
        },
    )
    .await;
    let mut details = Vec::new();
    for id in ids {
        let detail = admin.get(&format!("/v1/deliveries/{id}")).await;
        details.push(detail.expect_status(&[200]).clone());
    }
    details
}

/// Every webhook of `EVENTS` distinct ids reached `receiver` exactly once.
fn each_sent_once(name: &str, receiver: &Receiver) {
    let counts = receiver.count_by_id();
    assert!(
        counts.len() == EVENTS && counts.values().all(|&n| n == 1),
        "{name}: expected {EVENTS} webhook ids once each, got {counts:?}\n{}",
        describe(&receiver.requests())
    );
}

/// The one attempt of a delivery: its status code, error and stored response body.
fn only_attempt(delivery: &Value) -> (Option<u64>, String, String) {
    let attempts = delivery["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "one attempt: {delivery}");
    let a = &attempts[0];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        a["status_code"].as_u64(),
        text(&a["error"]),
        text(&a["response_body"]),
    )
}

fn check_hostile(answer: Answer, deliveries: &[Value]) {
    for d in deliveries {
        let (code, error, body) = only_attempt(d);
        assert!(!body.contains('\0'), "{answer:?}: {d}");
        assert!(
            body.len() <= 4096,
            "{answer:?}: {} bytes stored",
            body.len()
        );
        match answer {
            Answer::NulBody => {
                assert_eq!(d["status"], json!("delivered"), "{d}");
                assert_eq!(
                    body, "ok\\u0000\\u0000\u{fffd}\u{fffd}\\u001b[31m\\u0000done",
                    "{d}"
                );
            }
            Answer::HugeBody => {
                assert_eq!(d["status"], json!("delivered"), "{d}");
                assert!(body.starts_with("\\u0000\u{fffd}big!!!"), "{d}");
            }
            Answer::DripBody => {
                assert_eq!(d["status"], json!("delivered"), "{d}");
                assert!(
                    body.starts_with('d') && body.ends_with("[body read stopped after 2000 ms]"),
                    "{d}"
                );
            }
            Answer::RedirectLoop => {
                assert_eq!(
                    (d["status"].clone(), code),
                    (json!("dead"), Some(302)),
                    "{d}"
                );
                assert!(error.contains("redirects are not followed"), "{d}");
            }
            Answer::Status => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_receivers_do_not_hurt_other_deliveries_postgres() {
    let Some(url) = server_url_or_skip("hostile_receivers_do_not_hurt_other_deliveries_postgres")
    else {
        return;
    };
    let fx = Fixture::start(DbKind::Postgres(url)).await;
    let admin = fx.admin();
    let plugin = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let config = json!({"min_value": "0"});
    let (healthy, _) = fx.endpoint_for(&fx.receiver).await;
    fx.subscribe_transfers(&healthy, &plugin, config.clone())
        .await;
    let mut hostile = Vec::new();
    for answer in [
        Answer::NulBody,
        Answer::HugeBody,
        Answer::DripBody,
        Answer::RedirectLoop,
    ] {
        let receiver = Receiver::start().await;
        receiver.set_answer(answer);
        let (endpoint, _) = fx.endpoint_for(&receiver).await;
        fx.subscribe_transfers(&endpoint, &plugin, config.clone())
            .await;
        hostile.push((answer, receiver, endpoint));
    }

    // One block per transfer: each block's outcomes, healthy and hostile, are recorded together.
    let to = fx.anvil.account(6);
    for i in 0..EVENTS {
        fx.anvil.transfer(&fx.token, &to, 10 + i as u128).await;
    }

    for d in final_deliveries(admin, &healthy).await {
        let (code, _, _) = only_attempt(&d);
        assert_eq!(
            (d["status"].clone(), code),
            (json!("delivered"), Some(200)),
            "{d}"
        );
    }
    for (answer, _, endpoint) in &hostile {
        check_hostile(*answer, &final_deliveries(admin, endpoint).await);
    }
    // Every outcome is recorded, so nothing is leased to be sent again; a short quiet period
    // confirms no receiver got anything twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    each_sent_once("healthy", &fx.receiver);
    for (answer, receiver, _) in &hostile {
        each_sent_once(&format!("{answer:?}"), receiver);
    }
}
