//! A real HTTP server on 127.0.0.1 that records every request (headers, raw body, arrival time) and
//! answers with a configurable status (200 by default), or as a hostile receiver would ([`Answer`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
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
    /// The status it was answered with (for [`Answer::Status`]).
    pub status: u16,
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

/// How the receiver answers, beyond a plain status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The configured status (`set_status`) with an empty body.
    Status,
    /// 200 with NUL bytes, invalid UTF-8 and terminal escapes in the body.
    NulBody,
    /// 200 with a 10 MB body.
    HugeBody,
    /// 200, then the body one byte every 100 ms, for a minute.
    DripBody,
    /// 302 to the same URL: following it would loop forever.
    RedirectLoop,
}

struct Inner {
    requests: Mutex<Vec<Received>>,
    status: AtomicU16,
    answer: Mutex<Answer>,
    /// Bodies containing the text get 500 on their first `n` attempts (counted per webhook-id).
    fail_first: Mutex<Vec<(String, usize)>>,
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
) -> Response {
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
    let mut status =
        StatusCode::from_u16(inner.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    let mut requests = inner.requests.lock().expect("receiver lock");
    let id = map.get("webhook-id").cloned().unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let fail_first = inner.fail_first.lock().expect("receiver lock").clone();
    for (needle, n) in fail_first {
        let seen = requests
            .iter()
            .filter(|r| r.headers.get("webhook-id") == Some(&id))
            .count();
        if text.contains(&needle) && seen < n {
            status = StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let received = Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: map,
        body: body.to_vec(),
        at: Instant::now(),
        status: status.as_u16(),
    };
    requests.push(received);
    drop(requests);
    let answer = *inner.answer.lock().expect("receiver lock");
    answer_with(answer, status, uri.path())
}

fn answer_with(answer: Answer, status: StatusCode, path: &str) -> Response {
    match answer {
        Answer::Status => status.into_response(),
        Answer::NulBody => (StatusCode::OK, &b"ok\0\0\xff\xfe\x1b[31m\0done"[..]).into_response(),
        Answer::HugeBody => {
            (StatusCode::OK, b"\0\xffbig!!!".repeat((10 << 20) / 8)).into_response()
        }
        Answer::DripBody => {
            let drip = futures_util::stream::unfold(0u32, |sent| async move {
                if sent >= 600 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(b"d")),
                    sent + 1,
                ))
            });
            (StatusCode::OK, axum::body::Body::from_stream(drip)).into_response()
        }
        Answer::RedirectLoop => {
            (StatusCode::FOUND, [(header::LOCATION, path.to_string())]).into_response()
        }
    }
}

impl Receiver {
    /// Starts listening on 127.0.0.1 with a port the OS picks.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            answer: Mutex::new(Answer::Status),
            fail_first: Mutex::new(Vec::new()),
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

    /// Answers 500 to the first `n` requests of each webhook-id whose body contains `needle`.
    pub fn fail_first(&self, needle: &str, n: usize) {
        self.inner
            .fail_first
            .lock()
            .expect("receiver lock")
            .push((needle.to_string(), n));
    }

    /// How every following request is answered.
    pub fn set_answer(&self, answer: Answer) {
        *self.inner.answer.lock().expect("receiver lock") = answer;
    }

    /// Requests received per `webhook-id`.
    pub fn count_by_id(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.requests() {
            *counts
                .entry(r.header("webhook-id").unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
        counts
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
