//! Receivers that answer with bodies meant to hurt: NUL bytes and invalid UTF-8, an endless body,
//! a body that drips. The client keeps a bounded, printable prefix and its time bounded.

use std::convert::Infallible;

use super::*;
use axum::body::Body;
use futures_util::stream;

/// Serves `body` for every request (whatever the path).
async fn serve(body: fn() -> Body) -> SocketAddr {
    let router = Router::new().fallback(move || async move { body() });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn client_with_body_timeout(body_timeout: Duration) -> WebhookClient {
    let settings = ClientSettings {
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        request_timeout: Duration::from_secs(20),
        body_timeout,
        ..ClientSettings::default()
    };
    WebhookClient::new(settings).unwrap()
}

async fn post(addr: SocketAddr, body_timeout: Duration) -> WebhookResponse {
    client_with_body_timeout(body_timeout)
        .post(&format!("http://{addr}/hook"), &[], Bytes::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn nul_bytes_and_invalid_utf8_are_escaped() {
    let addr = serve(|| Body::from(&b"ok\0\0\xff\x1b!"[..])).await;
    let response = post(addr, Duration::from_secs(2)).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok\\u0000\\u0000\u{fffd}\\u001b!");
}

#[tokio::test]
async fn an_endless_body_is_read_up_to_the_limit() {
    let addr = serve(|| {
        let chunk = Bytes::from(vec![0u8; 64 << 10]);
        Body::from_stream(stream::repeat(Ok::<_, Infallible>(chunk)))
    })
    .await;
    let response = post(addr, Duration::from_secs(10)).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "\\u0000".repeat(4096 / 6));
}

#[tokio::test]
async fn a_dripping_body_is_cut_at_the_body_timeout() {
    // One byte every 50 ms: 4 KiB would take over 3 minutes, far past the request timeout.
    let addr = serve(|| {
        let drip = stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), ()))
        });
        Body::from_stream(drip)
    })
    .await;
    let response = post(addr, Duration::from_millis(300)).await;
    assert_eq!(response.status, 200);
    assert!(
        response.body.ends_with("…[body read stopped after 300 ms]"),
        "{}",
        response.body
    );
    assert!(response.body.starts_with('x'), "{}", response.body);
}
