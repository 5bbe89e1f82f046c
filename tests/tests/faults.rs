//! The fault harness (issue 8): under a steady stream of ERC-20 transfers, the host is killed with
//! SIGKILL at random moments (and restarted on the same database), the webhook receiver goes down
//! for a while, the node's connection is cut, and — on PostgreSQL — the database server is stopped
//! (immediate mode, as in a crash) and started again. Afterwards every (subscription, log) the
//! mined chain calls for has arrived, any repeat under the same `webhook-id`, and every webhook
//! passes the Standard Webhooks verifier. The figures go to stdout as one JSON line and to
//! `target/tmp/faults-{store}.json`. The schedule is random; `PIPELINE_FAULTS_SEED` repeats one.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pipeline_tests::ledger::{Key, SubSpec, expected_deliveries, tally, webhook_key};
use pipeline_tests::load::{LoadPlan, TransferLoad, mined_transfers};
use pipeline_tests::operations::sample_value;
use pipeline_tests::pg_server::{PgServer, binaries_or_skip};
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::proxy::CuttableProxy;
use pipeline_tests::verifier::assert_verified;
use pipeline_tests::{
    Anvil, DbKind, Host, HostOptions, Received, Receiver, TRANSFER_TOPIC0, target_dir, wait_until,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const TRANSFERS_PER_SECOND: u32 = 50;
const KILLS: usize = 5;
const RECEIVER_DOWN: Duration = Duration::from_secs(5);
const NODE_CUT: Duration = Duration::from_secs(4);
const POSTGRES_DOWN: Duration = Duration::from_secs(3);
/// After the load stops: time for the host to deliver everything (an open breaker rests the
/// endpoint 30 s; a killed host's leased rows wait for their lease).
const CATCH_UP: Duration = Duration::from_secs(240);
/// Retries spaced so that a receiver outage and the breaker's rest do not exhaust them.
const RETRY_SCHEDULE: &str = "500ms,1s,2s,3s,5s,5s,5s,5s,5s,5s,5s,5s";
/// Short leases, so that the deliveries a killed host held are sent again within seconds.
const DELIVERY_TOML: &str =
    "[delivery]\nlease_ms = 5000\nrequest_timeout_ms = 3000\nconnect_timeout_ms = 1000\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillHost,
    ReceiverDown,
    NodeCut,
    PostgresRestart,
}

/// What each store's run holds beyond the common parts.
enum Store {
    Sqlite,
    Postgres(PgServer),
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_survived_sqlite() {
    run(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_survived_postgres() {
    // A private server: the shared one at PIPELINE_TEST_POSTGRES_URL must not be restarted.
    let Some(bin) = binaries_or_skip("faults_are_survived_postgres") else {
        return;
    };
    run(Store::Postgres(PgServer::start(bin).await)).await;
}

/// The common set-up: anvil mining every second with three tokens, the host following it through
/// a cuttable proxy, delivering to a receiver behind another one.
struct Scene {
    anvil: Anvil,
    tokens: Vec<String>,
    start_block: u64,
    node: CuttableProxy,
    receiver: Receiver,
    hook: CuttableProxy,
}

async fn scene() -> Scene {
    let anvil = Anvil::start_with_args(&["--prune-history", "--block-time", "1"]).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(anvil.deploy_token().await);
    }
    let start_block = anvil.block_number().await + 1;
    let node = CuttableProxy::start(SocketAddr::from(([127, 0, 0, 1], anvil.port()))).await;
    let receiver = Receiver::start().await;
    let hook = CuttableProxy::start(receiver.addr()).await;
    Scene {
        anvil,
        tokens,
        start_block,
        node,
        receiver,
        hook,
    }
}

/// Three subscriptions on one endpoint: token 0 through erc20-transfers (everything kept),
/// tokens 1 and 2 through erc20-transfers keeping values ≥ 500, and every Transfer of any
/// address without a plugin. Returns the endpoint secret and the subscriptions.
async fn subscribe(host: &Host, scene: &Scene) -> (String, Vec<SubSpec>) {
    let admin = host.admin();
    let plugin = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let url = format!("http://{}/webhook", scene.hook.addr());
    let (endpoint, secret) = admin.create_endpoint(&url).await;
    let wanted = [
        (Some(vec![scene.tokens[0].clone()]), Some(0u128)),
        (Some(scene.tokens[1..].to_vec()), Some(500)),
        (None, None),
    ];
    let mut subs = Vec::new();
    for (addresses, min_value) in wanted {
        let mut body = json!({
            "endpoint_id": endpoint, "chain_id": 31337, "topics": [[TRANSFER_TOPIC0]],
        });
        if let Some(a) = &addresses {
            body["addresses"] = json!(a);
        }
        if let Some(min) = min_value {
            body["plugin_id"] = json!(plugin);
            body["plugin_config"] = json!({"min_value": min.to_string()});
        }
        let id = admin.create_subscription(body).await;
        subs.push(SubSpec {
            id,
            addresses,
            min_value,
        });
    }
    (secret, subs)
}

fn seed() -> u64 {
    match std::env::var("PIPELINE_FAULTS_SEED") {
        Ok(s) if !s.is_empty() => s.parse().expect("PIPELINE_FAULTS_SEED is a number"),
        _ => rand::rng().random(),
    }
}

/// The faults in a random order: the kills, one receiver outage, one node cut and on PostgreSQL
/// one server restart.
fn schedule(rng: &mut StdRng, postgres: bool) -> Vec<Fault> {
    let mut faults = vec![Fault::KillHost; KILLS];
    faults.extend([Fault::ReceiverDown, Fault::NodeCut]);
    if postgres {
        faults.push(Fault::PostgresRestart);
    }
    faults.shuffle(rng);
    faults
}

async fn inject(fault: Fault, host: &mut Host, scene: &Scene, store: &Store, rng: &mut StdRng) {
    match fault {
        Fault::KillHost => {
            host.kill();
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
            host.start_again().await;
        }
        Fault::ReceiverDown => {
            scene.hook.cut();
            tokio::time::sleep(RECEIVER_DOWN).await;
            scene.hook.restore().await;
        }
        Fault::NodeCut => {
            let before = reconnects(host).await;
            scene.node.cut();
            tokio::time::sleep(NODE_CUT).await;
            scene.node.restore().await;
            // The cut reached the host: it reconnected through the restored proxy.
            wait_until(
                "the host to reconnect to the node",
                Duration::from_secs(60),
                Duration::from_millis(250),
                || async {
                    match reconnects(host).await {
                        n if n > before => Ok(()),
                        n => Err(format!("{n} reconnects, {before} before the cut")),
                    }
                },
            )
            .await;
        }
        Fault::PostgresRestart => {
            let Store::Postgres(pg) = store else {
                unreachable!("PostgreSQL restarts are scheduled on PostgreSQL only")
            };
            pg.stop_immediate().await;
            tokio::time::sleep(POSTGRES_DOWN).await;
            pg.start_again().await;
        }
    }
    assert!(
        host.is_running(),
        "the host exited after {fault:?} (it should ride it out)\n{}",
        host.logs_tail(100)
    );
}

/// `pipeline_ws_reconnects_total{chain="anvil"}` of the running host.
async fn reconnects(host: &Host) -> u64 {
    let exposition = host.metrics().await;
    sample_value(&exposition, "pipeline_ws_reconnects_total{chain=\"anvil\"}") as u64
}

async fn run(store: Store) {
    let started = Instant::now();
    let seed = seed();
    println!("faults: seed {seed} (PIPELINE_FAULTS_SEED={seed} repeats this schedule)");
    let mut rng = StdRng::seed_from_u64(seed);
    let scene = scene().await;
    let db = match &store {
        Store::Sqlite => DbKind::Sqlite,
        Store::Postgres(pg) => DbKind::Postgres(pg.url()),
    };
    let mut host = Host::start(HostOptions {
        start_block: Some(scene.start_block),
        env: vec![(
            "PIPELINE_DELIVERY_RETRY_SCHEDULE".into(),
            RETRY_SCHEDULE.into(),
        )],
        config_extra: DELIVERY_TOML.into(),
        ..HostOptions::new(db, &format!("ws://{}", scene.node.addr()))
    })
    .await;
    let (secret, subs) = subscribe(&host, &scene).await;

    let load = TransferLoad::start(LoadPlan {
        rpc_url: scene.anvil.http_url(),
        from: scene.anvil.account(0),
        tokens: scene.tokens.clone(),
        recipients: (1..6).map(|i| scene.anvil.account(i)).collect(),
        per_second: TRANSFERS_PER_SECOND,
        max_value: 1000,
    });
    let faults = schedule(&mut rng, matches!(store, Store::Postgres(_)));
    for &fault in &faults {
        let pause = Duration::from_millis(rng.random_range(2000..5000));
        tokio::time::sleep(pause).await;
        println!(
            "faults: {fault:?} at {:.1} s",
            started.elapsed().as_secs_f64()
        );
        inject(fault, &mut host, &scene, &store, &mut rng).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    let load_ended = Instant::now();

    let chain_logs = mined_transfers(&scene.anvil, &scene.tokens, scene.start_block, &report).await;
    let expected = expected_deliveries(&subs, &chain_logs);
    let verified = wait_delivered(&scene.receiver, &expected, &secret, &host).await;
    // Late repeats would show up here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = scene.receiver.requests();
    let tally = tally(&expected, &subs, &got);
    assert_eq!(
        tally.missing_count, 0,
        "deliveries missing: {:?}",
        tally.missing
    );
    let verified = verified + verify(&secret, &got[verified..]);
    assert!(host.is_running(), "the host is still up at the end");

    let count = |f: Fault| faults.iter().filter(|&&x| x == f).count();
    let figures = json!({
        "test": format!("faults_are_survived_{}", store.name()),
        "store": store.name(),
        "seed": seed,
        "transfers_per_second": TRANSFERS_PER_SECOND,
        "transfers_sent": report.sent.len(),
        "transfers_mined": chain_logs.len(),
        "transfers_failed_to_send": report.failed,
        "send_errors": report.errors,
        "kills_survived": count(Fault::KillHost),
        "postgres_restarts": count(Fault::PostgresRestart),
        "receiver_outages": count(Fault::ReceiverDown),
        "node_cuts": count(Fault::NodeCut),
        "deliveries_expected": tally.expected,
        "received": tally.received,
        "delivered_distinct": tally.delivered,
        "duplicated": tally.duplicated,
        "verified": verified,
        "catch_up_seconds": round1(load_ended.elapsed().as_secs_f64()),
        "total_seconds": round1(started.elapsed().as_secs_f64()),
    });
    println!("{figures}");
    let dir = target_dir().join("tmp");
    std::fs::create_dir_all(&dir).expect("create target/tmp");
    let path = dir.join(format!("faults-{}.json", store.name()));
    std::fs::write(&path, format!("{figures}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Waits until every expected delivery arrived, checking signatures on the way (the verifier
/// refuses timestamps older than 5 minutes); returns how many webhooks were verified.
async fn wait_delivered(
    receiver: &Receiver,
    expected: &std::collections::BTreeMap<Key, Value>,
    secret: &str,
    host: &Host,
) -> usize {
    let start = Instant::now();
    let mut seen: BTreeSet<Key> = BTreeSet::new();
    let (mut read, mut verified) = (0, 0);
    let mut last_verify = Instant::now();
    loop {
        let got = receiver.requests();
        for r in &got[read..] {
            seen.insert(webhook_key(r));
        }
        read = got.len();
        if last_verify.elapsed() > Duration::from_secs(20) {
            verified += verify(secret, &got[verified..]);
            last_verify = Instant::now();
        }
        let missing = expected.keys().filter(|k| !seen.contains(*k)).count();
        if missing == 0 {
            return verified;
        }
        if start.elapsed() > CATCH_UP {
            let dead = host.admin().get("/v1/deliveries?status=dead").await;
            panic!(
                "{missing} of {} expected deliveries still missing after {CATCH_UP:?} \
                 ({read} webhooks received); dead deliveries: {}\n{}",
                expected.len(),
                dead.text,
                host.logs_tail(80)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the Standard Webhooks verifier over `got`; returns how many it verified.
fn verify(secret: &str, got: &[Received]) -> usize {
    if !got.is_empty() {
        assert_verified(secret, got);
    }
    got.len()
}
