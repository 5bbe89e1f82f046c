//! Issues #3 and #7 end to end: hostile plugins inside the real `pipeline` process. Each is
//! refused at upload with its own code, or contained at run time — parked, then quarantined with
//! its error in the API — while a healthy subscription on the same events keeps being delivered
//! and the host stays up. The healthy subscription's webhook latency is measured without and with
//! ten hostile plugins on the same events and written to a report. A quarantined subscription is
//! released by attaching a new plugin, and its parked events are reprocessed and delivered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pipeline_tests::admin::Body;
use pipeline_tests::checks::{assert_promtool_accepts, assert_unique_ids};
use pipeline_tests::plugins::{example_plugin, keep_all_plugin};
use pipeline_tests::receiver::describe;
use pipeline_tests::{DbKind, Fixture, Receiver, wait_until};
use serde_json::json;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(2);

/// An ABI v1 module whose `pipeline_process` body is `process`; `extra` adds functions or imports.
fn hostile(extra: &str, process: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "pipeline" "panic" (func $panic (param i32 i32)))
  (import "pipeline" "log" (func $log (param i32 i32 i32)))
  {extra}
  (memory (export "memory") 20)
  (data (i32.const 9000) "boom\00 at src/lib.rs:7:14")
  (data (i32.const 8192) "\01\00\00\00\07\00")
  (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) (i32.const 65536))
  (func (export "pipeline_process") (param $len i32) (result i64) {process}))"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// (name, module, what its subscription's last_error must say)
fn runtime_hostiles() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "infinite-loop",
            hostile("", "(loop $l (br $l)) (i64.const 0)"),
            "out of fuel",
        ),
        (
            "memory-bomb",
            hostile(
                "",
                "(loop $l (drop (memory.grow (i32.const 16))) (br $l)) (i64.const 0)",
            ),
            "memory limit",
        ),
        (
            "recursion",
            hostile("(func $r (call $r))", "(call $r) (i64.const 0)"),
            "stack overflow",
        ),
        ("unreachable", hostile("", "unreachable"), "trap"),
        (
            "pointer-past-memory",
            hostile("", "(i64.const 9223090561878065158)"),
            "malformed output",
        ),
        (
            "length-2gib",
            hostile("", "(i64.const 2147483648)"),
            "malformed output",
        ),
        (
            "panics",
            hostile(
                "",
                "(call $panic (i32.const 9000) (i32.const 24)) (i64.const 0)",
            ),
            // The message carries a NUL byte: stored safely on both stores (PostgreSQL refuses NUL).
            "at src/lib.rs:7:14",
        ),
        (
            "log-flood",
            hostile(
                "",
                "(loop $l (call $log (i32.const 2) (i32.const 9000) (i32.const 24)) (br $l)) (i64.const 0)",
            ),
            // Logging costs fuel: a flood ends like a loop instead of spending the wall clock.
            "out of fuel",
        ),
        (
            "bad-decision",
            hostile("", "(i64.const 35184372088838)"), // 8192 << 32 | 6: decision byte 7
            "unknown decision byte 7",
        ),
    ]
}

/// Legal but slow: spins through most of its fuel allowance, then drops every event.
fn slow_but_legal() -> Vec<u8> {
    hostile(
        "",
        "(local $i i32) (local $n i32)
         (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $l (i32.lt_u (local.get $i) (i32.const 150000))))
         (local.set $n (i32.load (i32.const 65536)))
         (i32.store (i32.const 200000) (local.get $n))
         (memory.fill (i32.const 200004) (i32.const 0) (i32.add (local.get $n) (i32.const 1)))
         (i64.or (i64.shl (i64.const 200000) (i64.const 32))
                 (i64.extend_i32_u (i32.add (local.get $n) (i32.const 5))))",
    )
}

/// (module, the upload's expected error code, expected HTTP status)
fn upload_refusals() -> Vec<(Vec<u8>, &'static str, u16)> {
    let mut too_large = hostile("", "(i64.const 0)");
    too_large.resize(11 << 20, 0);
    vec![
        (b"#!/bin/sh\nrm -rf /".to_vec(), "invalid_wasm", 400),
        (
            wat::parse_str("(module (memory (export \"memory\") 1))").unwrap(),
            "missing_export",
            400,
        ),
        (
            wat::parse_str(
                r#"(module (memory (export "memory") 1) (func (export "pipeline_abi_v1"))
                   (func (export "pipeline_input") (param i64) (result i32) (i32.const 0))
                   (func (export "pipeline_process") (param i32) (result i64) (i64.const 0)))"#,
            )
            .unwrap(),
            "bad_signature",
            400,
        ),
        (
            hostile(
                "(import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))",
                "(i64.const 0)",
            ),
            "forbidden_import",
            400,
        ),
        (
            hostile(
                "(import \"env\" \"memcpy\" (func (param i32 i32 i32) (result i32)))",
                "(i64.const 0)",
            ),
            "forbidden_import",
            400,
        ),
        (too_large, "too_large", 413),
        // Modules that could never run (issue #7): refused now rather than quarantined later.
        (
            wat::parse_str(
                r#"(module (memory (export "memory") 300) (func (export "pipeline_abi_v1"))
                   (func (export "pipeline_input") (param i32) (result i32) (i32.const 0))
                   (func (export "pipeline_process") (param i32) (result i64) (i64.const 0)))"#,
            )
            .unwrap(),
            "memory_too_large",
            400,
        ),
        (
            hostile("(table 50000000 funcref)", "(i64.const 0)"),
            "table_too_large",
            400,
        ),
        (
            hostile("(table 1 funcref) (table 1 funcref)", "(i64.const 0)"),
            "too_many_tables",
            400,
        ),
        (
            hostile(
                &(0..200)
                    .map(|i| format!("(global $g{i} i32 (i32.const 0))"))
                    .collect::<String>(),
                "(i64.const 0)",
            ),
            "too_many_globals",
            400,
        ),
        (
            hostile("(func $s (loop $l (br $l))) (start $s)", "(i64.const 0)"),
            "start_did_not_finish",
            400,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_are_contained_sqlite() {
    hostile_plugins_are_contained(DbKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_are_contained_postgres() {
    if let Some(url) =
        pipeline_tests::postgres::server_url_or_skip("hostile_plugins_are_contained_postgres")
    {
        hostile_plugins_are_contained(DbKind::Postgres(url)).await
    }
}

async fn hostile_plugins_are_contained(db: DbKind) {
    let store = match db {
        DbKind::Sqlite => "sqlite",
        DbKind::Postgres(_) => "postgres",
    };
    let mut fx = Fixture::start(db).await;
    let admin = fx.admin();

    for (bytes, code, status) in upload_refusals() {
        let resp = admin.try_upload_plugin(&bytes, "refused").await;
        let message = resp.expect_error(status);
        assert_eq!(resp.body["error"]["code"], json!(code), "{message}");
    }

    let healthy_plugin = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let (probe_endpoint, _) = fx.endpoint_for(&fx.receiver).await;

    // A module that loops in `pipeline_init` uploads fine (init needs a subscription's config),
    // but a subscription cannot be created with it: its config check instantiates under limits.
    for (name, extra) in [(
        "init-loop",
        "(func (export \"pipeline_init\") (param i32) (result i32) (loop $l (br $l)) (i32.const 0))",
    )] {
        let plugin = admin
            .upload_plugin(&hostile(extra, "(i64.const 0)"), name)
            .await;
        let body = pipeline_tests::fixture::transfer_subscription(
            &probe_endpoint,
            &fx.token,
            &plugin,
            json!(null),
        );
        let resp = admin.post_json("/v1/subscriptions", body).await;
        assert_eq!(resp.expect_error(400), "plugin_failed");
        let message = resp.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("out of fuel"), "{name}: {message}");
    }
    let (healthy_endpoint, _) = fx.endpoint_for(&fx.receiver).await;
    fx.subscribe_transfers(
        &healthy_endpoint,
        &healthy_plugin,
        json!({"min_value": "0"}),
    )
    .await;

    // The healthy subscription alone: its latency without hostile neighbours.
    let to = fx.anvil.account(3);
    let n_transfers = 20;
    let alone = healthy_latencies(&fx, &to, 1, n_transfers, 0).await;

    let hostile_receiver = Receiver::start().await;
    let (hostile_endpoint, _) = fx.endpoint_for(&hostile_receiver).await;
    let mut hostile_subs = Vec::new();
    for (name, bytes, expected_error) in runtime_hostiles() {
        let plugin = admin.upload_plugin(&bytes, name).await;
        let sub = fx
            .subscribe_transfers(&hostile_endpoint, &plugin, json!(null))
            .await;
        hostile_subs.push((name, sub, expected_error));
    }
    let slow_plugin = admin
        .upload_plugin(&slow_but_legal(), "slow-but-legal")
        .await;
    let slow_sub = fx
        .subscribe_transfers(&hostile_endpoint, &slow_plugin, json!(null))
        .await;

    // The same again beside ten hostile plugins, while they fail, are retried and quarantined.
    let crowded = healthy_latencies(&fx, &to, 1001, n_transfers, n_transfers as usize).await;
    report_latencies(store, &alone, &crowded);
    assert!(
        fx.host.healthz().await == Ok(200),
        "host unhealthy:\n{}",
        fx.host.logs_tail(100)
    );

    for (name, sub, expected_error) in &hostile_subs {
        let path = format!("/v1/subscriptions/{sub}");
        wait_until(
            &format!("{name} quarantined"),
            WEBHOOK_TIMEOUT,
            Duration::from_millis(200),
            || async {
                let resp = admin.get(&path).await;
                let error = resp.body["last_error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                match resp.body["status"].as_str() {
                    Some("quarantined")
                        if error.contains(expected_error)
                            && resp.body["parked_events"].as_i64() > Some(0) =>
                    {
                        Ok(())
                    }
                    _ => Err(resp.text),
                }
            },
        )
        .await;
    }
    assert_eq!(
        hostile_receiver.count(),
        0,
        "hostile subscriptions delivered:\n{}",
        describe(&hostile_receiver.requests())
    );
    let metrics = fx.host.metrics().await;
    assert!(
        metrics.contains("pipeline_subscriptions_quarantined 9"),
        "{metrics}"
    );
    let slow = admin.get(&format!("/v1/subscriptions/{slow_sub}")).await;
    assert_eq!(slow.body["status"], json!("active"), "{}", slow.text);
    assert_eq!(slow.body["parked_events"], json!(0), "{}", slow.text);
    assert!(
        metrics.contains("pipeline_plugin_failures_total{cause=\"out_of_fuel\"}"),
        "{metrics}"
    );
    assert_promtool_accepts(&metrics);

    // Release the infinite loop by attaching a healthy plugin; reprocess what it parked.
    let (_, loop_sub, _) = &hostile_subs[0];
    let keep_all = admin.upload_plugin(&keep_all_plugin(), "keep-all").await;
    let path = format!("/v1/subscriptions/{loop_sub}");
    let patched = admin
        .request(
            reqwest::Method::PATCH,
            &path,
            Body::Json(json!({"plugin_id": keep_all})),
        )
        .await;
    assert_eq!(
        patched.expect_status(&[200])["status"],
        json!("active"),
        "{}",
        patched.text
    );
    let reprocessed = admin
        .post_json(&format!("{path}/reprocess"), json!({}))
        .await;
    reprocessed.expect_status(&[200]);
    let n_parked = reprocessed.body["reprocessed"].as_u64().unwrap_or_default() as usize;
    assert_eq!(
        n_parked, n_transfers as usize,
        "every parked event is reprocessed: {}",
        reprocessed.text
    );
    let released = hostile_receiver.wait_for(n_parked, WEBHOOK_TIMEOUT).await;
    assert_unique_ids(&released);
    assert!(
        released
            .iter()
            .all(|r| r.json()["subscription_id"] == json!(loop_sub)),
        "{}",
        describe(&released)
    );

    // New events flow live again through the new plugin.
    fx.anvil.transfer(&fx.token, &to, 99).await;
    let after = hostile_receiver
        .wait_for(n_parked + 1, WEBHOOK_TIMEOUT)
        .await;
    hostile_receiver.expect_exactly(n_parked + 1, QUIET).await;
    assert_unique_ids(&after);
    assert_eq!(admin.get(&path).await.body["parked_events"], json!(0));
    assert!(
        fx.host.is_running(),
        "host died:\n{}",
        fx.host.logs_tail(100)
    );
}

/// Sends `n` transfers (values from `first_value`), one per block, 100 ms apart, and returns the
/// healthy subscription's webhook latency for each (transfer sent → webhook received).
async fn healthy_latencies(
    fx: &Fixture,
    to: &str,
    first_value: u128,
    n: u128,
    already_received: usize,
) -> Vec<Duration> {
    let mut sent = HashMap::new();
    for value in first_value..first_value + n {
        sent.insert(value, Instant::now());
        fx.anvil.transfer(&fx.token, to, value).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = fx
        .receiver
        .wait_for(already_received + n as usize, WEBHOOK_TIMEOUT)
        .await;
    assert_unique_ids(&received);
    received[already_received..]
        .iter()
        .map(|r| {
            let value: u128 = r.json()["data"]["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no data.value: {}", r.body_str()));
            r.at.duration_since(sent[&value])
        })
        .collect()
}

/// Writes the latency comparison to a JSON report (and the log). The 2× bound on P99 is the
/// issue's goal; timing is not asserted in tests (this machine is shared and noisy), so the
/// report says whether it held.
fn report_latencies(store: &str, alone: &[Duration], crowded: &[Duration]) {
    let pct = |xs: &[Duration], p: f64| {
        let mut v: Vec<f64> = xs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    };
    let (p99_alone, p99_crowded) = (pct(alone, 0.99), pct(crowded, 0.99));
    let report = json!({
        "store": store,
        "webhooks_per_phase": alone.len(),
        "alone_ms": {"p50": pct(alone, 0.5), "p99": p99_alone},
        "with_10_hostile_ms": {"p50": pct(crowded, 0.5), "p99": p99_crowded},
        "p99_ratio": p99_crowded / p99_alone,
        "p99_within_2x": p99_crowded <= 2.0 * p99_alone,
    });
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostile-plugins-{store}.json"));
    std::fs::write(&path, format!("{report:#}")).unwrap();
    eprintln!(
        "hostile plugins latency report ({}):\n{report:#}",
        path.display()
    );
}
