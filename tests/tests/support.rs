//! Self-tests of the test support: they need anvil, solc's TestToken bytecode, the Python verifier
//! and PostgreSQL (all provided by scripts/test.sh), but not the host.

use std::ffi::OsString;
use std::time::Duration;

use alloy_primitives::U256;
use pipeline_tests::anvil::address_topic;
use pipeline_tests::postgres::{PgDatabase, server_url_or_skip};
use pipeline_tests::verifier::{
    SignedWebhook, generate_secret, run_python_verifier, sign, signature_matches, signed_headers,
};
use pipeline_tests::{
    Anvil, DbKind, Host, HostOptions, Receiver, TRANSFER_TOPIC0, parse_quantity, workspace_root,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn anvil_token_transfers_emit_logs() {
    let anvil = Anvil::start().await;
    let token = anvil.deploy_token().await;
    let owner = anvil.account(0);
    let to = anvil.account(1);
    let first_block = anvil.block_number().await + 1;

    let mut blocks = Vec::new();
    for value in [5u128, 50, 500] {
        let receipt = anvil.transfer(&token, &to, value).await;
        blocks.push(parse_quantity(
            receipt["blockNumber"].as_str().expect("blockNumber"),
        ));
    }
    assert_eq!(
        blocks,
        vec![first_block, first_block + 1, first_block + 2],
        "automine: one block per transfer"
    );
    assert_eq!(anvil.balance_of(&token, &to).await, U256::from(555u64));

    let logs = anvil.logs(&token).await;
    // The constructor's mint (from the zero address) and the three transfers.
    assert_eq!(logs.len(), 4, "expected 4 Transfer logs, got {logs:#?}");
    let mint = &logs[0];
    assert_eq!(
        mint["topics"][1],
        json!(address_topic("0x0000000000000000000000000000000000000000"))
    );
    assert_eq!(mint["topics"][2], json!(address_topic(&owner)));
    for (log, value) in logs[1..].iter().zip([5u64, 50, 500]) {
        let topics: Vec<&str> = log["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .map(|t| t.as_str().expect("topic"))
            .collect();
        assert_eq!(
            topics,
            vec![TRANSFER_TOPIC0, &address_topic(&owner), &address_topic(&to)],
            "{log}"
        );
        assert_eq!(log["data"], json!(format!("0x{value:064x}")), "{log}");
        assert_eq!(
            log["address"].as_str().map(str::to_ascii_lowercase),
            Some(token.clone()),
            "{log}"
        );
        assert_eq!(log["removed"], json!(false), "{log}");
        for field in [
            "blockNumber",
            "blockHash",
            "transactionHash",
            "transactionIndex",
            "logIndex",
        ] {
            assert!(
                log[field].as_str().is_some_and(|s| s.starts_with("0x")),
                "{field} in {log}"
            );
        }
    }
    assert!(anvil.ws_url().starts_with("ws://127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_records_and_python_verifier_checks_signatures() {
    let receiver = Receiver::start().await;
    let secret = generate_secret();
    let body = r#"{"id":"msg_2x","type":"log","data":{"value":"50"}}"#;
    let headers = signed_headers(&secret, "msg_2x", body);

    // A signed POST, as the host would send it.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = http.post(receiver.url()).body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    assert_eq!(
        req.send()
            .await
            .expect("POST to the receiver")
            .status()
            .as_u16(),
        200
    );
    receiver.set_status(503);
    let resp = http
        .post(receiver.url())
        .body("second")
        .send()
        .await
        .expect("POST");
    assert_eq!(
        resp.status().as_u16(),
        503,
        "the receiver answers with the configured status"
    );

    let got = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/webhook");
    assert_eq!(got[0].body_str(), body);
    assert_eq!(got[0].header("Webhook-Id"), Some("msg_2x"));
    assert_eq!(got[1].body, b"second");
    assert!(got[0].at <= got[1].at);

    // The Rust signer follows the spec: HMAC-SHA256(key, "id.timestamp.body"), key = base64 after whsec_.
    let ts: i64 = headers["webhook-timestamp"].parse().expect("timestamp");
    assert!(signature_matches(
        &secret,
        "msg_2x",
        ts,
        body,
        &headers["webhook-signature"]
    ));
    // Known-answer vector of the Standard Webhooks reference libraries.
    let reference = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        r#"{"test": 2432232314}"#,
    );
    assert_eq!(reference, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

    // The independent Python verifier accepts what was received …
    let good = SignedWebhook::from_received(&secret, &got[0]);
    let out = run_python_verifier(std::slice::from_ref(&good))
        .expect("the verifier should accept a valid signature");
    assert!(out.contains("verified 1"), "verifier output: {out:?}");
    // … and rejects a tampered body, a wrong secret and a missing signature.
    let tampered = SignedWebhook {
        body: body.replace("50", "51"),
        ..good.clone()
    };
    let err = run_python_verifier(&[good.clone(), tampered])
        .expect_err("a tampered body must be rejected");
    assert!(
        err.contains("webhook #1"),
        "the report names the failing webhook: {err}"
    );
    let wrong_secret = SignedWebhook {
        secret: generate_secret(),
        ..good.clone()
    };
    run_python_verifier(&[wrong_secret]).expect_err("a wrong secret must be rejected");
    let mut unsigned = good.clone();
    unsigned.headers.remove("webhook-signature");
    run_python_verifier(&[unsigned]).expect_err("a missing signature must be rejected");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_test_database_lifecycle() {
    let Some(server) = server_url_or_skip("postgres_test_database_lifecycle") else {
        return;
    };
    let name;
    {
        let db = PgDatabase::create(&server).await;
        name = db.name().to_string();
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(db.url())
            .await
            .expect("connect to the new database");
        let row: (String,) = sqlx::query_as("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .expect("query");
        assert_eq!(row.0, name);
        // An open connection must not keep the database from being dropped.
        std::mem::forget(conn);
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
        .await
        .expect("connect");
    let left: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .expect("query pg_database");
    assert!(left.is_none(), "database {name} should have been dropped");
}

/// The Host harness against a stand-in process (tests/support/fake_pipeline.py): config and env it
/// passes, health polling, SIGTERM stop with exit 0, start again and restart on the same dir.
#[tokio::test(flavor = "multi_thread")]
async fn host_harness_starts_stops_and_restarts() {
    let python = pipeline_tests::verifier::python();
    let script = workspace_root().join("tests/support/fake_pipeline.py");
    let opts = HostOptions {
        start_block: Some(7),
        command: Some(vec![OsString::from(python), OsString::from(script)]),
        ..HostOptions::new(DbKind::Sqlite, "ws://127.0.0.1:1")
    };
    let mut host = Host::start(opts).await;
    assert_eq!(host.healthz().await, Ok(200));
    host.admin().get("/v1/nothing").await.expect_error(404);

    let run_file = host.dir().join("fake-run.json");
    let runs = || -> Vec<Value> {
        serde_json::from_str(&std::fs::read_to_string(&run_file).expect("fake-run.json"))
            .expect("JSON")
    };
    let first = &runs()[0];
    let config = first["config"].as_str().expect("config");
    assert_eq!(
        config,
        "[[chains]]\nname = \"anvil\"\nchain_id = 31337\nws_urls = [\"ws://127.0.0.1:1\"]\nstart_block = 7\n"
    );
    let env = &first["env"];
    let db_url = env["DATABASE_URL"].as_str().expect("DATABASE_URL");
    assert_eq!(
        db_url,
        format!("sqlite://{}", host.dir().join("pipeline.db").display())
    );
    assert_eq!(env["PIPELINE_ADMIN_TOKEN"], json!(host.token()));
    assert_eq!(env["PIPELINE_DELIVERY_ALLOWED_CIDRS"], json!("127.0.0.0/8"));
    assert_eq!(
        env["PIPELINE_DELIVERY_RETRY_SCHEDULE"],
        json!("200ms,500ms,1s")
    );
    assert_eq!(env["PIPELINE_BATCH_MAX_WAIT_MS"], json!("20"));
    assert_eq!(env["RUST_LOG"], json!("info,pipeline_host=debug"));
    assert_eq!(
        format!(
            "http://{}",
            env["PIPELINE_ADMIN_ADDR"].as_str().expect("addr")
        ),
        host.admin_url()
    );
    assert_eq!(
        format!(
            "http://{}/metrics",
            env["PIPELINE_METRICS_ADDR"].as_str().expect("addr")
        ),
        host.metrics_url()
    );

    host.stop().await;
    assert!(!host.is_running());
    assert!(
        host.healthz().await.is_err(),
        "nothing listens after stop()"
    );
    host.start_again().await;
    host.restart().await;
    assert_eq!(host.healthz().await, Ok(200));
    let all = runs();
    assert_eq!(all.len(), 3, "three runs: {all:?}");
    assert!(
        all.iter()
            .all(|r| r["env"]["DATABASE_URL"] == json!(db_url)),
        "same DB on every run"
    );
    let logs = host.logs();
    assert!(
        logs.contains("===== pipeline run 3 =====") && logs.contains("SIGTERM, exiting 0"),
        "{logs}"
    );
}

/// A restart whose admin port another process took while the host was stopped starts again on
/// new ports instead of failing the test (the restart keeps its ports; CI once lost one).
#[tokio::test(flavor = "multi_thread")]
async fn host_harness_restarts_on_new_ports_when_its_port_was_taken() {
    let python = pipeline_tests::verifier::python();
    let script = workspace_root().join("tests/support/fake_pipeline.py");
    let opts = HostOptions {
        command: Some(vec![OsString::from(python), OsString::from(script)]),
        ..HostOptions::new(DbKind::Sqlite, "ws://127.0.0.1:1")
    };
    let mut host = Host::start(opts).await;
    let first_url = host.admin_url();
    host.stop().await;
    let taken = first_url.trim_start_matches("http://").to_string();
    let _squatter =
        std::net::TcpListener::bind(&taken).expect("take the stopped host's admin port");

    host.start_again().await;
    assert_eq!(host.healthz().await, Ok(200));
    assert_ne!(host.admin_url(), first_url, "moved to a new admin port");
    host.admin().get("/v1/nothing").await.expect_error(404);
    let logs = host.logs();
    assert!(
        logs.contains("===== pipeline run 3 =====") && logs.contains("Address already in use"),
        "run 2 lost its port, run 3 started: {logs}"
    );
}

/// The scenario assertions accept a webhook built as DESIGN §5 describes (from the chain's own log,
/// signed per Standard Webhooks) and reject one whose data carries a checksummed address.
#[tokio::test(flavor = "multi_thread")]
async fn transfer_webhook_checks_accept_a_conforming_webhook() {
    use pipeline_tests::checks::{Expect, assert_unique_ids, check_transfer_webhook};
    use pipeline_tests::verifier::assert_verified;

    let anvil = Anvil::start().await;
    let token = anvil.deploy_token().await;
    let (from, to) = (anvil.account(0), anvil.account(1));
    anvil.transfer(&token, &to, 50).await;
    let logs = anvil.logs(&token).await;
    let log = logs.last().expect("the transfer's log").clone();

    let receiver = Receiver::start().await;
    let secret = generate_secret();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut bodies = Vec::new();
    for (i, data_from) in [from.clone(), from.to_ascii_uppercase().replace("0X", "0x")]
        .into_iter()
        .enumerate()
    {
        let id = format!("msg_selftest{i}");
        let fields = [
            "address",
            "topics",
            "data",
            "blockNumber",
            "blockHash",
            "transactionHash",
            "transactionIndex",
            "logIndex",
            "removed",
        ];
        let rpc_log: serde_json::Map<String, Value> = fields
            .iter()
            .map(|f| (f.to_string(), log[*f].clone()))
            .collect();
        let body = json!({
            "id": id, "type": "log", "subscription_id": "sub_1", "chain_id": 31337, "confirmations": 0,
            "log": rpc_log,
            "data": {"token": token, "from": data_from, "to": to, "value": "50"},
        })
        .to_string();
        let mut req = http.post(receiver.url()).body(body.clone());
        for (k, v) in signed_headers(&secret, &id, &body) {
            req = req.header(k, v);
        }
        assert_eq!(req.send().await.expect("POST").status().as_u16(), 200);
        bodies.push(body);
    }
    let got = receiver.wait_for(2, Duration::from_secs(5)).await;
    let expect = Expect {
        sub_id: "sub_1",
        token: &token,
        from: &from,
        to: &to,
    };
    assert_eq!(check_transfer_webhook(&got[0], &expect, &logs), 50);
    assert_unique_ids(&got);
    assert_verified(&secret, &got);
    let rejected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_transfer_webhook(&got[1], &expect, &logs)
    }));
    assert!(
        rejected.is_err(),
        "a checksummed/uppercase data.from must be rejected: {}",
        bodies[1]
    );
}
