//! Chain state over time: a node that stops sending heads, ownership handed to another replica in
//! the middle of a gap fill.

use sqlx::{Connection, Executor};

use super::*;

/// Blocks 0..n with distinct hashes (the number in the hash's last 8 bytes).
fn long_chain(n: u64) -> Arc<Mutex<FakeChain>> {
    let mut chain = FakeChain::default();
    let mut parent = B256::ZERO;
    for number in 0..n {
        let mut hash = B256::repeat_byte(0x40);
        hash.0[24..].copy_from_slice(&number.to_be_bytes());
        chain.blocks.insert(hash, (number, parent));
        chain.canonical.push(hash);
        parent = hash;
    }
    Arc::new(Mutex::new(chain))
}

/// A fresh database on the PostgreSQL test server; `None` when none is configured.
async fn postgres_url() -> Option<String> {
    let url = std::env::var("PIPELINE_TEST_POSTGRES_URL").ok()?;
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&url).await.unwrap();
    let name = format!("pipeline_unit_{}", rand::random::<u32>());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap();
    Some(format!("{base}/{name}"))
}

#[tokio::test]
async fn a_gap_fill_stops_once_another_replica_owns_the_chain() {
    let Some(db) = postgres_url().await else {
        return;
    };
    let a = Store::connect(&db).await.unwrap();
    a.migrate().await.unwrap();
    let (node, _push) = fake_node(long_chain(3_000)).await;
    let config = ChainConfig {
        name: "fake".into(),
        chain_id: 31337,
        ws_urls: vec![node],
        confirmations: 0,
        start_block: Some(1),
        stale_after_ms: None,
    };
    let (tx, mut rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let health = ChainHealth::new(&config);
    let task = ChainTask {
        health: health.clone(),
        chain: config,
        limits: crate::config::IngestConfig::default().limits(),
        relevant: Arc::new(|_: &ChainLog| true),
    };
    let downstream = Downstream::with_budget_kib(tx, 1 << 20);
    let metrics = Metrics::new().unwrap();
    tokio::spawn(run(task, a, downstream, metrics, shutdown.clone()));
    // A owns the chain and fills the gap from block 1; its output fills up behind this block.
    assert_eq!(next_block(&mut rx).await.number, 1);
    // A's database session ends and replica B takes the chain over.
    let mut admin = sqlx::AnyConnection::connect(&db).await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
             AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    let b = Store::connect(&db).await.unwrap();
    let _owned_by_b = b
        .try_lock_chain(31337)
        .await
        .unwrap()
        .expect("B takes the chain over");
    // A's next ownership check comes due while it waits for room downstream.
    tokio::time::sleep(ownership::OWNERSHIP_CHECK + Duration::from_secs(1)).await;
    let mut received = 1;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
        received += 1;
    }
    // What A had already sent on may still arrive; the other ~2,900 blocks are B's.
    assert!(
        received < 100,
        "A sent {received} blocks after losing the chain"
    );
    for _ in 0..100 {
        if health.standby.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(health.standby.load(Ordering::Relaxed), "A stands by");
    shutdown.cancel();
}

/// Polls `condition` every 20 ms for at most 10 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn a_node_that_stops_sending_heads_is_stale_and_left_for_the_next() {
    // Both nodes serve blocks 0..=3 and then fall silent; only the second one later moves on.
    let first = chain_of_blocks_0_to_3();
    let second = chain_of_blocks_0_to_3();
    let (first_url, _first_push) = fake_node(first).await;
    let (second_url, second_push) = fake_node(second.clone()).await;
    let dir = std::env::temp_dir().join(format!("pipeline-stale-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/i.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let config = ChainConfig {
        name: "fake".into(),
        chain_id: 31337,
        ws_urls: vec![first_url, second_url],
        confirmations: 0,
        start_block: Some(1),
        stale_after_ms: Some(1_000),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let health = ChainHealth::new(&config);
    let task = ChainTask {
        health: health.clone(),
        chain: config,
        limits: crate::config::IngestConfig::default().limits(),
        relevant: Arc::new(|_: &ChainLog| true),
    };
    let metrics = Metrics::new().unwrap();
    let downstream = Downstream::with_budget_kib(tx, 1024);
    tokio::spawn(run(
        task,
        store,
        downstream,
        metrics.clone(),
        shutdown.clone(),
    ));
    for n in 1..=3 {
        assert_eq!(next_block(&mut rx).await.number, n);
    }
    assert!(health.readiness().is_ok());
    let stale = metrics.chain_stale.with_label_values(&["fake"]);
    eventually("the chain is stale", || health.readiness().is_err()).await;
    let why = health.readiness().unwrap_err();
    assert!(
        why.starts_with("chain 31337 stale: no new head for ") && why.contains("(stale after 1 s)"),
        "{why}"
    );
    assert_eq!(stale.get(), 1);
    // Reconnecting or failing over, again and again while neither node moves.
    eventually("reconnected twice", || {
        metrics.ws_reconnects.with_label_values(&["fake"]).get() >= 2
    })
    .await;
    assert!(health.readiness().is_err());
    // The second node moves on: its blocks arrive (the first one never has them), and the chain
    // is ready again.
    let head = {
        let mut c = second.lock().unwrap();
        c.set(4, 0x14);
        let head = c.set(5, 0x15);
        head_notification(&c, &head)
    };
    let _ = second_push.send(head);
    assert_eq!(next_block(&mut rx).await.number, 4);
    assert_eq!(next_block(&mut rx).await.number, 5);
    assert!(health.readiness().is_ok(), "{:?}", health.readiness());
    assert_eq!(stale.get(), 0);
    shutdown.cancel();
}
