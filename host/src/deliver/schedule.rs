//! Retry timing for deliveries, pure: which failures are retried, the delay before each retry
//! (schedule + jitter, stretched by `Retry-After`), and `Retry-After` header parsing.

use std::time::{Duration, SystemTime};

/// Delays before each retry; attempt N+1 waits `delays[N-1]` (plus jitter) after attempt N fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// Jitter adds up to this fraction of the scheduled delay, so endpoints that failed together
/// (an outage) are not retried in one synchronized burst.
const MAX_JITTER_FRACTION: f64 = 0.2;

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// The scheduled delays, without jitter.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The first attempt plus one retry per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// Delay before the next attempt after `attempts_made` failed attempts, or `None` when the
    /// schedule is exhausted and the delivery is dead. `jitter` in `[0, 1)` comes from the caller
    /// so tests are deterministic; a `retry_after` from the receiver can lengthen the wait, up
    /// to the schedule's longest delay so a hostile header cannot park a delivery for a year.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        // Nothing has failed yet: the first attempt is due now.
        let Some(index) = attempts_made.checked_sub(1) else {
            return Some(Duration::ZERO);
        };
        let scheduled = *self.delays.get(usize::try_from(index).ok()?)?;
        let jittered = scheduled.saturating_add(jitter_for(scheduled, jitter));
        let requested = retry_after.map_or(Duration::ZERO, |wait| wait.min(self.longest_delay()));
        Some(jittered.max(requested))
    }

    fn longest_delay(&self) -> Duration {
        self.delays.iter().copied().max().unwrap_or(Duration::ZERO)
    }
}

impl Default for RetrySchedule {
    /// The documented default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    fn default() -> Self {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        let secs = [
            5,
            5 * MINUTE,
            30 * MINUTE,
            2 * HOUR,
            5 * HOUR,
            10 * HOUR,
            10 * HOUR,
        ];
        Self::new(secs.into_iter().map(Duration::from_secs).collect())
    }
}

/// Statuses worth retrying: the receiver is overloaded, down or timed out (408, 429, 5xx).
/// Other 4xx mean the request itself was refused and would be refused again.
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (RFC 9110). A date in the past
/// means "now"; anything unparseable is ignored rather than trusted.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // All digits but too large for u64 is still "a very long time"; the schedule caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Up to `MAX_JITTER_FRACTION` of `delay`; a jitter outside `[0, 1)` (or NaN) is clamped so a
/// caller's bad random number can never panic or produce a negative wait.
fn jitter_for(delay: Duration, jitter: f64) -> Duration {
    let fraction = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::try_from_secs_f64(delay.as_secs_f64() * MAX_JITTER_FRACTION * fraction)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // Tests may panic (DESIGN §6).
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn schedule() -> RetrySchedule {
        RetrySchedule::new(vec![ms(200), ms(500), ms(1000)])
    }

    fn check(
        attempts_made: u32,
        retry_after: Option<Duration>,
        jitter: f64,
        expected: Option<u64>,
    ) {
        let actual = schedule().next_delay(attempts_made, retry_after, jitter);
        assert_eq!(
            actual,
            expected.map(ms),
            "attempts_made={attempts_made} retry_after={retry_after:?} jitter={jitter}"
        );
    }

    #[test]
    fn follows_the_schedule_then_gives_up() {
        check(0, None, 0.0, Some(0));
        check(1, None, 0.0, Some(200));
        check(2, None, 0.0, Some(500));
        check(3, None, 0.0, Some(1000));
        check(4, None, 0.0, None);
        check(u32::MAX, None, 0.0, None);
        assert_eq!(schedule().max_attempts(), 4);
        assert_eq!(RetrySchedule::new(vec![]).max_attempts(), 1);
        assert_eq!(RetrySchedule::new(vec![]).next_delay(1, None, 0.0), None);
    }

    #[test]
    fn jitter_adds_up_to_a_fifth() {
        check(1, None, 0.5, Some(220));
        check(2, None, 0.5, Some(550));
        check(3, None, 0.75, Some(1150));
        // Out-of-range jitter is clamped instead of trusted.
        check(1, None, -3.0, Some(200));
        check(1, None, 7.0, Some(240));
        check(1, None, f64::NAN, Some(200));
        check(1, None, f64::INFINITY, Some(200));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_capped() {
        check(1, Some(ms(50)), 0.0, Some(200));
        check(1, Some(ms(700)), 0.0, Some(700));
        check(1, Some(ms(700)), 0.5, Some(700));
        check(1, Some(Duration::from_secs(3600)), 0.0, Some(1000));
        check(3, Some(Duration::from_secs(3600)), 0.5, Some(1100));
        // An exhausted schedule stays exhausted whatever the receiver asks for.
        check(4, Some(ms(1)), 0.0, None);
    }

    #[test]
    fn default_schedule_is_the_documented_one() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_attempts(), 8);
        assert_eq!(
            schedule.next_delay(1, None, 0.0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            schedule.next_delay(7, None, 0.0),
            Some(Duration::from_secs(36_000))
        );
        assert_eq!(schedule.next_delay(8, None, 0.0), None);
    }

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(status_is_retryable(status), "{status}");
        }
        for status in [200, 204, 301, 302, 400, 401, 403, 404, 410, 413, 422, 600] {
            assert!(!status_is_retryable(status), "{status}");
        }
    }

    fn check_retry_after(value: &str, expected: Option<u64>) {
        // 2015-10-21 07:28:00 UTC, the date used in RFC 9110's examples.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let actual = parse_retry_after(value, now);
        assert_eq!(actual, expected.map(Duration::from_secs), "value {value:?}");
    }

    #[test]
    fn parses_retry_after_values() {
        check_retry_after("120", Some(120));
        check_retry_after(" 0 ", Some(0));
        check_retry_after("99999999999999999999999", Some(u64::MAX));
        check_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", Some(30));
        check_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", Some(0));
        check_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", Some(0));
        // The obsolete RFC 850 and asctime forms are still valid HTTP-dates.
        check_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", Some(60));
        check_retry_after("Wed Oct 21 07:29:00 2015", Some(60));
        check_retry_after("", None);
        check_retry_after("-5", None);
        check_retry_after("1.5", None);
        check_retry_after("soon", None);
        check_retry_after("2015-10-21T07:28:30Z", None);
    }
}
