//! The admin port under a slow-loris flood: 2,000 connections that send part of a request's
//! headers, or nothing, and hold on. A normal client is still answered, and every idle or
//! half-sent connection is closed by the server after the header timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::ServerLimits;

const FLOOD: usize = 2_000;
/// Bounds the waits of this test; the server's own timeouts are far shorter.
const PATIENCE: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection; `None` if it is still open after `PATIENCE`.
async fn until_closed(mut stream: TcpStream) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await {
        // EOF, or reset by the server: closed either way.
        Ok(_) => Some(answer),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_flood_does_not_starve_clients_and_is_closed() {
    // Both ends of every connection are in this process.
    let open_files = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        open_files >= 2 * FLOOD as u64 + 512,
        "the open-file limit ({open_files}) is too low for this test"
    );
    let h = harness().await;
    let mut state = h.state.clone();
    state.limits = ServerLimits {
        max_connections: 1024,
        header_timeout_ms: 1_000,
        body_timeout_ms: 1_000,
        ..ServerLimits::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run(listener, state, shutdown.clone()));

    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
                .await
                .unwrap();
        }
        flood.push(stream);
    }

    // A normal client, behind the flood (it waits in the backlog while the server is full).
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(client)
        .await
        .expect("the normal client got no answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A kept-alive connection that goes idle after its request is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(idle)
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));

    let waits = flood.into_iter().map(|s| tokio::spawn(until_closed(s)));
    let mut still_open = 0;
    for wait in waits {
        if wait.await.unwrap().is_none() {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "slow-loris connections still open after {PATIENCE:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}
