//! End-to-end scenarios against real processes: anvil, the `pipeline` binary, a webhook receiver,
//! the Python Standard Webhooks verifier; each on SQLite and on PostgreSQL (`*_postgres`, which
//! `.ci/run` requires to have run and passed). Run with `scripts/test.sh`.

use std::time::Duration;

use pipeline_tests::checks::{assert_unique_ids, wait_delivered};
use pipeline_tests::plugins::{example_plugin, missing_marker_module, trap_plugin};
use pipeline_tests::postgres::server_url_or_skip;
use pipeline_tests::receiver::describe;
use pipeline_tests::verifier::assert_verified;
use pipeline_tests::{DbKind, Fixture, Receiver, wait_until};
use serde_json::json;

/// How long a webhook may take to arrive.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

macro_rules! on_both_stores {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $sqlite() {
            $scenario(DbKind::Sqlite).await
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn $postgres() {
            if let Some(url) = server_url_or_skip(stringify!($postgres)) {
                $scenario(DbKind::Postgres(url)).await
            }
        }
    };
}

on_both_stores!(erc20_filter, erc20_filter_sqlite, erc20_filter_postgres);
on_both_stores!(
    restart_delivers_exactly_once,
    restart_delivers_exactly_once_sqlite,
    restart_delivers_exactly_once_postgres
);
on_both_stores!(
    sent_before_commit_delivers_exactly_once,
    sent_before_commit_delivers_exactly_once_sqlite,
    sent_before_commit_delivers_exactly_once_postgres
);
on_both_stores!(
    trapping_plugin_is_isolated,
    trapping_plugin_is_isolated_sqlite,
    trapping_plugin_is_isolated_postgres
);
on_both_stores!(
    admin_rejects_bad_input,
    admin_rejects_bad_input_sqlite,
    admin_rejects_bad_input_postgres
);

/// Scenario 1: an erc20-transfers subscription with min_value 50 gets exactly the 50 and 500
/// transfers, in the DESIGN §5 body, signed so that the reference verifier accepts them.
async fn erc20_filter(db: DbKind) {
    let fx = Fixture::start(db).await;
    let admin = fx.admin();
    let plugin_id = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers")
        .await;
    let (endpoint_id, secret) = fx.endpoint_for(&fx.receiver).await;
    let sub_id = fx
        .subscribe_transfers(&endpoint_id, &plugin_id, json!({"min_value": "50"}))
        .await;

    let to = fx.anvil.account(1);
    for value in [5, 50, 500] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    let (got, values) = fx.transfer_webhooks(2, &sub_id, &to).await;
    assert_eq!(
        values,
        vec![50, 500],
        "delivered values:\n{}",
        describe(&got)
    );
    assert_unique_ids(&got);
    assert_verified(&secret, &got);
    wait_delivered(admin, 2).await;
}

/// Scenario 2: SIGTERM (exit 0), transfers while the host is down, start again on the same store:
/// the missed transfers arrive exactly once and nothing delivered before arrives again.
async fn restart_delivers_exactly_once(db: DbKind) {
    restart_scenario(Fixture::start(db).await).await
}

/// Scenario 2 with `[delivery] send_before_commit`: jobs handed to the workers before their
/// batch's write still arrive once each, their outcomes land on the rows the write inserted
/// (recorded as delivered, so the restart sends none of them again).
async fn sent_before_commit_delivers_exactly_once(db: DbKind) {
    let env = vec![(
        "PIPELINE_DELIVERY_SEND_BEFORE_COMMIT".to_string(),
        "true".to_string(),
    )];
    restart_scenario(Fixture::start_with_env(db, env).await).await
}

async fn restart_scenario(mut fx: Fixture) {
    let plugin_id = fx
        .admin()
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers")
        .await;
    let (endpoint_id, secret) = fx.endpoint_for(&fx.receiver).await;
    let sub_id = fx
        .subscribe_transfers(&endpoint_id, &plugin_id, json!({"min_value": "50"}))
        .await;
    let to = fx.anvil.account(2);

    for value in [100, 200] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.receiver.wait_for(2, WEBHOOK_TIMEOUT).await;
    // Recorded as delivered before the shutdown: a redelivery after it would be a duplicate.
    wait_delivered(fx.admin(), 2).await;

    fx.host.stop().await;
    for value in [60, 70] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    fx.host.start_again().await;

    let (got, values) = fx.transfer_webhooks(4, &sub_id, &to).await;
    assert_eq!(
        values,
        vec![60, 70, 100, 200],
        "delivered values:\n{}",
        describe(&got)
    );
    assert_unique_ids(&got);
    assert_verified(&secret, &got);
    wait_delivered(fx.admin(), 4).await;
}

/// Scenario 3: a plugin that traps on every batch harms only its own subscription.
async fn trapping_plugin_is_isolated(db: DbKind) {
    let mut fx = Fixture::start(db).await;
    let admin = fx.admin().clone();
    let trap_plugin_id = admin.upload_plugin(&trap_plugin(), "trap").await;
    let good_plugin_id = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers")
        .await;
    let trap_receiver = Receiver::start().await;
    let (trap_endpoint, _) = fx.endpoint_for(&trap_receiver).await;
    let (good_endpoint, secret) = fx.endpoint_for(&fx.receiver).await;
    let trap_sub = fx
        .subscribe_transfers(&trap_endpoint, &trap_plugin_id, json!({}))
        .await;
    let good_sub = fx
        .subscribe_transfers(&good_endpoint, &good_plugin_id, json!({"min_value": "0"}))
        .await;

    let to = fx.anvil.account(3);
    for value in [10, 20, 30] {
        fx.anvil.transfer(&fx.token, &to, value).await;
    }
    let (got, values) = fx.transfer_webhooks(3, &good_sub, &to).await;
    assert_eq!(
        values,
        vec![10, 20, 30],
        "the healthy subscription's webhooks:\n{}",
        describe(&got)
    );
    assert_verified(&secret, &got);

    assert_eq!(
        trap_receiver.count(),
        0,
        "the trapping plugin's endpoint must get nothing:\n{}",
        describe(&trap_receiver.requests())
    );
    assert!(
        fx.host.is_running(),
        "the host process died\n{}",
        fx.host.logs_tail(200)
    );
    assert_eq!(
        fx.host.healthz().await,
        Ok(200),
        "GET /healthz after plugin traps"
    );
    let resp = admin.get(&format!("/v1/subscriptions/{trap_sub}")).await;
    resp.expect_status(&[200]);
    assert_eq!(
        resp.body["id"],
        json!(trap_sub),
        "GET /v1/subscriptions/{{id}} body: {}",
        resp.text
    );
    let status = resp.body["status"].as_str().unwrap_or_default();
    assert!(
        ["active", "quarantined"].contains(&status),
        "the trapping subscription should be active or quarantined, got {status:?}: {}",
        resp.text
    );
    // DESIGN §5: the subscription shows its last plugin error.
    let path = format!("/v1/subscriptions/{trap_sub}");
    wait_until(
        "the trapping subscription's last_error",
        WEBHOOK_TIMEOUT,
        Duration::from_millis(200),
        || async {
            let resp = admin.get(&path).await;
            match resp.body["last_error"].as_str() {
                Some(e) if resp.status == 200 && !e.is_empty() => Ok(()),
                _ => Err(format!("{} {}", resp.status, resp.text)),
            }
        },
    )
    .await;
}

/// Scenario 4: bad input gets a fitting 4xx with the error shape, never a 500.
async fn admin_rejects_bad_input(db: DbKind) {
    let fx = Fixture::start(db).await;
    let admin = fx.admin();

    admin
        .try_upload_plugin(b"this is not a wasm module", "junk")
        .await
        .expect_error(400);
    admin
        .try_upload_plugin(&missing_marker_module(), "no-marker")
        .await
        .expect_error(400);

    let anonymous = admin.with_token(None);
    anonymous.get("/v1/plugins").await.expect_error(401);
    anonymous
        .try_upload_plugin(&trap_plugin(), "trap")
        .await
        .expect_error(401);
    admin
        .with_token(Some("not-the-token"))
        .get("/v1/plugins")
        .await
        .expect_error(401);

    admin
        .get("/v1/subscriptions/sub_doesnotexist")
        .await
        .expect_error(404);

    // A chain this host does not ingest, a private destination, malformed filters: all 400.
    let (endpoint, _) = fx.endpoint_for(&fx.receiver).await;
    let mut body =
        json!({"endpoint_id": endpoint, "chain_id": 999, "addresses": [fx.token.clone()]});
    assert_eq!(
        admin
            .post_json("/v1/subscriptions", body.clone())
            .await
            .expect_error(400),
        "unknown_chain"
    );
    body["chain_id"] = json!(31337);
    body["topics"] = json!([["0x1234"]]);
    admin
        .post_json("/v1/subscriptions", body)
        .await
        .expect_error(400);
    let private = admin
        .post_json(
            "/v1/endpoints",
            json!({"url": "http://169.254.169.254/latest/meta-data"}),
        )
        .await;
    assert_eq!(private.expect_error(400), "invalid_url");
    admin
        .post_json("/v1/endpoints", json!({"url": 5}))
        .await
        .expect_error(400);

    let plugins = admin.get("/v1/plugins").await;
    let items = plugins.expect_status(&[200])["items"].as_array().cloned();
    assert_eq!(
        items.map(|i| i.len()),
        Some(0),
        "rejected uploads must not be stored: {}",
        plugins.text
    );
    assert_eq!(
        fx.host.healthz().await,
        Ok(200),
        "GET /healthz needs no token"
    );
}
