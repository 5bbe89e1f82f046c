//! Per-subscription confirmations: a subscription that asks for 2 confirmations on a chain ingested
//! at its head gets each webhook only once two more blocks are on top of the event's block.

use std::time::Duration;

use pipeline_tests::fixture::transfer_subscription;
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::{DbKind, Fixture};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_wait_for_the_subscriptions_confirmations_sqlite() {
    let fx = Fixture::start(DbKind::Sqlite).await;
    let plugin = fx
        .admin()
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let (endpoint, _) = fx.endpoint_for(&fx.receiver).await;
    let mut body = transfer_subscription(&endpoint, &fx.token, &plugin, json!({"min_value": "0"}));
    body["confirmations"] = json!(2);
    fx.admin().create_subscription(body).await;

    fx.anvil.transfer(&fx.token, &fx.anvil.account(5), 42).await;
    fx.receiver
        .expect_exactly(0, Duration::from_millis(1500))
        .await;
    fx.anvil.mine().await;
    fx.receiver
        .expect_exactly(0, Duration::from_millis(1500))
        .await;
    fx.anvil.mine().await;
    let got = fx.receiver.wait_for(1, Duration::from_secs(15)).await;
    let webhook = got[0].json();
    assert_eq!(webhook["confirmations"], json!(2));
    assert_eq!(webhook["data"]["value"], json!("42"));
}
