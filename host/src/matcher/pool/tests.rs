use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::{Call, CallPool};

/// A call that notes the thread it ran on, after waiting for `release` (if any) up to 10 s.
struct Probe {
    ran_on: Option<ThreadId>,
    slow: bool,
    /// Leaves its thread unfit for more pool calls (as a demoted plugin thread is).
    spoils: bool,
    release: Option<mpsc::Receiver<()>>,
    panics: bool,
    /// Calls running now and the most at once, shared by a test's calls.
    running: Option<Arc<(AtomicUsize, AtomicUsize)>>,
}

impl Probe {
    fn quick() -> Probe {
        Probe {
            ran_on: None,
            slow: false,
            spoils: false,
            release: None,
            panics: false,
            running: None,
        }
    }

    /// A call that runs until the returned sender sends (or is dropped).
    fn held() -> (Probe, mpsc::Sender<()>) {
        let (release, held) = mpsc::channel();
        let probe = Probe {
            release: Some(held),
            ..Probe::quick()
        };
        (probe, release)
    }
}

impl Call for Probe {
    fn run(&mut self) {
        self.ran_on = Some(std::thread::current().id());
        if let Some(running) = &self.running {
            let now = running.0.fetch_add(1, Ordering::SeqCst) + 1;
            running.1.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            running.0.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(release) = &self.release {
            let _ = release.recv_timeout(Duration::from_secs(10));
        }
        if self.panics {
            panic!("a host bug in a call");
        }
    }

    fn known_slow(&self) -> bool {
        self.slow
    }

    fn thread_spoiled(&self) -> bool {
        self.spoils
    }
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_calls_runs_on_as_many_threads_as_the_pool_has() {
    let pool = CallPool::with(2, LONG);
    let running = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let pool = pool.clone();
            let call = Probe {
                running: Some(running.clone()),
                ..Probe::quick()
            };
            tokio::spawn(async move { pool.run(call).await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("call answered");
    }
    // 40 calls of 1 ms each: two run side by side (both cores), never more.
    assert_eq!(running.1.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_finds_the_pool_busy_gets_its_own_thread_after_the_grace() {
    let pool = CallPool::with(1, Duration::from_millis(20));
    let (stuck, release) = Probe::held();
    let stuck = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(stuck).await }
    });
    // Let the one pool thread take the stuck call.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let quick = tokio::time::timeout(Duration::from_secs(5), pool.run(Probe::quick()))
        .await
        .expect("the call behind a stuck one still ran")
        .expect("answered");
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "it waited its grace first"
    );
    assert!(!stuck.is_finished(), "the stuck call is still running");
    release.send(()).expect("stuck call waiting");
    let stuck = stuck.await.expect("task").expect("answered");
    assert_ne!(
        quick.ran_on, stuck.ran_on,
        "the waiting call ran beside the stuck one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_slow_call_never_waits_for_the_pool() {
    let pool = CallPool::with(1, LONG);
    let (stuck, release) = Probe::held();
    let stuck = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(stuck).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let slow = Probe {
        slow: true,
        ..Probe::quick()
    };
    // With a 30 s grace, only a thread of its own answers it within 5 s.
    let slow = tokio::time::timeout(Duration::from_secs(5), pool.run(slow))
        .await
        .expect("a known-slow call does not queue behind the pool")
        .expect("answered");
    release.send(()).expect("stuck call waiting");
    let stuck = stuck.await.expect("task").expect("answered");
    assert_ne!(slow.ran_on, stuck.ran_on);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_panics_is_reported_lost_and_the_pool_goes_on() {
    let pool = CallPool::with(1, LONG);
    let panics = Probe {
        panics: true,
        ..Probe::quick()
    };
    let lost = pool.run(panics).await;
    assert!(
        lost.as_ref().is_err_and(|why| why.contains("lost")),
        "a call whose thread died is an error, got {:?}",
        lost.map(|_| ())
    );
    // The pool counted its task out: the next call is taken by a new pool task, not left
    // queued for the 30 s grace.
    tokio::time::timeout(Duration::from_secs(5), pool.run(Probe::quick()))
        .await
        .expect("the pool still runs calls")
        .expect("answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_behind_one_that_spoils_its_thread_run_on_another() {
    let pool = CallPool::with(1, LONG);
    let (spoiler, release) = Probe::held();
    let spoiler = Probe {
        spoils: true,
        ..spoiler
    };
    let spoiler = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(spoiler).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Queued behind it (the one pool thread is busy, the grace is long).
    let queued: Vec<_> = (0..5)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(Probe::quick()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.send(()).expect("spoiler waiting");
    let spoiled = spoiler.await.expect("task").expect("answered").ran_on;
    for call in queued {
        let call = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the queue was handed to another pool task")
            .expect("task")
            .expect("answered");
        assert_ne!(call.ran_on, spoiled, "a call ran on the spoiled thread");
    }
}
