//! Test module: compiled only under #[cfg(test)], from its parent module.
//! The dispatcher against a real store and a receiver on loopback: a stale registry snapshot never
//! makes a delivery dead, and a job whose lease ran out in memory is not sent. A full lane defers
//! (endpoint slow) unless the store is what is behind.
#![allow(clippy::unwrap_used, clippy::panic)] // Tests may panic (DESIGN §6).

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;
use tokio::net::TcpListener;

use super::*;
use crate::deliver::JobRoom;
use crate::deliver::client::ClientSettings;
use crate::store::{DeliveryStatus, EndpointRow, EndpointStatus};

/// A receiver on loopback answering 200 and counting what it got.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let router = Router::new().route(
        "/hook",
        post(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/hook"), count)
}

async fn store() -> Store {
    let dir = std::env::temp_dir().join(format!("pipeline-dispatch-{}", rand::random::<u64>()));
    let store = Store::connect(&format!("sqlite://{}/d.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn endpoint(url: &str, status: EndpointStatus) -> EndpointRow {
    EndpointRow {
        id: "ep_1".into(),
        url: url.into(),
        description: String::new(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        status,
        disabled_reason: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn job(lease_until: i64) -> DeliveryJob {
    DeliveryJob {
        id: "msg_1".into(),
        seq: 1,
        endpoint_id: "ep_1".into(),
        body: Arc::from("{}"),
        attempts: 0,
        received_at: None,
        lease_until,
        ordered: false,
        pending_seq: None,
        room: Default::default(),
    }
}

/// A dispatcher of 4 workers, 2 per endpoint, that may send to loopback.
fn dispatcher(store: &Store, endpoints: watch::Receiver<Endpoints>, room: JobRoom) -> Dispatcher {
    let settings = ClientSettings {
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        ..ClientSettings::default()
    };
    // Nothing here answers 410, so the receiving end of `gone` is not needed.
    let (gone, _) = mpsc::channel(4);
    Dispatcher {
        client: WebhookClient::new(settings).unwrap(),
        schedule: RetrySchedule::new(vec![Duration::from_secs(5)]),
        endpoints,
        metrics: Metrics::new().unwrap(),
        workers: 4,
        per_endpoint: 2,
        gone,
        room,
        store: store.clone(),
        lease_margin: Duration::from_secs(30),
        breakers: Default::default(),
    }
}

/// Runs a dispatcher over `jobs` with the registry snapshot `snapshot`; returns the outcomes.
async fn dispatch(
    store: &Store,
    snapshot: Vec<EndpointRow>,
    jobs: Vec<DeliveryJob>,
) -> Vec<AttemptResult> {
    let endpoints: Endpoints = Arc::new(
        snapshot
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect(),
    );
    let (_keep, endpoints) = watch::channel(endpoints);
    let dispatcher = dispatcher(store, endpoints, JobRoom::default());
    let (jobs_tx, jobs_rx) = mpsc::channel(16);
    let (results_tx, mut results_rx) = mpsc::channel(16);
    for job in jobs {
        jobs_tx.send(job).await.unwrap();
    }
    drop(jobs_tx);
    tokio::time::timeout(Duration::from_secs(30), dispatcher.run(jobs_rx, results_tx))
        .await
        .unwrap();
    let mut results = Vec::new();
    while let Some(result) = results_rx.recv().await {
        results.push(result);
    }
    results
}

#[tokio::test]
async fn a_stale_snapshot_never_makes_a_delivery_dead() {
    let (url, received) = receiver().await;
    let store = store().await;
    // Created (or re-enabled) through another replica: missing or disabled in this snapshot.
    store
        .insert_endpoint(&endpoint(&url, EndpointStatus::Enabled))
        .await
        .unwrap();
    for snapshot in [vec![], vec![endpoint(&url, EndpointStatus::Disabled)]] {
        let results = dispatch(&store, snapshot, vec![job(now_ms() + 60_000)]).await;
        assert_eq!(results.len(), 1);
        assert_eq!(
            results[0].status,
            DeliveryStatus::Delivered,
            "{:?}",
            results[0].error
        );
    }
    assert_eq!(received.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn only_the_store_makes_a_delivery_dead_for_its_endpoint() {
    let (url, received) = receiver().await;
    let store = store().await;
    let results = dispatch(&store, vec![], vec![job(now_ms() + 60_000)]).await;
    assert_eq!(results[0].status, DeliveryStatus::Dead);
    assert_eq!(
        results[0].error.as_deref(),
        Some("endpoint ep_1 does not exist")
    );
    store
        .insert_endpoint(&endpoint(&url, EndpointStatus::Disabled))
        .await
        .unwrap();
    let snapshot = vec![endpoint(&url, EndpointStatus::Enabled)];
    let results = dispatch(&store, vec![], vec![job(now_ms() + 60_000)]).await;
    assert_eq!(
        results[0].error.as_deref(),
        Some("endpoint ep_1 is disabled")
    );
    // Enabled in the snapshot: sent without asking the store (the common, hot case).
    let results = dispatch(&store, snapshot, vec![job(now_ms() + 60_000)]).await;
    assert_eq!(results[0].status, DeliveryStatus::Delivered);
    assert_eq!(received.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_job_whose_lease_ran_out_in_memory_is_not_sent() {
    let (url, received) = receiver().await;
    let store = store().await;
    store
        .insert_endpoint(&endpoint(&url, EndpointStatus::Enabled))
        .await
        .unwrap();
    let snapshot = vec![endpoint(&url, EndpointStatus::Enabled)];
    // Expired, and expiring within the request timeout (an attempt would outlive it).
    let soon = DeliveryJob {
        id: "msg_2".into(),
        ..job(now_ms() + 10_000)
    };
    let stale = vec![job(now_ms() - 1), soon];
    let results = dispatch(&store, snapshot, stale).await;
    assert!(results.is_empty(), "no outcome either: {results:?}");
    assert_eq!(received.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_endpoints_queued_bodies_are_bounded_in_bytes_as_well_as_in_jobs() {
    // Room for 100 jobs but 1 MiB of bodies: two 600 KiB bodies do not fit at once.
    let lane = Lane::with_limits(100, 1024);
    let big = 600 * 1024;
    let first = lane
        .room(big, || false)
        .await
        .expect("room for the first body");
    assert!(
        lane.room(big, || false).await.is_none(),
        "a second 600 KiB body waited for room and was deferred"
    );
    assert!(
        lane.room(1024, || false).await.is_some(),
        "a small body still fits beside it"
    );
    drop(first);
    *lock(&lane.slow_until) = None;
    assert!(
        lane.room(big, || false).await.is_some(),
        "room again once the first is sent"
    );
    // A body larger than the whole share still passes, alone.
    assert!(lane.room(4 * 1024 * 1024, || false).await.is_some());
}

/// Bodies in memory are bounded in bytes in all, not only per endpoint: with room for 1 MiB,
/// two 400 KiB jobs for two endpoints that never answer are sent, and the third waits for room
/// before it even enters the channel (backpressure).
#[tokio::test]
async fn all_bodies_held_in_memory_stay_within_one_byte_budget() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let _held = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            open.push(socket); // read nothing, answer nothing
        }
    }));
    let store = store().await;
    let endpoints: Endpoints = Arc::new(
        ["ep_1", "ep_2"]
            .into_iter()
            .map(|id| {
                let row = EndpointRow {
                    id: id.into(),
                    ..endpoint(&url, EndpointStatus::Enabled)
                };
                (id.to_owned(), Arc::new(row))
            })
            .collect(),
    );
    let (_keep, endpoints) = watch::channel(endpoints);
    let room = JobRoom {
        jobs: Arc::new(Semaphore::new(100)),
        bodies: crate::event::Budget::kib(1024),
    };
    let dispatcher = dispatcher(&store, endpoints, room.clone());
    let (jobs_tx, jobs_rx) = mpsc::channel(16);
    let (results_tx, _results_rx) = mpsc::channel(16);
    let running = AbortOnDropHandle::new(tokio::spawn(dispatcher.run(jobs_rx, results_tx)));
    let body: Arc<str> = Arc::from("x".repeat(400 * 1024));
    let jobs: Vec<DeliveryJob> = [("msg_1", "ep_1"), ("msg_2", "ep_2"), ("msg_3", "ep_1")]
        .into_iter()
        .map(|(id, endpoint_id)| DeliveryJob {
            id: id.into(),
            endpoint_id: endpoint_id.into(),
            body: body.clone(),
            ..job(now_ms() + 60_000)
        })
        .collect();
    let sender = room.sender(jobs_tx);
    let sending = AbortOnDropHandle::new(tokio::spawn(async move {
        for job in jobs {
            sender.send(job).await.unwrap();
        }
    }));
    // Each request in flight holds a connection of its own (none is ever answered).
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "two requests sent within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "a third body went out beyond the budget"
    );
    assert!(!sending.is_finished(), "the third job waits for room");
    drop((sending, running));
}

#[tokio::test(start_paused = true)]
async fn a_full_lane_waits_while_the_store_holds_it_and_defers_otherwise() {
    let lane = Arc::new(Lane::with_limits(1, 1024));
    let held = lane.room(10, || false).await.expect("the one slot");

    // The lane's worker is handing its outcome to a recorder that is behind: the full lane says
    // nothing about the endpoint, so the dispatcher keeps waiting (well past ROOM_WAIT) and
    // takes the slot when the outcome is taken.
    lane.recording.store(1, Ordering::Relaxed);
    let waiter = {
        let lane = lane.clone();
        tokio::spawn(async move { lane.room(10, || true).await.is_some() })
    };
    tokio::time::sleep(ROOM_WAIT * 10).await;
    assert!(!waiter.is_finished(), "still waiting, not deferred");
    lane.recording.store(0, Ordering::Relaxed);
    drop(held);
    assert!(waiter.await.unwrap(), "room once the slot is free");
    assert!(
        lock(&lane.slow_until).is_none(),
        "the endpoint is not marked slow"
    );

    // The recorder is behind, but the lane's workers are all still waiting for the endpoint
    // (none is handing over an outcome): the endpoint is slow — defer after ROOM_WAIT, so one
    // slow endpoint does not hold the dispatcher while the store catches up.
    let _held = lane.room(10, || false).await.expect("the slot again");
    let started = tokio::time::Instant::now();
    assert!(lane.room(10, || true).await.is_none(), "deferred");
    let waited = started.elapsed();
    assert!(waited >= ROOM_WAIT && waited < ROOM_WAIT * 2, "{waited:?}");
    assert!(
        lock(&lane.slow_until).is_some(),
        "the endpoint is marked slow"
    );
    let started = tokio::time::Instant::now();
    assert!(
        lane.room(10, || true).await.is_none(),
        "slow: deferred at once"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);

    // The store keeps up: a full lane is the endpoint's, whatever its workers do.
    *lock(&lane.slow_until) = None;
    lane.recording.store(1, Ordering::Relaxed);
    assert!(lane.room(10, || false).await.is_none(), "deferred");
}

#[tokio::test]
async fn the_recorder_is_behind_when_its_queue_is_over_half_full() {
    let (results, _receiver) = mpsc::channel::<u8>(8);
    let mut permits = Vec::new();
    for expected in [false, false, false, false, true, true, true, true] {
        permits.push(results.try_reserve().unwrap());
        assert_eq!(backed_up(&results), expected, "{} queued", permits.len());
    }
}

#[tokio::test(start_paused = true)]
async fn the_open_breaker_gauge_follows_the_breakers_on_its_clock() {
    let breakers: BreakerBoard = Arc::default();
    let metrics = Metrics::new().unwrap();
    let mut open = Breaker::new(BreakerConfig::default());
    for _ in 0..BreakerConfig::default().failure_threshold {
        open.on_failure(Instant::now());
    }
    assert!(open.is_open(Instant::now()));
    lock(&breakers).insert("ep_open".into(), open);
    lock(&breakers).insert("ep_closed".into(), Breaker::new(BreakerConfig::default()));
    let gauge = tokio::spawn(tend_breakers(breakers.clone(), metrics.clone()));
    // The first count is at once.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(metrics.breaker_open.get(), 1);
    // A success closes the breaker; the gauge says so at its next count, not before.
    if let Some(b) = lock(&breakers).get_mut("ep_open") {
        b.on_success();
    }
    assert_eq!(metrics.breaker_open.get(), 1);
    tokio::time::sleep(BREAKER_GAUGE_EVERY).await;
    assert_eq!(metrics.breaker_open.get(), 0);
    gauge.abort();
}

#[tokio::test(start_paused = true)]
async fn breakers_at_rest_are_forgotten_and_the_others_kept() {
    let breakers: BreakerBoard = Arc::default();
    let metrics = Metrics::new().unwrap();
    let mut failing = Breaker::new(BreakerConfig::default());
    failing.on_failure(Instant::now());
    let mut recovered = Breaker::new(BreakerConfig::default());
    recovered.on_failure(Instant::now());
    recovered.on_success();
    lock(&breakers).insert("ep_failing".into(), failing);
    lock(&breakers).insert("ep_recovered".into(), recovered);
    let tend = tokio::spawn(tend_breakers(breakers.clone(), metrics.clone()));
    tokio::time::sleep(FORGET_IDLE_EVERY - BREAKER_GAUGE_EVERY).await;
    assert_eq!(
        lock(&breakers).len(),
        2,
        "kept until the first minute is over"
    );
    tokio::time::sleep(BREAKER_GAUGE_EVERY * 2).await;
    let left: Vec<String> = lock(&breakers).keys().cloned().collect();
    assert_eq!(left, vec!["ep_failing".to_string()]);
    tend.abort();
}

#[test]
fn lanes_no_worker_holds_and_not_slow_are_forgotten() {
    let now = Instant::now();
    let mut lanes: HashMap<String, Arc<Lane>> = HashMap::new();
    lanes.insert("ep_idle".into(), Arc::new(Lane::new()));
    let busy = Arc::new(Lane::new());
    let worker_holds = busy.clone();
    lanes.insert("ep_busy".into(), busy);
    let slow = Arc::new(Lane::new());
    *slow.slow_until.lock().unwrap() = Some(now + Duration::from_secs(1));
    lanes.insert("ep_slow".into(), slow);
    forget_idle_lanes(&mut lanes, now);
    let mut left: Vec<&String> = lanes.keys().collect();
    left.sort();
    assert_eq!(left, ["ep_busy", "ep_slow"]);
    drop(worker_holds);
    forget_idle_lanes(&mut lanes, now + Duration::from_secs(2));
    assert!(lanes.is_empty(), "{:?}", lanes.keys().collect::<Vec<_>>());
}
