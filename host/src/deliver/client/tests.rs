//! Test module: compiled only under #[cfg(test)], from its parent module.
//! Real-socket tests of the webhook client against receivers on loopback.
#![allow(clippy::unwrap_used, clippy::panic)] // Tests may panic (DESIGN §6).

use std::net::SocketAddr;

use super::*;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::post;
use tokio::net::TcpListener;

mod hostile;
mod vetting;

fn client_with(allowed: &[&str], request_timeout: Duration) -> WebhookClient {
    let allowed_cidrs = allowed.iter().map(|cidr| cidr.parse().unwrap()).collect();
    let settings = ClientSettings {
        allowed_cidrs,
        request_timeout,
        ..ClientSettings::default()
    };
    WebhookClient::new(settings).unwrap()
}

fn client(allowed: &[&str]) -> WebhookClient {
    client_with(allowed, Duration::from_secs(5))
}

/// A receiver on loopback: `/echo` answers with what it got, the others with canned replies.
async fn receiver() -> SocketAddr {
    let echo = |headers: axum::http::HeaderMap, body: Bytes| async move {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let user_agent = get("user-agent").unwrap_or_default();
        let webhook_id = get("webhook-id").unwrap_or_default();
        format!(
            "{user_agent}|{webhook_id}|{}",
            String::from_utf8_lossy(&body)
        )
    };
    let router = Router::new()
        .route("/echo", post(echo))
        .route(
            "/redirect",
            post(|| async { (StatusCode::FOUND, [(header::LOCATION, "/echo")]) }),
        )
        .route(
            "/busy",
            post(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "7")],
                    "slow down",
                )
            }),
        )
        .route("/big", post(|| async { "é".repeat(10_000) }))
        .route(
            "/auth",
            post(
                |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                    let get = |name: header::HeaderName| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned()
                    };
                    format!("{uri}|{}|{}", get(header::HOST), get(header::AUTHORIZATION))
                },
            ),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn check_url(allowed: &[&str], url: &str, expected: Result<(), &str>) {
    let actual = client(allowed)
        .check_url(url)
        .map(|_| ())
        .map_err(|error| error.code());
    assert_eq!(actual, expected, "allowed {allowed:?}, url {url}");
}

/// Address classes are covered in `address.rs`; this checks that every way of writing an IP
/// literal in a URL reaches the guard.
#[test]
fn internal_ip_literals_are_blocked_unless_allowed() {
    let internal = [
        "http://127.0.0.1:8080/",
        "https://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00::1]/",
        // Alternative spellings that the URL parser normalises to 127.0.0.1.
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
    ];
    for url in internal {
        check_url(&[], url, Err("blocked"));
    }
    check_url(&["127.0.0.0/8"], "http://0x7f.1:9/", Ok(()));
    check_url(&["127.0.0.0/8"], "http://[::ffff:127.0.0.1]/", Ok(()));
    check_url(&["127.0.0.0/8"], "http://[::1]/", Err("blocked"));
}

#[test]
fn public_destinations_and_names_pass_the_url_check() {
    let public = [
        "https://example.com/hook",
        "http://93.184.215.14/",
        "https://[2606:4700::1111]/",
        "http://172.32.0.1/",
        "http://100.128.0.1/",
        "https://localhost:8443/",
    ];
    for url in public {
        check_url(&[], url, Ok(()));
    }
}

#[test]
fn only_http_urls_with_a_host_are_accepted() {
    for url in [
        "ftp://example.com/",
        "file:///etc/passwd",
        "unix:/run/x.sock",
        "not a url",
        "http://",
    ] {
        check_url(&[], url, Err("invalid_url"));
    }
}

#[test]
fn blocked_message_names_the_address_and_reason() {
    let error = client(&[])
        .check_url("http://169.254.169.254/")
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("169.254.169.254") && message.contains("link-local"),
        "{message}"
    );
}

#[tokio::test]
async fn posts_and_captures_status_and_body() {
    let addr = receiver().await;
    let headers = [
        ("webhook-id", "msg_1".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    let response = client(&["127.0.0.0/8"])
        .post(
            &format!("http://{addr}/echo"),
            &headers,
            Bytes::from_static(b"{\"a\":1}"),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, format!("{USER_AGENT}|msg_1|{{\"a\":1}}"));
    assert_eq!(response.retry_after, None);
    assert!(response.latency < Duration::from_secs(5));
}

#[tokio::test]
async fn credentials_in_the_url_go_as_basic_auth_and_nowhere_else() {
    let addr = receiver().await;
    let client = client(&["127.0.0.0/8"]);
    let with = format!("http://hook%40user:p%3Ass@{addr}/auth?x=1#part");
    for _ in 0..2 {
        // The second time from the client's remembered target.
        let response = client.post(&with, &[], Bytes::new()).await.unwrap();
        // base64("hook@user:p:ss"), percent-decoded as reqwest and curl decode them.
        assert_eq!(
            response.body,
            format!("/auth?x=1|{addr}|Basic aG9va0B1c2VyOnA6c3M=")
        );
    }
    let without = client
        .post(&format!("http://{addr}/auth"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(without.body, format!("/auth|{addr}|-"));
}

#[tokio::test]
async fn an_https_url_is_sent_over_tls() {
    // The receiver speaks plain HTTP, so the TLS handshake fails: a connection error, not a
    // refused URL and not a request sent in the clear.
    let addr = receiver().await;
    let error = client(&["127.0.0.0/8"])
        .post(&format!("https://{addr}/echo"), &[], Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Connect(_)), "{error:?}");
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let addr = receiver().await;
    let response = client(&["127.0.0.0/8"])
        .post(&format!("http://{addr}/redirect"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.status, 302);
}

#[tokio::test]
async fn retry_after_is_parsed_and_the_body_kept() {
    let addr = receiver().await;
    let response = client(&["127.0.0.0/8"])
        .post(&format!("http://{addr}/busy"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.status, 429);
    assert_eq!(response.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(response.body, "slow down");
}

#[tokio::test]
async fn response_body_is_cut_at_the_limit() {
    let addr = receiver().await;
    let response = client(&["127.0.0.0/8"])
        .post(&format!("http://{addr}/big"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    // 4096 bytes of two-byte characters: 2048 whole ones, no split character.
    assert_eq!(response.body, "é".repeat(2048));
}

#[tokio::test]
async fn loopback_is_blocked_by_literal_and_by_name_without_allow_list() {
    let addr = receiver().await;
    let blocked = client(&[]);
    let by_literal = blocked
        .post(&format!("http://{addr}/echo"), &[], Bytes::new())
        .await;
    assert!(
        matches!(by_literal, Err(DeliveryError::Blocked(_))),
        "{by_literal:?}"
    );
    // A name passes the URL check and is refused at resolution, where rebinding cannot help.
    let url = format!("http://localhost:{}/echo", addr.port());
    assert!(blocked.check_url(&url).is_ok());
    let error = blocked.post(&url, &[], Bytes::new()).await.unwrap_err();
    assert_eq!(error.code(), "blocked", "{error}");
    assert!(
        error
            .to_string()
            .contains("localhost resolves only to refused"),
        "{error}"
    );
    assert!(!error.is_retryable());
    // Allow-listed, the same name reaches the receiver (any ::1 answer is dropped).
    let allowed = client(&["127.0.0.0/8"])
        .post(&url, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(allowed.status, 200);
}

/// The client keeps endpoint URLs parsed after their first check; that must not let a refused
/// literal through later, nor skip the check of a name's addresses at each connection.
#[tokio::test]
async fn a_remembered_url_is_still_refused_on_every_attempt() {
    let addr = receiver().await;
    let blocked = client(&[]);
    let literal = format!("http://{addr}/echo");
    let by_name = format!("http://localhost:{}/echo", addr.port());
    for attempt in 0..3 {
        for url in [&literal, &by_name] {
            let error = blocked.post(url, &[], Bytes::new()).await.unwrap_err();
            assert_eq!(
                error.code(),
                "blocked",
                "attempt {attempt} to {url}: {error}"
            );
        }
    }
    let allowed = client(&["127.0.0.0/8"]);
    for _ in 0..2 {
        assert_eq!(
            allowed
                .post(&by_name, &[], Bytes::new())
                .await
                .unwrap()
                .status,
            200
        );
    }
    let error = allowed
        .post("ftp://example.com/", &[], Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid_url");
}

#[tokio::test]
async fn metadata_address_is_blocked_before_any_connection() {
    let error = client(&[])
        .post("http://169.254.169.254/", &[], Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "blocked");
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold connections without ever answering.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = client_with(&["127.0.0.0/8"], Duration::from_millis(200));
    let error = client
        .post(&format!("http://{addr}/"), &[], Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(error, DeliveryError::Timeout);
    assert!(error.is_retryable());
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = client(&["127.0.0.0/8"])
        .post(&format!("http://{addr}/"), &[], Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Connect(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn invalid_header_is_refused_before_sending() {
    let error = client(&[])
        .post(
            "http://example.com/",
            &[("bad header", String::new())],
            Bytes::new(),
        )
        .await;
    assert!(matches!(error, Err(DeliveryError::Other(_))), "{error:?}");
}

#[test]
fn error_codes_and_retryability() {
    let cases = [
        (DeliveryError::Blocked(String::new()), "blocked", false),
        (
            DeliveryError::InvalidUrl(String::new()),
            "invalid_url",
            false,
        ),
        (DeliveryError::Connect(String::new()), "connect", true),
        (DeliveryError::Timeout, "timeout", true),
        (DeliveryError::Other(String::new()), "other", true),
    ];
    for (error, code, retryable) in cases {
        assert_eq!((error.code(), error.is_retryable()), (code, retryable));
    }
}
