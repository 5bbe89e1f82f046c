//! Test module: compiled only under #[cfg(test)], from its parent module.
//! The same store behaviour checked on SQLite and, when `PIPELINE_TEST_POSTGRES_URL` is set, on a
//! fresh PostgreSQL database.

use super::*;
use sqlx::AssertSqlSafe;

pub(crate) async fn sqlite() -> Store {
    let dir = std::env::temp_dir().join(format!(
        "pipeline-store-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let store = Store::connect(&format!("sqlite://{}/p.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

/// A fresh database on the test server, or `None` when no server is configured.
pub(crate) async fn postgres() -> Option<Store> {
    let url = postgres_url().await?;
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

/// The URL of a fresh, empty database on the test server, or `None` when none is configured.
pub(crate) async fn postgres_url() -> Option<String> {
    let Ok(url) = std::env::var("PIPELINE_TEST_POSTGRES_URL") else {
        // scripts/test.sh (and so CI) requires PostgreSQL: a silent SQLite-only pass would hide it.
        assert!(
            std::env::var_os("PIPELINE_REQUIRE_POSTGRES").is_none(),
            "PIPELINE_TEST_POSTGRES_URL is not set"
        );
        return None;
    };
    let admin = Store::connect(&url).await.unwrap();
    let name = format!("pipeline_unit_{}", rand::random::<u32>());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin.pool)
        .await
        .unwrap();
    admin.close().await;
    note_created_database(&name);
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap();
    Some(format!("{base}/{name}"))
}

/// Appends `name` to the file `PIPELINE_TEST_CREATED_DATABASES` names, if any: the test command
/// (`scripts/test.sh`) drops the databases listed there when it ends, so repeated runs do not
/// pile them up on the server (each test gets a fresh one, and a test cannot drop its own while
/// its store is still open).
fn note_created_database(name: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("PIPELINE_TEST_CREATED_DATABASES") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{name}\n").as_bytes()).unwrap();
}

async fn each_store(check: impl AsyncFn(Store)) {
    check(sqlite().await).await;
    if let Some(pg) = postgres().await {
        check(pg).await;
    }
}

fn chain_block(number: i64, hash: &str, logs: StoredLogs) -> ChainBlock {
    ChainBlock {
        chain_id: 31337,
        block: StoredBlock {
            number,
            hash: hash.into(),
            parent_hash: format!("{:#x}", number - 1),
            logs,
        },
    }
}

/// The ids of the deliveries a batch write inserted, sorted.
fn ids(inserted: Vec<InsertedDelivery>) -> Vec<String> {
    let mut ids: Vec<String> = inserted.into_iter().map(|d| d.id).collect();
    ids.sort();
    ids
}

/// A new, unheld delivery to `ep_1` in block 7 (also the outbox's and recorder's tests').
pub(crate) fn delivery(id: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        subscription_id: "sub_1".into(),
        endpoint_id: "ep_1".into(),
        chain_id: 31337,
        event_type: "log".into(),
        block_number: 7,
        body: "{\"id\":\"x\",\"data\":{\"quote\":\"it's\"}}".into(),
        release_block: None,
        supersedes: Vec::new(),
        ordering_key: None,
    }
}

#[tokio::test]
async fn each_batch_moves_the_cursor_beside_its_blocks() {
    each_store(async |store: Store| {
        // One block and one cursor, as near the head; then two blocks; then a cursor whose
        // chain's held deliveries are released (written on its own on both stores).
        type Batch<'a> = (&'a [(i64, &'a str)], i64, bool);
        let batches: [Batch; 3] = [
            (&[(7, "0xa7")], 7, false),
            (&[(8, "0xa8"), (9, "0xa9")], 9, false),
            (&[(10, "0xaa")], 10, true),
        ];
        for (blocks, cursor, release) in batches {
            let hash = blocks.last().map(|(_, h)| *h).unwrap_or_default();
            let write = OutboxWrite {
                chain_blocks: blocks
                    .iter()
                    .map(|(n, h)| chain_block(*n, h, "[]".into()))
                    .collect(),
                cursors: vec![Cursor {
                    chain_id: 31337,
                    block_number: cursor,
                    block_hash: hash.into(),
                }],
                release_chains: if release { vec![31337] } else { vec![] },
                ..OutboxWrite::default()
            };
            let (_, stats) = store.write_batch(&write, 60_000).await.unwrap();
            let stored = store.get_cursor(31337).await.unwrap().unwrap();
            assert_eq!(
                (stored.block_number, stored.block_hash.as_str()),
                (cursor, hash)
            );
            let folded = store.dialect() == Dialect::Postgres && !release;
            // The blocks, the cursor (unless folded), the release (when asked).
            let expected = 1 + u64::from(!folded) + u64::from(release);
            assert_eq!(stats.statements, expected, "batch up to block {cursor}");
        }
        let links = store.chain_block_links(31337, 7, 10).await.unwrap();
        assert_eq!(links.len(), 4, "every block stored: {links:?}");
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_settings_round_trip() {
    each_store(async |store: Store| {
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(store.get_setting("k").await.unwrap(), None);
        store.set_setting("k", "v1").await.unwrap();
        store.set_setting("k", "v2").await.unwrap();
        assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("v2"));
    })
    .await;
}

#[tokio::test]
async fn a_batch_write_is_idempotent_and_moves_the_cursor() {
    each_store(async |store: Store| {
        let write = OutboxWrite {
            deliveries: vec![delivery("msg_a"), delivery("msg_b")],
            parked: vec![ParkedEvent {
                subscription_id: "sub_2".into(),
                chain_id: 31337,
                event_type: "log".into(),
                log: r#"{"blockHash":"0xab","logIndex":"0x2"}"#.into(),
                error: "trap".into(),
                event_index: Some(3),
                event_key: Some(ParkedEvent::key("log", "0xab", 2)),
            }],
            cursors: vec![Cursor {
                chain_id: 31337,
                block_number: 7,
                block_hash: "0xab".into(),
            }],
            status_changes: vec![],
            release_chains: vec![],
            resolved_parked: vec![],
            batch_events: vec![],
            // Block 7 twice (applied again after a reorg back): the last copy is the one kept,
            // here a text row replacing a compressed one.
            chain_blocks: vec![
                chain_block(6, "0xa6", StoredLogs::of([r#"{"a":1}"#, "2"].into_iter())),
                chain_block(7, "0xab", StoredLogs::of(["1"].into_iter())),
                chain_block(7, "0xab", "[2]".into()),
            ],
        };
        let (inserted, stats) = store.write_batch(&write, 60_000).await.unwrap();
        assert_eq!(ids(inserted), vec!["msg_a", "msg_b"]);
        // Deliveries, their bodies, the stored window's blocks, parked events, the cursor; on
        // PostgreSQL the cursor is written by the blocks' statement.
        let statements = match store.dialect() {
            Dialect::Sqlite => 5,
            Dialect::Postgres => 4,
        };
        assert_eq!(stats.statements, statements);
        let stored = store.chain_blocks(31337, 6, 7).await.unwrap();
        let mut got: Vec<(i64, &str, Option<String>, bool)> = stored
            .iter()
            .map(|b| {
                let compressed = matches!(b.logs, StoredLogs::Lz4(_));
                (
                    b.number,
                    b.hash.as_str(),
                    b.logs.text().map(|t| t.into_owned()),
                    compressed,
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (6, "0xa6", Some(r#"[{"a":1},2]"#.into()), true),
                (7, "0xab", Some("[2]".into()), false)
            ]
        );
        let logs = store.chain_block_logs(31337, "0xa6").await.unwrap();
        assert_eq!(
            logs.as_ref().and_then(StoredLogs::text).as_deref(),
            Some(r#"[{"a":1},2]"#)
        );
        let mut links = store.chain_block_links(31337, 6, 7).await.unwrap();
        links.sort();
        let links: Vec<(i64, &str, &str)> = links
            .iter()
            .map(|(n, hash, parent)| (*n, hash.as_str(), parent.as_str()))
            .collect();
        assert_eq!(links, [(6, "0xa6", "0x5"), (7, "0xab", "0x6")]);
        // A replay of the same batch creates nothing new.
        let (again, _) = store.write_batch(&write, 60_000).await.unwrap();
        assert!(again.is_empty());
        assert_eq!(
            store.get_cursor(31337).await.unwrap().unwrap().block_number,
            7
        );
        let parked = store.list_parked("sub_2", 10).await.unwrap();
        assert_eq!(parked.len(), 1, "a replay parks nothing twice");
        assert_eq!(parked[0].event.event_index, Some(3));
        let (row, body) = store.get_delivery("msg_a").await.unwrap().unwrap();
        assert_eq!(row.status, DeliveryStatus::Pending);
        assert_eq!(body, delivery("msg_a").body);
    })
    .await;
}

#[tokio::test]
async fn batches_larger_than_one_statement_are_written_and_recorded_whole() {
    each_store(async |store: Store| {
        // 1,100 rows: three statements of up to 512 rows, the last one padded.
        let deliveries: Vec<NewDelivery> = (0..1_100)
            .map(|i| NewDelivery {
                block_number: i,
                release_block: (i % 7 == 0).then_some(i + 3),
                ..delivery(&format!("msg_{i:05}"))
            })
            .collect();
        let write = OutboxWrite {
            deliveries,
            ..OutboxWrite::default()
        };
        let (inserted, stats) = store.write_batch(&write, 60_000).await.unwrap();
        let seq_of: std::collections::HashMap<String, i64> =
            inserted.iter().map(|d| (d.id.clone(), d.seq)).collect();
        let new_ids = ids(inserted);
        assert_eq!(new_ids.len(), 1_100);
        assert_eq!(new_ids[1_099], "msg_01099");
        // Three statements of rows and three of their bodies.
        assert_eq!(stats.statements, 6);
        let lease = stats.lease_until;
        let (again, _) = store.write_batch(&write, 60_000).await.unwrap();
        assert!(again.is_empty(), "a replay inserts nothing");
        let (held, _) = store.get_delivery("msg_00007").await.unwrap().unwrap();
        assert_eq!(held.next_attempt_at, HELD_UNTIL_RELEASED);
        let (row, body) = store.get_delivery("msg_00008").await.unwrap().unwrap();
        assert_eq!(
            (row.block_number, body.as_str()),
            (8, delivery("x").body.as_str())
        );
        let results: Vec<AttemptResult> = (0..1_100)
            .map(|i| AttemptResult {
                id: format!("msg_{i:05}"),
                seq: seq_of[&format!("msg_{i:05}")],
                status: DeliveryStatus::Delivered,
                attempts: 1,
                next_attempt_at: 0,
                status_code: Some(200),
                latency_ms: 1,
                error: None,
                response_body: (i == 5).then(|| "ok".to_string()),
                at: now_ms(),
                attempted: i % 2 == 0,
                // Held rows are not leased: their outcome (a manual send) carries no claim.
                lease: if i % 7 == 0 { 0 } else { lease },
                ordered: false,
                pending_seq: None,
            })
            .collect();
        assert_eq!(
            store.record_results(&results).await.unwrap(),
            6,
            "3 chunks × 2"
        );
        let delivered = store
            .list_deliveries(&DeliveryFilter {
                status: Some(DeliveryStatus::Delivered),
                limit: 2_000,
                ..DeliveryFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(delivered.len(), 1_100);
        assert_eq!(store.delivery_attempts("msg_01098").await.unwrap().len(), 1);
        assert!(
            store
                .delivery_attempts("msg_01099")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.checkpoint().await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn leased_rows_are_not_claimed_and_results_are_recorded() {
    each_store(async |store: Store| {
        let write = OutboxWrite {
            deliveries: vec![delivery("msg_l")],
            ..OutboxWrite::default()
        };
        store.write_batch(&write, 60_000).await.unwrap();
        assert!(
            store
                .claim_due(10, i64::MAX, 1_000)
                .await
                .unwrap()
                .is_empty(),
            "leased by the writer"
        );
        let write = OutboxWrite {
            deliveries: vec![delivery("msg_f")],
            ..OutboxWrite::default()
        };
        store.write_batch(&write, -1).await.unwrap();
        let due = store.claim_due(10, i64::MAX, 1_000).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, "msg_f");
        assert!(
            store
                .claim_due(10, i64::MAX, 1_000)
                .await
                .unwrap()
                .is_empty(),
            "now leased by the claimer"
        );
        let result = AttemptResult {
            id: "msg_f".into(),
            seq: due[0].seq,
            status: DeliveryStatus::Retrying,
            attempts: 1,
            next_attempt_at: now_ms() - 1,
            status_code: Some(503),
            latency_ms: 12,
            error: Some("HTTP 503".into()),
            response_body: Some("busy".into()),
            at: now_ms(),
            attempted: true,
            lease: due[0].lease_until,
            ordered: false,
            pending_seq: None,
        };
        store.record_results(&[result]).await.unwrap();
        let (row, _) = store.get_delivery("msg_f").await.unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.attempts, row.last_status_code),
            ("retrying", 1, Some(503))
        );
        let attempts = store.delivery_attempts("msg_f").await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].response_body.as_deref(), Some("busy"));
        assert_eq!(
            store.claim_due(10, i64::MAX, 1_000).await.unwrap().len(),
            1,
            "due again once the lease is cleared"
        );
        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Retrying),
            limit: 10,
            ..DeliveryFilter::default()
        };
        let listed = store.list_deliveries(&filter).await.unwrap();
        assert_eq!(
            listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["msg_f"]
        );
        let all = store
            .list_deliveries(&DeliveryFilter {
                limit: 10,
                ..DeliveryFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, "msg_f", "newest first");
    })
    .await;
}

#[tokio::test]
async fn one_replica_owns_a_chain_at_a_time() {
    let Some(pg) = postgres().await else { return };
    let mut first = pg
        .try_lock_chain(31337)
        .await
        .unwrap()
        .expect("free chain is granted");
    assert!(first.is_held().await);
    assert!(
        pg.try_lock_chain(31337).await.unwrap().is_none(),
        "a second owner is refused"
    );
    assert!(
        pg.try_lock_chain(1).await.unwrap().is_some(),
        "other chains are independent"
    );
    first.release().await;
    assert!(
        pg.try_lock_chain(31337).await.unwrap().is_some(),
        "taken over once released"
    );
    // SQLite: one process per file, always the owner.
    assert!(
        sqlite()
            .await
            .try_lock_chain(31337)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn held_deliveries_wait_for_their_block_and_a_reorg_cancels_them() {
    each_store(async |store: Store| {
        let cursor = |n: i64| Cursor {
            chain_id: 31337,
            block_number: n,
            block_hash: format!("0x{n:x}"),
        };
        let held = |id: &str, release: i64| NewDelivery {
            release_block: Some(release),
            ..delivery(id)
        };
        let write = OutboxWrite {
            deliveries: vec![held("msg_h1", 9), held("msg_h2", 12)],
            cursors: vec![cursor(7)],
            release_chains: vec![31337],
            ..OutboxWrite::default()
        };
        let (inserted, _) = store.write_batch(&write, 60_000).await.unwrap();
        assert_eq!(inserted.len(), 2);
        assert!(
            store
                .claim_due(10, i64::MAX, 1_000)
                .await
                .unwrap()
                .is_empty(),
            "held until released"
        );
        let release = OutboxWrite {
            cursors: vec![cursor(9)],
            release_chains: vec![31337],
            ..OutboxWrite::default()
        };
        store.write_batch(&release, 60_000).await.unwrap();
        let due = store.claim_due(10, i64::MAX, 1_000).await.unwrap();
        assert_eq!(
            due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["msg_h1"]
        );
        // msg_h2's log is reorged out before it is confirmed: both it and its removal vanish —
        // also when the row was written under another form of its id than the removal's first
        // (a delivery held across an upgrade that changed the form).
        let removal = |id: &str, of: &[&str]| OutboxWrite {
            deliveries: vec![NewDelivery {
                event_type: "log.removed".into(),
                supersedes: of.iter().map(|id| id.to_string()).collect(),
                ordering_key: None,
                ..delivery(id)
            }],
            ..OutboxWrite::default()
        };
        let (inserted, _) = store
            .write_batch(
                &removal("msg_r2", &["msg_00000000000cnewform", "msg_h2"]),
                60_000,
            )
            .await
            .unwrap();
        assert!(
            inserted.is_empty(),
            "the removal of a never-sent log is not sent"
        );
        assert!(store.get_delivery("msg_h2").await.unwrap().is_none());
        let (rows, bodies): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM deliveries), (SELECT COUNT(*) FROM delivery_bodies)",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(bodies, rows, "the cancelled row's body went with it");
        // A removal of an already released delivery is sent.
        let (inserted, _) = store
            .write_batch(&removal("msg_r1", &["msg_h1"]), 60_000)
            .await
            .unwrap();
        assert_eq!(ids(inserted), vec!["msg_r1"]);
    })
    .await;
}

#[tokio::test]
async fn every_postgres_session_has_statement_lock_and_idle_timeouts_and_no_jit() {
    let Some(pg) = postgres().await else { return };
    for (setting, expected) in [
        ("statement_timeout", "30s"),
        ("lock_timeout", "10s"),
        ("idle_in_transaction_session_timeout", "1min"),
        ("jit", "off"),
    ] {
        let (value,): (String,) = sqlx::query_as(AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&pg.pool)
            .await
            .unwrap();
        assert_eq!(value, expected, "{setting}");
    }
    // A statement that would hang is cut off instead: here one waiting on a row lock.
    let mut holder = pg.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(4242)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut waiter = pg.pool.acquire().await.unwrap();
    sqlx::query("SET lock_timeout = '200ms'")
        .execute(&mut *waiter)
        .await
        .unwrap();
    let blocked = sqlx::query("SELECT pg_advisory_xact_lock(4242)")
        .execute(&mut *waiter)
        .await;
    assert!(blocked.is_err(), "the wait ends with an error");
    holder.rollback().await.unwrap();
}

#[tokio::test]
async fn a_pooled_connection_that_died_while_idle_is_replaced_before_use() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    // Both pools hold an idle connection.
    store.get_cursor(1).await.unwrap();
    store
        .write_batch(&OutboxWrite::default(), 60_000)
        .await
        .unwrap();
    // The server ends every other session of this database, as a restart would.
    let killer = Store::connect(&url).await.unwrap();
    let mut killer = killer.pool.acquire().await.unwrap();
    let (ended,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
    )
    .fetch_one(&mut *killer)
    .await
    .unwrap();
    assert!(ended >= 2, "the store's connections were ended ({ended})");
    tokio::time::sleep(PING_IDLE_AFTER + Duration::from_millis(300)).await;
    // Idle past the threshold, each is pinged, found dead and replaced: no error reaches a caller.
    store.get_cursor(1).await.unwrap();
    store
        .write_batch(&OutboxWrite::default(), 60_000)
        .await
        .unwrap();
}

#[tokio::test]
async fn settings_sent_with_begin_hold_for_that_transaction_only() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    // The outcome write's own settings.
    let mut tx = store
        .begin_write_with(&store.writer, super::deliveries::OUTCOME_SETTINGS)
        .await
        .unwrap();
    let inside: (String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('plan_cache_mode'), current_setting('synchronous_commit'), \
         current_setting('enable_seqscan'), current_setting('enable_hashjoin')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        inside,
        (
            "force_generic_plan".into(),
            "off".into(),
            "off".into(),
            "off".into()
        )
    );
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Every connection of the writer pool, the one that ran the transaction among them, is back
    // to the default and usable.
    let each_connection = async |expect_pid: Option<i32>| {
        let mut held = Vec::new();
        let mut pids = Vec::new();
        for _ in 0..POSTGRES_WRITER_CONNECTIONS {
            let mut conn = store.writer.acquire().await.unwrap();
            let (value, pid): (String, i32) =
                sqlx::query_as("SELECT current_setting('plan_cache_mode'), pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            assert_eq!(value, "auto");
            pids.push(pid);
            held.push(conn);
        }
        if let Some(pid) = expect_pid {
            assert!(
                pids.contains(&pid),
                "the transaction's connection was checked"
            );
        }
    };
    each_connection(Some(pid)).await;
    // A settings statement that fails fails the begin and leaves no transaction open.
    let failed = store.begin_write_with(&store.writer, "SELECT 1 / 0").await;
    assert!(
        failed.is_err(),
        "a failing settings statement fails the begin"
    );
    each_connection(None).await;
}

/// Gives delivery `id` a status and creation time, no lease, and one attempt made at that time.
async fn aged_with_an_attempt(store: &Store, id: &str, status: &str, created_at: i64) {
    sqlx::query(
        "UPDATE deliveries SET status = $1, created_at = $2, lease_until = 0 WHERE id = $3",
    )
    .bind(status)
    .bind(created_at)
    .bind(id)
    .execute(&store.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_seq, attempt, latency_ms, created_at) \
         SELECT seq, 1, 5, $2 FROM deliveries WHERE id = $1",
    )
    .bind(id)
    .bind(created_at)
    .execute(&store.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn retention_deletes_only_expired_finished_rows_with_their_attempts() {
    each_store(async |store: Store| {
        let ids = [
            "msg_old_ok",
            "msg_old_dead",
            "msg_mid_dead",
            "msg_old_pending",
            "msg_new_ok",
        ];
        let write = OutboxWrite {
            deliveries: ids.iter().map(|id| delivery(id)).collect(),
            parked: ["{\"old\":1}", "{\"new\":1}"]
                .iter()
                .map(|log| ParkedEvent {
                    subscription_id: "sub_2".into(),
                    chain_id: 31337,
                    event_type: "log".into(),
                    log: (*log).into(),
                    error: "trap".into(),
                    event_index: None,
                    event_key: None,
                })
                .collect(),
            ..OutboxWrite::default()
        };
        store.write_batch(&write, 60_000).await.unwrap();
        let day = 86_400_000_i64;
        let now = super::now_ms();
        // (id, status, age in days)
        for (id, status, age) in [
            ("msg_old_ok", "delivered", 40),
            ("msg_old_dead", "dead", 100),
            ("msg_mid_dead", "dead", 40),
            ("msg_old_pending", "retrying", 100),
            ("msg_new_ok", "delivered", 1),
        ] {
            aged_with_an_attempt(&store, id, status, now - age * day).await;
        }
        sqlx::query("UPDATE parked_events SET created_at = $1 WHERE log = '{\"old\":1}'")
            .bind(now - 100 * day)
            .execute(&store.pool)
            .await
            .unwrap();
        let cutoffs = Cutoffs {
            delivered_before: now - 30 * day,
            dead_before: now - 90 * day,
            parked_before: now - 90 * day,
        };
        let pruned = store.prune(&cutoffs).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                deliveries: 2,
                parked_events: 1
            }
        );
        let left: Vec<(String,)> = sqlx::query_as("SELECT id FROM deliveries ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let left: Vec<&str> = left.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(left, ["msg_mid_dead", "msg_new_ok", "msg_old_pending"]);
        let (attempts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM delivery_attempts")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(attempts, 3, "attempts go with their delivery");
        let (bodies,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM delivery_bodies")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(bodies, 3, "bodies go with their delivery");
        let (parked,): (String,) = sqlx::query_as("SELECT log FROM parked_events")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(parked, "{\"new\":1}");
        // A second pass finds nothing more.
        assert_eq!(store.prune(&cutoffs).await.unwrap(), Pruned::default());
    })
    .await;
}

mod attempts_migration;
mod caches;
mod canary;
mod claim_bytes;
mod delivery_state;
mod due_index;
mod fencing;
mod head_batch;
mod modes;
mod ordering;
mod parked;
mod retention;
mod secrets;
mod states;
mod wal;

impl Store {
    /// The pool, for tests elsewhere in the crate that set a row up or hold a lock on it.
    pub(crate) fn test_pool(&self) -> &sqlx::AnyPool {
        &self.pool
    }
}
