//! A real HTTP server on 127.0.0.1 that records every request (headers, raw body, arrival time) and
//! answers with a configurable status (200 by default).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;
use tokio::task::JoinHandle;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names are lowercase; a repeated header keeps its values joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The header, or a panic naming the request.
    pub fn required_header(&self, name: &str) -> &str {
        self.header(name).unwrap_or_else(|| {
            panic!(
                "webhook lacks the {name} header; headers: {:?}",
                self.headers
            )
        })
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body)
            .unwrap_or_else(|e| panic!("webhook body is not UTF-8 ({e}): {:?}", self.body))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct Inner {
    requests: Mutex<Vec<Received>>,
    status: AtomicU16,
}

/// The recording server; stops on drop.
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

async fn record(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let received = Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: map,
        body: body.to_vec(),
        at: Instant::now(),
    };
    inner.requests.lock().expect("receiver lock").push(received);
    StatusCode::from_u16(inner.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

impl Receiver {
    /// Starts listening on 127.0.0.1 with a port the OS picks.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver on 127.0.0.1:0");
        let addr = listener.local_addr().expect("receiver local_addr");
        let app = Router::new().fallback(record).with_state(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("webhook receiver on {addr} stopped: {e}");
            }
        });
        Receiver { addr, inner, task }
    }

    /// The URL to register as an endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The status every following request is answered with.
    pub fn set_status(&self, status: u16) {
        self.inner.status.store(status, Ordering::SeqCst);
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.inner.requests.lock().expect("receiver lock").clone()
    }

    pub fn count(&self) -> usize {
        self.inner.requests.lock().expect("receiver lock").len()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout` listing what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "receiver {}: expected at least {n} webhook(s) within {timeout:?}, got {}:\n{}",
                    self.url(),
                    got.len(),
                    describe(&got)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits `quiet` and then asserts that exactly `n` requests arrived in all.
    pub async fn expect_exactly(&self, n: usize, quiet: Duration) -> Vec<Received> {
        tokio::time::sleep(quiet).await;
        let got = self.requests();
        assert_eq!(
            got.len(),
            n,
            "receiver {}: expected exactly {n} webhook(s) (after waiting {quiet:?} more), got {}:\n{}",
            self.url(),
            got.len(),
            describe(&got)
        );
        got
    }
}

/// A short listing of requests for panic messages.
pub fn describe(requests: &[Received]) -> String {
    if requests.is_empty() {
        return "  (none)".to_string();
    }
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let body = String::from_utf8_lossy(&r.body);
            let body: String = body.chars().take(600).collect();
            format!(
                "  #{i} {} {} webhook-id={:?} body={body}",
                r.method,
                r.path,
                r.header("webhook-id")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
