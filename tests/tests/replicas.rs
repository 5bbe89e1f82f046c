//! Scale-out on PostgreSQL (DESIGN §3): two `pipeline` processes share one database; one ingests
//! the chain while the other stands by, and when the owner is killed the standby takes over and
//! nothing is lost or sent twice.

use std::time::Duration;

use pipeline_tests::checks::{assert_unique_ids, wait_delivered};
use pipeline_tests::host::{Host, HostOptions};
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::postgres::server_url_or_skip;
use pipeline_tests::receiver::describe;
use pipeline_tests::{DbKind, Fixture, wait_until};
use serde_json::json;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(2);

/// `pipeline_events_received_total{chain="anvil"}` of one host (0 when absent).
async fn events_received(host: &Host) -> u64 {
    let metrics = host.metrics().await;
    metrics
        .lines()
        .find(|l| l.starts_with("pipeline_events_received_total{chain=\"anvil\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_replica_takes_over_the_chain_postgres() {
    let Some(server) = server_url_or_skip("a_standby_replica_takes_over_the_chain_postgres") else {
        return;
    };
    let mut fx = Fixture::start(DbKind::Postgres(server)).await;
    let plugin = fx
        .admin()
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let (endpoint, _) = fx.endpoint_for(&fx.receiver).await;
    fx.subscribe_transfers(&endpoint, &plugin, json!({"min_value": "0"}))
        .await;

    let standby = Host::start(HostOptions {
        env: vec![("DATABASE_URL".into(), fx.host.database_url().to_string())],
        ..HostOptions::new(DbKind::Sqlite, &fx.anvil.ws_url())
    })
    .await;
    assert_eq!(standby.healthz().await, Ok(200));

    let to = fx.anvil.account(4);
    for value in [1, 2, 3] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.receiver.wait_for(3, WEBHOOK_TIMEOUT).await;
    wait_delivered(fx.admin(), 3).await;
    assert!(
        events_received(&fx.host).await >= 3,
        "the first replica owns the chain"
    );
    assert_eq!(
        events_received(&standby).await,
        0,
        "the standby ingests nothing while the owner lives"
    );
    let ready = standby.admin().get("/readyz").await;
    assert_eq!(
        ready.status, 200,
        "a standby replica is ready: {}",
        ready.text
    );

    // The owner dies without a goodbye; its database session ends and the standby takes over.
    fx.host.kill();
    for value in [4, 5] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.receiver.wait_for(5, WEBHOOK_TIMEOUT).await;
    let got = fx.receiver.expect_exactly(5, QUIET).await;
    assert_unique_ids(&got);
    let values: Vec<String> = got
        .iter()
        .map(|r| {
            r.json()["data"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for value in ["1", "2", "3", "4", "5"] {
        assert!(
            values.iter().any(|v| v == value),
            "transfer {value} missing:\n{}",
            describe(&got)
        );
    }
    wait_until(
        "the standby to have ingested",
        WEBHOOK_TIMEOUT,
        Duration::from_millis(200),
        || async {
            match events_received(&standby).await {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} events")),
            }
        },
    )
    .await;
}
