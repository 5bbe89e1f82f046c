//! CPU per webhook-sized POST for three HTTP client shapes, to choose the webhook client by:
//! reqwest (what it used), hyper-util's pooled client (what it uses now) and a hyper HTTP/1
//! connection driven in the sending task (no pool). Prints µs of this process's CPU per request
//! and requests/s, three rounds. The receiver is the load harness's sink, as its own process:
//!
//! ```text
//! PIPELINE_LOAD_SINK_ONLY=39111 target/release/deps/load-<hash> &
//! cargo run --release -p pipeline-host --example client_cost   # PORT=39111 N=20000 C=32
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A measurement, not the host.
mod common;
use bytes::Bytes;
use common::{body, cpu_ms};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Instant;

fn headers() -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", "d_0000000000000001234_abcdef".into()),
        ("webhook-timestamp", "1700000000".into()),
        (
            "webhook-signature",
            "v1,abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq=".into(),
        ),
        ("content-type", "application/json".into()),
    ]
}

async fn reqwest_variant(url: String, n: usize, c: usize) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let per = n / c;
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let mut map = reqwest::header::HeaderMap::new();
                for (k, v) in headers() {
                    map.append(
                        reqwest::header::HeaderName::from_static(k),
                        v.parse().unwrap(),
                    );
                }
                let mut r = client
                    .post(&url)
                    .headers(map)
                    .body(body())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                while r.chunk().await.unwrap().is_some() {}
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn legacy_variant(url: String, n: usize, c: usize) {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri: hyper::Uri = url.parse().unwrap();
    let per = n / c;
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, uri) = (client.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let mut b = hyper::Request::post(uri.clone());
                for (k, v) in headers() {
                    b = b.header(k, v);
                }
                let r = client
                    .request(b.body(Full::new(body())).unwrap())
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                let _ = r.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn intask_variant(addr: String, n: usize, c: usize) {
    let per = n / c;
    let mut tasks = Vec::new();
    for _ in 0..c {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await
                    .unwrap();
            let mut conn = std::pin::pin!(conn);
            for _ in 0..per {
                let mut b = hyper::Request::post("/hook").header("host", addr.as_str());
                for (k, v) in headers() {
                    b = b.header(k, v);
                }
                let req = b.body(Full::new(body())).unwrap();
                let work = async {
                    let r = sender.send_request(req).await.unwrap();
                    assert!(r.status().is_success());
                    let _ = r.into_body().collect().await.unwrap();
                };
                let mut work = std::pin::pin!(work);
                // The connection is polled by this task while the request is in flight.
                tokio::select! {
                    biased;
                    _ = &mut work => {}
                    res = &mut conn => { res.unwrap(); panic!("conn ended"); }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "39111".to_owned());
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20000);
    let c: usize = std::env::var("C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..3 {
        for v in ["reqwest", "legacy", "intask"] {
            let (cpu0, t0) = (cpu_ms(), Instant::now());
            let url = format!("http://127.0.0.1:{port}/hook");
            match v {
                "reqwest" => rt.block_on(reqwest_variant(url, n, c)),
                "legacy" => rt.block_on(legacy_variant(url, n, c)),
                _ => rt.block_on(intask_variant(format!("127.0.0.1:{port}"), n, c)),
            }
            let (cpu, wall) = (cpu_ms() - cpu0, t0.elapsed().as_secs_f64());
            println!(
                "round {round} {v:8} {:.1} us CPU/request, {:.0} req/s",
                cpu * 1000.0 / n as f64,
                n as f64 / wall
            );
        }
    }
}
