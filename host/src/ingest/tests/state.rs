//! Chain state over time: a node that stops sending heads, ownership handed to another replica in
//! the middle of a gap fill.

use sqlx::{Connection, Executor};

use super::*;

/// Blocks 0..n with distinct hashes (the number in the hash's last 8 bytes).
fn long_chain(n: u64) -> Arc<Mutex<FakeChain>> {
    let mut chain = FakeChain::default();
    rewrite(&mut chain, 0, n, 0x40);
    Arc::new(Mutex::new(chain))
}

/// Replaces blocks `from..to` with a branch whose hashes start with `branch`.
fn rewrite(chain: &mut FakeChain, from: u64, to: u64, branch: u8) {
    chain.canonical.truncate(from as usize);
    let mut parent = chain.canonical.last().copied().unwrap_or(B256::ZERO);
    for number in from..to {
        let mut hash = B256::repeat_byte(branch);
        hash.0[24..].copy_from_slice(&number.to_be_bytes());
        chain.blocks.insert(hash, (number, parent));
        chain.canonical.push(hash);
        parent = hash;
    }
}

/// A running ingest task on `store`, with what a test watches of it.
struct Running {
    blocks: mpsc::Receiver<BlockLogs>,
    shutdown: CancellationToken,
    health: Arc<ChainHealth>,
    metrics: Metrics,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_ingest(store: Store, config: ChainConfig) -> Running {
    let (tx, blocks) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let health = ChainHealth::new(&config);
    let task = ChainTask {
        health: health.clone(),
        chain: config,
        limits: crate::config::IngestConfig::default().limits(),
        relevant: Arc::new(|_: &ChainLog| true),
        filter: Arc::new(|| Arc::new(LogFilter::any())),
    };
    let metrics = Metrics::new().unwrap();
    let downstream = Downstream::with_budget_kib(tx, 1 << 20);
    let task = tokio::spawn(run(
        task,
        store,
        downstream,
        metrics.clone(),
        shutdown.clone(),
    ));
    Running {
        blocks,
        shutdown,
        health,
        metrics,
        task,
    }
}

fn chain_config(ws_urls: Vec<String>) -> ChainConfig {
    ChainConfig {
        name: "fake".into(),
        chain_id: 31337,
        ws_urls,
        confirmations: 0,
        start_block: Some(1),
        stale_after_ms: None,
    }
}

async fn sqlite_store() -> Store {
    let dir = std::env::temp_dir().join(format!("pipeline-state-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/i.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn a_gap_fill_stops_once_another_replica_owns_the_chain() {
    let Some(db) = crate::store::tests::postgres_url().await else {
        return;
    };
    let a = Store::connect(&db).await.unwrap();
    a.migrate().await.unwrap();
    let (node, _push) = fake_node(long_chain(3_000)).await;
    let Running {
        blocks: mut rx,
        shutdown,
        health,
        ..
    } = spawn_ingest(a, chain_config(vec![node]));
    // A owns the chain and fills the gap from block 1; its output fills up behind this block.
    assert_eq!(next_block(&mut rx).await.number, 1);
    // A's database session ends and replica B takes the chain over.
    let mut admin = sqlx::AnyConnection::connect(&db).await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
             AND pid <> pg_backend_pid() \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await
        .unwrap();
    let b = Store::connect(&db).await.unwrap();
    // `pg_terminate_backend` only signals: A's session lets go of the lock once it has exited.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let _owned_by_b = loop {
        if let Some(lock) = b.try_lock_chain(31337).await.unwrap() {
            break lock;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B takes the chain over within 10 s of A's session being terminated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    let mut config = chain_config(vec![first_url, second_url]);
    config.stale_after_ms = Some(1_000);
    let Running {
        blocks: mut rx,
        shutdown,
        health,
        metrics,
        ..
    } = spawn_ingest(sqlite_store().await, config);
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

#[tokio::test]
async fn a_reorg_after_a_restart_withdraws_the_logs_sent_before_it() {
    let chain = chain_of_blocks_0_to_3();
    let (url, push) = fake_node(chain.clone()).await;
    let store = sqlite_store().await;
    let mut first = spawn_ingest(store.clone(), chain_config(vec![url.clone()]));
    let mut chain_blocks = Vec::new();
    for n in 1..=3u64 {
        let block = next_block(&mut first.blocks).await;
        assert_eq!(block.number, n);
        // Near the head every block carries its row of the stored window to the batch write.
        let row = block
            .window_row
            .expect("a block near the head carries its window row");
        chain_blocks.push(crate::store::ChainBlock {
            chain_id: 31337,
            block: row.block,
        });
    }
    first.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), first.task)
        .await
        .unwrap()
        .unwrap();
    // The outbox made blocks 1..=3 durable (their logs delivered, their window rows stored)
    // and moved the cursor to 3.
    let cursor = crate::store::Cursor {
        chain_id: 31337,
        block_number: 3,
        block_hash: format!("{:#x}", B256::repeat_byte(0x13)),
    };
    let write = crate::store::OutboxWrite {
        cursors: vec![cursor],
        chain_blocks,
        ..Default::default()
    };
    store.write_batch(&write, 60_000).await.unwrap();
    // While the host is down, 2 and 3 are replaced by 2', 3', 4'.
    {
        let mut c = chain.lock().unwrap();
        c.set(2, 0x22);
        c.set(3, 0x23);
        c.set(4, 0x24);
    }
    let mut second = spawn_ingest(store, chain_config(vec![url]));
    for orphan in [3u64, 2] {
        let block = next_block(&mut second.blocks).await;
        assert_eq!((block.number, block.kind), (orphan, BlockKind::Orphaned));
        assert_eq!(block.hash, B256::repeat_byte(0x10 + orphan as u8));
        assert_eq!(block.logs.len(), 1, "the log sent before the restart");
        assert!(block.logs[0].removed);
        assert!(block.logs[0].raw.contains("\"removed\":true"));
    }
    for (n, tag) in [(2u64, 0x22u8), (3, 0x23), (4, 0x24)] {
        let block = next_block(&mut second.blocks).await;
        assert_eq!(
            (block.number, block.hash, block.kind),
            (n, B256::repeat_byte(tag), BlockKind::Canonical)
        );
    }
    assert_eq!(second.metrics.reorgs.with_label_values(&["fake"]).get(), 1);
    drop(push);
    second.shutdown.cancel();
}

#[tokio::test]
async fn a_reorg_deeper_than_the_window_is_reported_with_its_depth() {
    let chain = long_chain(100);
    let (url, push) = fake_node(chain.clone()).await;
    let mut running = spawn_ingest(sqlite_store().await, chain_config(vec![url]));
    for n in 1..=99u64 {
        assert_eq!(next_block(&mut running.blocks).await.number, n);
    }
    // Blocks 20..=100 replaced: 80 blocks deep, past the 64-block window.
    let head = {
        let mut c = chain.lock().unwrap();
        rewrite(&mut c, 20, 101, 0x50);
        let head = *c.canonical.last().unwrap();
        head_notification(&c, &head)
    };
    push.send(head).unwrap();
    loop {
        let block = next_block(&mut running.blocks).await;
        if block.kind == BlockKind::Canonical && block.number == 100 {
            break;
        }
    }
    let deep = running.metrics.reorgs_too_deep.with_label_values(&["fake"]);
    assert_eq!(deep.get(), 1);
    let detail = running.health.readiness().unwrap().unwrap_or_default();
    assert!(
        detail.contains("deep reorg: reorg below block 99 at least ")
            && detail.contains("blocks deep, beyond the 64-block window"),
        "{detail}"
    );
    running.shutdown.cancel();
}

#[tokio::test]
async fn a_catch_up_far_below_the_head_goes_by_ranges_within_the_providers_limit() {
    let chain = long_chain(400);
    chain.lock().unwrap().max_range_logs = Some(50);
    let (url, _push) = fake_node(chain.clone()).await;
    let mut running = spawn_ingest(sqlite_store().await, chain_config(vec![url]));
    // Every block once, in order, across the hand-over from ranges to single blocks.
    for n in 1..=399u64 {
        let block = next_block(&mut running.blocks).await;
        assert_eq!(
            (block.number, block.kind, block.logs.len()),
            (n, BlockKind::Canonical, 1)
        );
        assert_eq!(block.logs[0].block_number, n);
    }
    let more = tokio::time::timeout(Duration::from_millis(300), running.blocks.recv()).await;
    assert!(more.is_err(), "no block twice");
    // Ranges (one log per block) cover 1..=335, contiguous, each within the node's 50-log limit,
    // then the last 64 blocks (a reorg window below the head at 399) go one by one.
    let ranges = chain.lock().unwrap().ranges.clone();
    assert_eq!(ranges.first().map(|r| r.0), Some(1));
    assert_eq!(ranges.last().map(|r| r.1), Some(399 - 64));
    for pair in ranges.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "{ranges:?}");
    }
    assert!(ranges.iter().all(|(from, to)| to - from < 50), "{ranges:?}");
    assert!(ranges.len() < 30, "ranges, not blocks: {ranges:?}");
    running.shutdown.cancel();
}
