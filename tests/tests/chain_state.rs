//! Chain state across a restart: a log delivered before the host stops is withdrawn with a
//! `log.removed` webhook when the reorg that orphans its block is only seen after the restart (the
//! reorg window is durable). On SQLite and on PostgreSQL (`*_postgres`).

use std::time::Duration;

use pipeline_tests::checks::wait_delivered;
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::postgres::server_url_or_skip;
use pipeline_tests::receiver::describe;
use pipeline_tests::{Anvil, DbKind, Fixture};
use serde_json::json;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_after_a_restart_withdraws_a_log_delivered_before_it_sqlite() {
    reorg_after_restart(DbKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_after_a_restart_withdraws_a_log_delivered_before_it_postgres() {
    if let Some(url) =
        server_url_or_skip("a_reorg_after_a_restart_withdraws_a_log_delivered_before_it_postgres")
    {
        reorg_after_restart(DbKind::Postgres(url)).await
    }
}

async fn reorg_after_restart(db: DbKind) {
    let mut fx = Fixture::start(db).await;
    let plugin = fx
        .admin()
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers")
        .await;
    let (endpoint, _secret) = fx.endpoint_for(&fx.receiver).await;
    let sub = fx
        .subscribe_transfers(&endpoint, &plugin, json!({"min_value": "0"}))
        .await;
    // The reorg goes back to this (empty) block, which the host ingests like any other.
    fx.anvil.mine().await;
    let snapshot = fx.anvil.rpc("evm_snapshot", json!([])).await;
    let receipt = fx.anvil.transfer(&fx.token, &fx.anvil.account(3), 77).await;
    let got = fx.receiver.wait_for(1, WEBHOOK_TIMEOUT).await;
    let delivered = got[0].json();
    assert_eq!(delivered["type"], json!("log"), "{}", describe(&got));
    assert_eq!(delivered["log"]["blockHash"], receipt["blockHash"]);
    // Recorded as delivered, and the cursor with it: the host has nothing of it left to do.
    wait_delivered(fx.admin(), 1).await;

    fx.host.stop().await;
    // While the host is down, the transfer's block is reorged out by a longer chain without it.
    assert_eq!(
        fx.anvil.rpc("evm_revert", json!([snapshot])).await,
        json!(true)
    );
    fx.anvil.mine().await;
    fx.anvil.mine().await;
    fx.host.start_again().await;

    fx.receiver.wait_for(2, WEBHOOK_TIMEOUT).await;
    let got = fx.receiver.expect_exactly(2, Duration::from_secs(2)).await;
    let removed = got[1].json();
    assert_eq!(removed["type"], json!("log.removed"), "{}", describe(&got));
    assert_eq!(removed["subscription_id"], json!(sub));
    assert_eq!(removed["log"]["removed"], json!(true));
    for field in ["blockHash", "blockNumber", "transactionHash", "logIndex"] {
        assert_eq!(removed["log"][field], delivered["log"][field], "{field}");
    }
    assert_eq!(removed["data"]["value"], json!("77"));
    assert_ne!(
        got[1].required_header("webhook-id"),
        got[0].required_header("webhook-id"),
        "a withdrawal is a webhook of its own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_over_20000_blocks_delivers_every_log_once_in_block_order_sqlite() {
    backfill_from_start_block(DbKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_over_20000_blocks_delivers_every_log_once_in_block_order_postgres() {
    if let Some(url) = server_url_or_skip(
        "a_backfill_over_20000_blocks_delivers_every_log_once_in_block_order_postgres",
    ) {
        backfill_from_start_block(DbKind::Postgres(url)).await
    }
}

/// 50 transfers spread over 20,050 blocks that exist before the host first ingests anything
/// (from `start_block`), with ranges of at most 2,000 blocks: every transfer arrives once, in
/// block order (one delivery at a time to the endpoint, so arrival order is insertion order), and
/// the blocks were fetched by ranges. Mining 20,000 blocks takes anvil a minute or two.
async fn backfill_from_start_block(db: DbKind) {
    const TRANSFERS: u128 = 50;
    const GAP: u64 = 400;
    let env = vec![
        (
            "PIPELINE_INGEST_MAX_RANGE_BLOCKS".to_string(),
            "2000".to_string(),
        ),
        (
            "PIPELINE_DELIVERY_PER_ENDPOINT_CONCURRENCY".to_string(),
            "1".to_string(),
        ),
    ];
    let anvil = Anvil::start_with_args(&["--prune-history"]).await;
    let mut fx = Fixture::start_with_anvil(db, env, anvil).await;
    let plugin = fx
        .admin()
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers")
        .await;
    let (endpoint, _secret) = fx.endpoint_for(&fx.receiver).await;
    let sub = fx
        .subscribe_transfers(&endpoint, &plugin, json!({"min_value": "0"}))
        .await;
    // Nothing was mined since the host started: it has no cursor and starts from start_block.
    fx.host.stop().await;
    let to = fx.anvil.account(4);
    for value in 1..=TRANSFERS {
        fx.anvil
            .rpc("anvil_mine", json!([format!("{GAP:#x}")]))
            .await;
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    let head = fx.anvil.block_number().await;
    let started = std::time::Instant::now();
    fx.host.start_again().await;
    fx.receiver
        .wait_for(TRANSFERS as usize, Duration::from_secs(120))
        .await;
    let elapsed = started.elapsed();
    let got = fx
        .receiver
        .expect_exactly(TRANSFERS as usize, Duration::from_secs(2))
        .await;
    let values: Vec<u128> = got
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["subscription_id"], json!(sub));
            body["data"]["value"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(
        values,
        (1..=TRANSFERS).collect::<Vec<_>>(),
        "{}",
        describe(&got)
    );
    // Caught up by ranges (all but the last reorg window of blocks), not block by block.
    let metrics = fx.host.metrics().await;
    let by_ranges: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pipeline_backfill_blocks_total{chain=\"anvil\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(by_ranges >= 20_000 - 64, "{by_ranges} blocks by ranges");
    println!(
        "backfill: {head} blocks, {TRANSFERS} logs delivered in {:.1} s ({:.0} blocks/s including start-up)",
        elapsed.as_secs_f64(),
        head as f64 / elapsed.as_secs_f64()
    );
}
