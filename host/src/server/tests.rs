//! Test module: compiled only under #[cfg(test)], from its parent module.
//! The server's time bounds on real sockets: a body that stalls, a handler that overruns, and an
//! idle connection to the metrics server.

use axum::body::Bytes;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::metrics::Metrics;

const PATIENCE: Duration = Duration::from_secs(20);

fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 8,
        header_timeout_ms: 500,
        body_timeout_ms: 300,
        request_timeout_ms: 1_000,
    }
}

async fn start(router: Router) -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move { serve("test", listener, router, &limits(), token).await });
    (addr, shutdown)
}

/// Sends `request` and reads the whole answer until the server closes the connection.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_handler_past_the_request_timeout_is_answered_503_in_the_api_shape() {
    let slow = || async {
        tokio::time::sleep(PATIENCE).await;
        "late"
    };
    let (addr, _shutdown) = start(Router::new().route("/slow", get(slow))).await;
    let answer = exchange(
        addr,
        b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
}

#[tokio::test]
async fn a_stalled_body_fails_the_request_at_the_body_timeout() {
    let echo = |body: Bytes| async move { format!("{} bytes", body.len()) };
    let (addr, _shutdown) = start(Router::new().route("/echo", post(echo))).await;
    // Announces 100 bytes, sends 5 and stalls (the connection stays open on the client side).
    let answer = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    assert!(
        !answer.contains("bytes"),
        "the handler got a body: {answer}"
    );
}

#[tokio::test]
async fn the_metrics_server_closes_idle_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new().unwrap();
    let server = tokio::spawn(crate::metrics::run(
        listener,
        metrics,
        limits(),
        shutdown.clone(),
    ));
    // One request kept alive, then nothing: answered, then closed.
    let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Nothing at all: closed.
    assert_eq!(exchange(addr, b"").await, "");
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}
