//! `pipeline listen`: a local webhook receiver for integrators. It verifies each request's Standard
//! Webhooks signature with the official `standardwebhooks` crate (an implementation independent of
//! the host's signer), prints the event readably, answers 2xx, and can forward what it verified.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use standardwebhooks::{Webhook, WebhookError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a forward target gets to answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// What the receiver checks and where it sends what it verified.
pub struct ListenOptions {
    /// `whsec_…` secrets; a request verifies when any of them signed it (as during a rotation).
    pub secrets: Vec<String>,
    /// Re-POST each verified webhook (body and `webhook-*` headers) here.
    pub forward: Option<url::Url>,
}

struct Receiver {
    verifiers: Vec<Webhook>,
    forward: Option<(url::Url, reqwest::Client)>,
}

/// Checks the options; a malformed secret is refused before anything listens.
pub fn receiver(options: ListenOptions) -> anyhow::Result<Router> {
    anyhow::ensure!(
        !options.secrets.is_empty(),
        "give the endpoint's secret with --secret whsec_…"
    );
    let verifiers = options
        .secrets
        .iter()
        .map(|secret| {
            anyhow::ensure!(
                secret.starts_with("whsec_"),
                "a secret starts with whsec_ (got {:?}…)",
                secret.chars().take(6).collect::<String>()
            );
            Webhook::new(secret)
                .map_err(|e| anyhow::anyhow!("the secret is not whsec_ + base64: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let forward = match options.forward {
        Some(url) => Some((
            url,
            reqwest::Client::builder()
                .timeout(FORWARD_TIMEOUT)
                .build()?,
        )),
        None => None,
    };
    let state = Arc::new(Receiver { verifiers, forward });
    Ok(Router::new().fallback(receive).with_state(state))
}

/// Serves the receiver until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(no webhook-id)")
        .to_string();
    if let Err(reason) = verify(&receiver.verifiers, &body, &headers) {
        print_line(&format!("rejected  {id}: {reason}"));
        return (
            StatusCode::UNAUTHORIZED,
            format!("signature rejected: {reason}\n"),
        );
    }
    print_line(&format!("verified  {}", describe(&body)));
    match &receiver.forward {
        None => (StatusCode::OK, "ok\n".into()),
        Some((url, client)) => forward(client, url, &headers, body).await,
    }
}

/// Verifies against every secret; the reason names what is wrong in words an integrator can act on.
fn verify(verifiers: &[Webhook], body: &[u8], headers: &HeaderMap) -> Result<(), String> {
    let mut first_error = None;
    for verifier in verifiers {
        match verifier.verify(body, headers) {
            Ok(()) => return Ok(()),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error
        .map(explain)
        .unwrap_or_else(|| "no secret configured".into()))
}

pub fn explain(error: WebhookError) -> String {
    match error {
        WebhookError::MissingHeader(name) => format!("the {name} header is missing"),
        WebhookError::InvalidHeader(name) => format!("the {name} header is malformed"),
        WebhookError::InvalidTimestamp => "webhook-timestamp is not a Unix time in seconds".into(),
        WebhookError::TimestampTooOldError => {
            "webhook-timestamp is more than 5 minutes old (a replay, or this clock is behind)".into()
        }
        WebhookError::FutureTimestampError => {
            "webhook-timestamp is more than 5 minutes ahead (this clock is behind the sender's)".into()
        }
        WebhookError::InvalidSignature => "no v1 signature matches: the body, webhook-id or webhook-timestamp was changed, or the secret is not this endpoint's".into(),
        WebhookError::InvalidPayload => "the body is not UTF-8 text".into(),
        WebhookError::InvalidSecret(e) => format!("the secret is not base64: {e}"),
    }
}

/// One line: type, chain, block, log index, contract, subscription and the plugin's `data`.
pub fn describe(body: &[u8]) -> String {
    let Ok(event) = serde_json::from_slice::<Value>(body) else {
        return format!("(body is not JSON: {} bytes)", body.len());
    };
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let quantity = |v: &Value| {
        v.as_str()
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .map(|n| n.to_string())
            .unwrap_or_else(|| text(v))
    };
    if let Some(events) = event["events"].as_array() {
        return format!(
            "{}  chain {}  {} events  {}",
            text(&event["type"]),
            event["chain_id"],
            events.len(),
            text(&event["subscription_id"])
        );
    }
    let log = &event["log"];
    format!(
        "{}  chain {}  block {}  log {}  {}  {}  data {}",
        text(&event["type"]),
        event["chain_id"],
        quantity(&log["blockNumber"]),
        quantity(&log["logIndex"]),
        text(&log["address"]),
        text(&event["subscription_id"]),
        event["data"]
    )
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the user piped into `head`) must not fail deliveries.
    let _ = writeln!(out, "{line}");
}

async fn forward(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut request = client.post(url.clone()).body(body);
    for (name, value) in headers {
        if name.as_str().starts_with("webhook-") || name == "content-type" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    match request.send().await {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            print_line(&format!("forwarded to {url}: {status}"));
            (status, format!("forwarded: {status}\n"))
        }
        Err(error) => {
            print_line(&format!("forward to {url} failed: {error}"));
            (
                StatusCode::BAD_GATEWAY,
                format!("forward failed: {error}\n"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn signed(body: &str) -> HeaderMap {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = Webhook::new(SECRET)
            .unwrap()
            .sign("msg_1", now, body.as_bytes())
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn verifies_with_any_secret_and_names_the_failure() {
        let body = r#"{"type":"log"}"#;
        let other = Webhook::new("whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0").unwrap();
        let right = Webhook::new(SECRET).unwrap();
        assert_eq!(
            verify(&[other, right], body.as_bytes(), &signed(body)),
            Ok(())
        );
        let only_right = [Webhook::new(SECRET).unwrap()];
        let tampered =
            verify(&only_right, br#"{"type":"log.removed"}"#, &signed(body)).unwrap_err();
        assert!(tampered.contains("body"), "{tampered}");
        let mut missing = signed(body);
        missing.remove("webhook-signature");
        let reason = verify(&only_right, body.as_bytes(), &missing).unwrap_err();
        assert!(reason.contains("signature header is missing"), "{reason}");
    }

    #[test]
    fn describes_an_event_readably() {
        let body = r#"{"type":"log","subscription_id":"sub_1","chain_id":1,"log":{"address":"0xab","blockNumber":"0x10","logIndex":"0x2"},"data":{"value":"5"}}"#;
        assert_eq!(
            describe(body.as_bytes()),
            r#"log  chain 1  block 16  log 2  0xab  sub_1  data {"value":"5"}"#
        );
        assert!(describe(b"nope").contains("not JSON"));
    }

    #[test]
    fn refuses_a_malformed_secret_before_listening() {
        let options = |secret: &str| ListenOptions {
            secrets: vec![secret.into()],
            forward: None,
        };
        assert!(receiver(options("hunter2")).is_err());
        assert!(receiver(options("whsec_!!!")).is_err());
        assert!(receiver(options(SECRET)).is_ok());
    }
}
