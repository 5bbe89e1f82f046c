//! One delivery attempt: sign, POST, and turn the answer into the delivery's next state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::client::{DeliveryError, WebhookClient, WebhookResponse};
use super::schedule::{RetrySchedule, status_is_retryable};
use super::sign;
use crate::outbox::DeliveryJob;
use crate::store::{AttemptResult, DeliveryStatus, EndpointRow, now_ms};

/// How an attempt ended, for metrics, the breaker and the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Failed, will be retried (counts against the endpoint's breaker).
    Retry,
    /// Failed for good: exhausted, refused destination, or a non-retryable status.
    Dead,
    /// 410 Gone: the receiver asked to be disabled.
    Gone,
}

pub struct Attempted {
    pub result: AttemptResult,
    pub verdict: Verdict,
    pub answered: bool,
}

/// Sends `job` to `endpoint` and decides what happens next.
pub async fn attempt(
    client: &WebhookClient,
    schedule: &RetrySchedule,
    endpoint: &EndpointRow,
    job: &DeliveryJob,
) -> Attempted {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let signature = match sign::signature_header(
        &endpoint.signing_secrets(now_ms()),
        &job.id,
        timestamp,
        job.body.as_bytes(),
    ) {
        Ok(signature) => signature,
        Err(error) => return dead(job, format!("cannot sign: {error}")),
    };
    let headers = [
        ("webhook-id", job.id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
        ("content-type", "application/json".to_string()),
    ];
    let body = Bytes::copy_from_slice(job.body.as_bytes());
    let started = std::time::Instant::now();
    let outcome = client.post(&endpoint.url, &headers, body).await;
    judge(
        schedule,
        job,
        outcome,
        started.elapsed(),
        rand::random::<f64>(),
        now_ms(),
    )
}

/// The pure part: an HTTP outcome to the delivery's next state.
pub fn judge(
    schedule: &RetrySchedule,
    job: &DeliveryJob,
    outcome: Result<WebhookResponse, DeliveryError>,
    elapsed: Duration,
    jitter: f64,
    now: i64,
) -> Attempted {
    let attempts = job.attempts + 1;
    let (verdict, status_code, error, response_body, retry_after, latency) = match outcome {
        Ok(r) if (200..300).contains(&r.status) => (
            Verdict::Delivered,
            Some(r.status),
            None,
            Some(r.body),
            None,
            r.latency,
        ),
        Ok(r) if r.status == 410 => (
            Verdict::Gone,
            Some(r.status),
            Some("HTTP 410 Gone: endpoint disabled".to_string()),
            Some(r.body),
            None,
            r.latency,
        ),
        Ok(r) => {
            let verdict = if status_is_retryable(r.status) {
                Verdict::Retry
            } else {
                Verdict::Dead
            };
            (
                verdict,
                Some(r.status),
                Some(status_error(r.status)),
                Some(r.body),
                r.retry_after,
                r.latency,
            )
        }
        Err(e) => {
            let verdict = if e.is_retryable() {
                Verdict::Retry
            } else {
                Verdict::Dead
            };
            (verdict, None, Some(e.to_string()), None, None, elapsed)
        }
    };
    let answered = status_code.is_some();
    let (status, verdict, next_attempt_at) = match verdict {
        Verdict::Delivered => (DeliveryStatus::Delivered, verdict, now),
        Verdict::Retry => match schedule.next_delay(attempts as u32, retry_after, jitter) {
            Some(delay) => (
                DeliveryStatus::Retrying,
                verdict,
                now + delay.as_millis() as i64,
            ),
            None => (DeliveryStatus::Dead, Verdict::Dead, now),
        },
        Verdict::Dead | Verdict::Gone => (DeliveryStatus::Dead, verdict, now),
    };
    let result = AttemptResult {
        id: job.id.clone(),
        seq: job.seq,
        status,
        attempts,
        next_attempt_at,
        status_code: status_code.map(i64::from),
        latency_ms: latency.as_millis() as i64,
        error,
        response_body,
        at: now,
        attempted: true,
        lease: job.lease_until,
        ordered: job.ordered,
        pending_seq: job.pending_seq.clone(),
    };
    Attempted {
        result,
        verdict,
        answered,
    }
}

/// The error recorded for a failed status. A redirect is a failure: following it could lead
/// anywhere, including inside the network, so the receiver must be configured with the final URL.
fn status_error(status: u16) -> String {
    if (300..400).contains(&status) {
        format!("HTTP {status}: redirects are not followed; use the final URL")
    } else {
        format!("HTTP {status}")
    }
}

/// A delivery that cannot be attempted at all (no endpoint, disabled endpoint, bad secret).
pub fn dead(job: &DeliveryJob, error: String) -> Attempted {
    let now = now_ms();
    Attempted {
        result: AttemptResult {
            id: job.id.clone(),
            seq: job.seq,
            status: DeliveryStatus::Dead,
            attempts: job.attempts,
            next_attempt_at: now,
            status_code: None,
            latency_ms: 0,
            error: Some(error),
            response_body: None,
            at: now,
            attempted: false,
            lease: job.lease_until,
            ordered: job.ordered,
            pending_seq: job.pending_seq.clone(),
        },
        verdict: Verdict::Dead,
        answered: false,
    }
}

/// Postponed without an attempt (breaker open, queue full): not counted against the schedule.
pub fn postponed(job: &DeliveryJob, until_ms: i64, reason: &str) -> AttemptResult {
    AttemptResult {
        id: job.id.clone(),
        seq: job.seq,
        status: if job.attempts == 0 {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Retrying
        },
        attempts: job.attempts,
        next_attempt_at: until_ms,
        status_code: None,
        latency_ms: 0,
        error: Some(reason.to_string()),
        response_body: None,
        at: now_ms(),
        attempted: false,
        lease: job.lease_until,
        ordered: job.ordered,
        pending_seq: job.pending_seq.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn job(attempts: i64) -> DeliveryJob {
        DeliveryJob {
            id: "msg_1".into(),
            seq: 1,
            endpoint_id: "ep".into(),
            body: Arc::from("{}"),
            attempts,
            received_at: None,
            lease_until: i64::MAX,
            ordered: false,
            pending_seq: None,
            room: Default::default(),
        }
    }

    fn response(status: u16) -> Result<WebhookResponse, DeliveryError> {
        Ok(WebhookResponse {
            status,
            body: "b".into(),
            retry_after: None,
            latency: Duration::from_millis(3),
        })
    }

    fn check(
        attempts: i64,
        outcome: Result<WebhookResponse, DeliveryError>,
        status: &str,
        verdict: Verdict,
    ) {
        let schedule = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(2)]);
        let a = judge(&schedule, &job(attempts), outcome, Duration::ZERO, 0.0, NOW);
        assert_eq!((a.result.status.as_str(), a.verdict), (status, verdict));
        assert_eq!(a.result.attempts, attempts + 1);
    }

    #[test]
    fn outcomes_map_to_the_delivery_policy() {
        check(0, response(200), "delivered", Verdict::Delivered);
        check(0, response(204), "delivered", Verdict::Delivered);
        check(0, response(500), "retrying", Verdict::Retry);
        check(0, response(429), "retrying", Verdict::Retry);
        check(0, response(408), "retrying", Verdict::Retry);
        check(0, response(400), "dead", Verdict::Dead);
        check(0, response(302), "dead", Verdict::Dead);
        let schedule = RetrySchedule::new(vec![Duration::from_secs(1)]);
        let redirect = judge(&schedule, &job(0), response(307), Duration::ZERO, 0.0, NOW);
        assert_eq!(redirect.result.status_code, Some(307));
        assert!(
            redirect
                .result
                .error
                .unwrap()
                .contains("redirects are not followed")
        );
        check(0, response(410), "dead", Verdict::Gone);
        check(0, Err(DeliveryError::Timeout), "retrying", Verdict::Retry);
        check(
            0,
            Err(DeliveryError::Blocked("10.0.0.1".into())),
            "dead",
            Verdict::Dead,
        );
        check(1, response(503), "retrying", Verdict::Retry);
        // Two delays in the schedule: the third failure is final.
        check(2, response(503), "dead", Verdict::Dead);
    }

    /// The judging clock: `judge` reads no clock of its own.
    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn retries_are_scheduled_from_the_given_now() {
        let schedule = RetrySchedule::new(vec![Duration::from_secs(5)]);
        let a = judge(&schedule, &job(0), response(503), Duration::ZERO, 0.0, NOW);
        assert_eq!(
            a.result.next_attempt_at,
            NOW + 5_000,
            "no jitter: exactly the delay"
        );
        assert_eq!(a.result.at, NOW);
        let delivered = judge(&schedule, &job(0), response(200), Duration::ZERO, 0.0, NOW);
        assert_eq!(delivered.result.at, NOW);
    }
}
