//! How soon a block's 100 webhooks to one endpoint can arrive, measured apart from the host: the
//! floor under the fan-out part of the 1K latency goal (issue 6). Every 100 ms (one block at 1K
//! events/s) it sends a burst of 100 webhook-sized POSTs (1 KB, the four webhook headers) over
//! 32 keep-alive connections (`per_endpoint_concurrency`'s default) to the load harness's sink
//! running as its own process, and prints, over the bursts, the median time from the burst's
//! start to its 1st, 50th and 100th answer, and this process's CPU per POST. Three shapes:
//!
//! - `client`: the host's own send path — `WebhookClient` (hyper-util's pooled client, the
//!   address guard) and `sign::signature_header`, 32 tasks taking jobs from one queue, as a
//!   lane's workers do;
//! - `hyper`: a hyper HTTP/1 connection polled in the sending task, prebuilt headers;
//! - `raw`: the request's bytes written to a TCP socket and the answer read back, no HTTP
//!   library at all — what the kernel and the sink cost on their own.
//!
//! ```text
//! PIPELINE_LOAD_SINK_ONLY=39111 target/release/deps/load-<hash> &
//! cargo run --release -p pipeline-host --example fanout_floor   # PORT=39111 BURSTS=100
//! ```
//!
//! (The sink alone stops after 60 s: start it again for each run.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A measurement, not the host.
mod common;
use common::{body, cpu_ms};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use pipeline_host::deliver::client::{ClientSettings, WebhookClient};
use pipeline_host::deliver::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEBHOOKS: usize = 100;
const CONNECTIONS: usize = 32;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn id(n: usize) -> String {
    format!("msg_000000000010{n:020x}")
}

/// Microseconds from the burst's start to each answer, in the order they came.
type Answers = Arc<Mutex<Vec<f64>>>;

async fn client_burst(client: &WebhookClient, url: &str, start: Instant, answers: &Answers) {
    let queue = Arc::new(Mutex::new((0..WEBHOOKS).collect::<VecDeque<_>>()));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, queue, answers) = (
            client.clone(),
            url.to_owned(),
            queue.clone(),
            answers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = body();
            loop {
                let Some(n) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let (id, timestamp) = (id(n), 1_700_000_000);
                let signature = sign::signature_header(&[SECRET], &id, timestamp, &body).unwrap();
                let headers = [
                    ("webhook-id", id),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                    ("content-type", "application/json".to_string()),
                ];
                let response = client.post(&url, &headers, body.clone()).await.unwrap();
                assert_eq!(response.status, 200);
                let at = start.elapsed().as_secs_f64() * 1e6;
                answers.lock().unwrap().push(at);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One connection's share of a burst (`share` requests), the connection polled in this task.
async fn hyper_share(
    sender: &mut Sender,
    conn: &mut (impl std::future::Future<Output = hyper::Result<()>> + Unpin),
    addr: &str,
    share: usize,
    start: Instant,
    answers: &Answers,
) {
    for n in 0..share {
        let request = hyper::Request::post("/hook")
            .header("host", addr)
            .header("webhook-id", id(n))
            .header("webhook-timestamp", "1700000000")
            .header(
                "webhook-signature",
                "v1,abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq=",
            )
            .header("content-type", "application/json")
            .body(Full::new(body()))
            .unwrap();
        let work = async {
            let r = sender.send_request(request).await.unwrap();
            assert!(r.status().is_success());
            let _ = r.into_body().collect().await.unwrap();
        };
        tokio::select! {
            biased;
            _ = work => {}
            res = &mut *conn => { res.unwrap(); panic!("connection ended"); }
        }
        answers
            .lock()
            .unwrap()
            .push(start.elapsed().as_secs_f64() * 1e6);
    }
}

fn raw_request(addr: &str, n: usize) -> Vec<u8> {
    let body = body();
    let mut r = format!(
        "POST /hook HTTP/1.1\r\nhost: {addr}\r\nwebhook-id: {}\r\nwebhook-timestamp: 1700000000\r\n\
         webhook-signature: v1,abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq=\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        id(n),
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

/// Reads one answer with a body of `content-length` bytes.
async fn read_answer(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])
                .unwrap()
                .to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let length: usize = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                buf.drain(..end + 4 + length);
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the sink closed the connection");
        buf.extend_from_slice(&chunk[..read]);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(shape: &str, port: &str, bursts: usize) {
    let addr = format!("127.0.0.1:{port}");
    let url = format!("http://{addr}/hook");
    let settings = ClientSettings {
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        ..ClientSettings::default()
    };
    let client = WebhookClient::new(settings).unwrap();
    // Connections for the shapes that keep their own, opened before the first burst (the
    // client's pool opens its own in the warm-up bursts below).
    let mut hypers = Vec::new();
    let mut raws = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        match shape {
            "hyper" => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                        .await
                        .unwrap();
                hypers.push(Arc::new(tokio::sync::Mutex::new((sender, Box::pin(conn)))));
            }
            _ => raws.push(Arc::new(tokio::sync::Mutex::new((stream, Vec::new())))),
        }
    }
    let (mut first, mut middle, mut last) = (Vec::new(), Vec::new(), Vec::new());
    let cpu0 = cpu_ms();
    let warmup = 10;
    for burst in 0..bursts + warmup {
        if burst == warmup {
            first.clear();
            middle.clear();
            last.clear();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answers: Answers = Arc::default();
        let start = Instant::now();
        match shape {
            "client" => client_burst(&client, &url, start, &answers).await,
            "hyper" => {
                let mut tasks = Vec::new();
                for (i, connection) in hypers.iter().enumerate() {
                    let share = WEBHOOKS / CONNECTIONS + usize::from(i < WEBHOOKS % CONNECTIONS);
                    let (connection, answers, addr) =
                        (connection.clone(), answers.clone(), addr.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut guard = connection.lock().await;
                        let (sender, conn) = &mut *guard;
                        hyper_share(sender, conn, &addr, share, start, &answers).await;
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
            }
            _ => {
                let mut tasks = Vec::new();
                for (i, connection) in raws.iter().enumerate() {
                    let share = WEBHOOKS / CONNECTIONS + usize::from(i < WEBHOOKS % CONNECTIONS);
                    let (connection, answers, addr) =
                        (connection.clone(), answers.clone(), addr.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut guard = connection.lock().await;
                        let (stream, buf) = &mut *guard;
                        for n in 0..share {
                            stream.write_all(&raw_request(&addr, n)).await.unwrap();
                            read_answer(stream, buf).await;
                            let at = start.elapsed().as_secs_f64() * 1e6;
                            answers.lock().unwrap().push(at);
                        }
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
            }
        }
        let mut at = answers.lock().unwrap().clone();
        assert_eq!(at.len(), WEBHOOKS);
        at.sort_by(f64::total_cmp);
        first.push(at[0]);
        middle.push(at[WEBHOOKS / 2 - 1]);
        last.push(at[WEBHOOKS - 1]);
    }
    let cpu = cpu_ms() - cpu0;
    println!(
        "{{\"shape\":\"{shape}\",\"bursts\":{bursts},\"first_us\":{:.0},\"median_us\":{:.0},\"last_us\":{:.0},\"cpu_us_per_post\":{:.1}}}",
        median(first),
        median(middle),
        median(last),
        cpu * 1000.0 / ((bursts + warmup) * WEBHOOKS) as f64
    );
}

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "39111".to_owned());
    let bursts: usize = std::env::var("BURSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let shapes = std::env::var("SHAPES").unwrap_or_else(|_| "client,hyper,raw".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for shape in shapes.split(',') {
        rt.block_on(run(shape, &port, bursts));
    }
}
