//! The newcomer's commands as processes: `pipeline dev` shows verified webhooks within a minute;
//! `pipeline listen` verifies a real webhook from the host (fed by `pipeline dev-node`), forwards
//! it, and rejects a tampered copy with a message naming the reason.

use std::time::{Duration, Instant};

use pipeline_tests::command::Running;
use pipeline_tests::{Admin, DbKind, Host, HostOptions, Receiver, free_port, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_dev_prints_verified_webhooks_within_a_minute() {
    let started = Instant::now();
    let port = free_port().to_string();
    let mut dev = Running::spawn(&[
        "dev",
        "--admin-port",
        &port,
        "--rate",
        "200",
        "--block-ms",
        "250",
        "--min-value",
        "0",
    ]);
    let verified = dev
        .wait_for("5 verified webhooks", 5, Duration::from_secs(60), |l| {
            l.starts_with("verified  log  chain 1  block ")
        })
        .await;
    println!(
        "pipeline dev: {} verified webhooks printed {:.1} s after start",
        verified.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        !dev.lines().iter().any(|l| l.starts_with("rejected")),
        "{}",
        dev.output()
    );
    assert!(
        verified[0].contains("data {\""),
        "the plugin's payload is shown: {}",
        verified[0]
    );

    // The banner's token and API work as printed.
    let token = dev
        .value_after("token  ")
        .expect("the banner prints the token");
    let api = dev
        .value_after("admin API  ")
        .expect("the banner prints the API");
    let admin = Admin::new(&api, Some(&token));
    // Outcomes are recorded just after the answer (in groups): poll, do not expect them at once.
    wait_until(
        "delivered deliveries listed",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let answer = admin.get("/v1/deliveries?status=delivered").await;
            match answer.body["items"].as_array() {
                Some(items) if !items.is_empty() => Ok(()),
                _ => Err(format!("{answer:?}")),
            }
        },
    )
    .await;
    let status = dev.terminate(Duration::from_secs(45));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM stops dev cleanly: {status:?}\n{}",
        dev.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_listen_verifies_real_webhooks_and_rejects_tampered_ones() {
    let node_addr = format!("127.0.0.1:{}", free_port());
    let mut node = Running::spawn(&[
        "dev-node",
        "--listen",
        &node_addr,
        "--chain-id",
        "31337",
        "--source",
        "transfers",
        "--tokens",
        "4",
        "--rate",
        "40",
        "--block-ms",
        "200",
    ]);
    node.wait_for("the node's banner", 1, Duration::from_secs(20), |l| {
        l.contains("token contracts")
    })
    .await;
    let token = node
        .value_after("token contracts ")
        .expect("the first token address");

    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let forwarded = Receiver::start().await;
    let listen_port = free_port();
    let mut listen = Running::spawn(&[
        "listen",
        "--port",
        &listen_port.to_string(),
        "--secret",
        secret,
        "--forward",
        &forwarded.url(),
    ]);
    listen
        .wait_for("listen's banner", 1, Duration::from_secs(20), |l| {
            l.starts_with("listening on")
        })
        .await;

    let host = Host::start(HostOptions::new(
        DbKind::Sqlite,
        &format!("ws://{node_addr}"),
    ))
    .await;
    let listen_url = format!("http://127.0.0.1:{listen_port}/hook");
    let endpoint = host
        .admin()
        .post_json(
            "/v1/endpoints",
            json!({"url": listen_url, "secret": secret}),
        )
        .await;
    let endpoint_id = endpoint.str_field("id");
    host.admin()
        .create_subscription(
            json!({"endpoint_id": endpoint_id, "chain_id": 31337, "addresses": [token]}),
        )
        .await;

    let verified = listen
        .wait_for("3 verified webhooks", 3, Duration::from_secs(60), |l| {
            l.starts_with("verified  log  chain 31337")
        })
        .await;
    assert!(verified.iter().all(|l| l.contains(&token)), "{verified:?}");
    let originals = forwarded.wait_for(3, Duration::from_secs(10)).await;

    // A real webhook with its body changed: 401, and the reason names the body.
    let original = &originals[0];
    let tampered = original
        .body_str()
        .replace("\"removed\":false", "\"removed\":true");
    assert_ne!(tampered, original.body_str());
    let mut request = reqwest::Client::new().post(&listen_url).body(tampered);
    for name in [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
    ] {
        request = request.header(name, original.required_header(name));
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let reason = answer.text().await.unwrap();
    assert!(reason.contains("body"), "{reason}");
    let id = original.required_header("webhook-id").to_string();
    let rejected = listen
        .wait_for("the rejection line", 1, Duration::from_secs(5), |l| {
            l.starts_with(&format!("rejected  {id}: "))
        })
        .await;
    println!("{}\n{}", verified[0], rejected[0]);
    drop(node);
}
