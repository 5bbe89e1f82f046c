//! Endpoint secrets at rest, through the binary: with `PIPELINE_SECRET_KEY` set, the database file
//! holds no endpoint secret; rotating the key (new first, old second) keeps the endpoint's
//! webhooks verifiable and re-encrypts the secret at start, after which the new key alone serves.
//! Run with `scripts/test.sh`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::verifier::assert_verified;
use pipeline_tests::{DbKind, Fixture};
use serde_json::json;

/// Every byte of the SQLite database (main file and write-ahead log) as text.
fn database_bytes(fx: &Fixture) -> String {
    let mut bytes = Vec::new();
    for name in ["pipeline.db", "pipeline.db-wal"] {
        if let Ok(b) = std::fs::read(fx.host.dir().join(name)) {
            bytes.extend(b);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sends one transfer of `value` and checks its webhook verifies with `secret`.
async fn delivers_verified(fx: &Fixture, sub_id: &str, secret: &str, value: u128, total: usize) {
    let to = fx.anvil.account(3);
    fx.anvil.transfer(&fx.token, &to, value).await;
    let got = fx.receiver.wait_for(total, Duration::from_secs(30)).await;
    assert!(got.iter().any(|r| r.body_str().contains(sub_id)));
    assert_verified(secret, &got);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_encrypted_at_rest_and_survive_a_key_rotation() {
    let old_key = STANDARD.encode([1u8; 32]);
    let new_key = STANDARD.encode([2u8; 32]);
    let env = vec![("PIPELINE_SECRET_KEY".to_string(), old_key.clone())];
    let mut fx = Fixture::start_with_env(DbKind::Sqlite, env).await;
    let plugin_id = fx
        .admin()
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20-transfers")
        .await;
    let (endpoint_id, secret) = fx.endpoint_for(&fx.receiver).await;
    let sub_id = fx
        .subscribe_transfers(&endpoint_id, &plugin_id, json!({"min_value": "1"}))
        .await;
    delivers_verified(&fx, &sub_id, &secret, 100, 1).await;

    fx.host.stop().await;
    let key_text = secret.trim_start_matches("whsec_");
    let stored = database_bytes(&fx);
    assert!(
        stored.contains(&endpoint_id),
        "the database file is not where expected"
    );
    assert!(
        !stored.contains(key_text),
        "the endpoint secret is in the database file"
    );

    fx.host
        .set_env("PIPELINE_SECRET_KEY", &format!("{new_key},{old_key}"));
    fx.host.start_again().await;
    assert!(
        fx.host
            .logs()
            .contains("re-encrypted under the first secret key"),
        "{}",
        fx.host.logs_tail(30)
    );
    delivers_verified(&fx, &sub_id, &secret, 200, 2).await;

    fx.host.stop().await;
    fx.host.set_env("PIPELINE_SECRET_KEY", &new_key);
    fx.host.start_again().await;
    delivers_verified(&fx, &sub_id, &secret, 300, 3).await;
    fx.host.stop().await;
    assert!(!database_bytes(&fx).contains(key_text));
}
