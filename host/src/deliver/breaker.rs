//! Per-endpoint circuit breaker, pure: time comes in as `Instant` arguments, so a failing
//! endpoint is rested without any sleeping here and tests need no clock.

use std::time::{Duration, Instant};

/// When the breaker trips and how long it rests an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long the first trip keeps the breaker open; each further trip without a success
    /// in between doubles it.
    pub open_for: Duration,
    /// Ceiling for the doubled open time.
    pub max_open_for: Duration,
    /// How long a probe may stay unanswered before another is let through, so a lost
    /// outcome cannot wedge the endpoint in half-open forever. Above the request timeout.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(600),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// The breaker's answer to "may I send to this endpoint now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The single trial request after a rest; its outcome decides between closed and open.
    Probe,
    /// Try again at `retry_at`; the delivery has not been attempted and must not count as one.
    Rejected {
        retry_at: Instant,
    },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// Trips since the last success; drives the doubling of the open time.
    consecutive_trips: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_deadline: Instant },
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed {
                consecutive_failures: 0,
            },
            consecutive_trips: 0,
        }
    }

    pub fn allow(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until }
            | State::HalfOpen {
                probe_deadline: until,
            } if now < until => Admission::Rejected { retry_at: until },
            State::Open { .. } | State::HalfOpen { .. } => {
                let probe_deadline = add_or_now(now, self.config.probe_timeout);
                self.state = State::HalfOpen { probe_deadline };
                Admission::Probe
            }
        }
    }

    /// Any 2xx proves the endpoint works again, including a late answer to a request sent
    /// before the trip.
    pub fn on_success(&mut self) {
        self.state = State::Closed {
            consecutive_failures: 0,
        };
        self.consecutive_trips = 0;
    }

    pub fn on_failure(&mut self, now: Instant) {
        match self.state {
            State::Closed {
                consecutive_failures,
            } => {
                let consecutive_failures = consecutive_failures.saturating_add(1);
                if consecutive_failures >= self.config.failure_threshold.max(1) {
                    self.trip(now);
                } else {
                    self.state = State::Closed {
                        consecutive_failures,
                    };
                }
            }
            State::HalfOpen { .. } => self.trip(now),
            // A late failure of a request sent before the trip says nothing new; extending the
            // rest for it would punish the endpoint twice for one outage.
            State::Open { .. } => {}
        }
    }

    /// Whether this breaker is as a new one would be (closed, no failure or trip to remember):
    /// then it can be forgotten and created again on the endpoint's next attempt.
    pub fn is_at_rest(&self) -> bool {
        matches!(
            self.state,
            State::Closed {
                consecutive_failures: 0
            }
        ) && self.consecutive_trips == 0
    }

    /// Whether requests are being turned away right now (half-open is not open: a probe is due).
    pub fn is_open(&self, now: Instant) -> bool {
        matches!(self.state, State::Open { until } if now < until)
    }

    /// Whether the endpoint counts as failing at `now`: resting (open) or with its probe still
    /// out (half-open before the probe's deadline). What the open-breaker gauge counts, so that
    /// an endpoint whose probes keep timing out stays counted through each probe, and one that
    /// gets no more traffic (deleted, say) stops being counted once its rest or probe is over.
    pub fn is_failing(&self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen { probe_deadline } => now < probe_deadline,
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    fn trip(&mut self, now: Instant) {
        let doubling = 2u32.saturating_pow(self.consecutive_trips);
        let open_for = self
            .config
            .open_for
            .saturating_mul(doubling)
            .min(self.config.max_open_for);
        self.state = State::Open {
            until: add_or_now(now, open_for),
        };
        self.consecutive_trips = self.consecutive_trips.saturating_add(1);
    }
}

/// `now + duration`, or `now` in the (absurd-config) case where that overflows the clock, so
/// the breaker degrades to letting traffic through instead of panicking.
fn add_or_now(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration).unwrap_or(now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // Tests may panic (DESIGN §6).
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn at_rest_only_when_nothing_is_left_to_remember() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        assert!(b.is_at_rest());
        b.on_failure(t0);
        assert!(!b.is_at_rest(), "a failure counts toward the next trip");
        b.on_success();
        assert!(b.is_at_rest());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        assert!(b.is_open(t0));
        // Half-open after the rest, then a failed probe: open again, for twice as long.
        assert_eq!(b.allow(t0 + secs(31)), Admission::Probe);
        b.on_failure(t0 + secs(31));
        assert!(!b.is_at_rest());
        assert_eq!(b.allow(t0 + secs(92)), Admission::Probe);
        assert!(!b.is_at_rest(), "half-open, with trips to remember");
        b.on_success();
        assert!(b.is_at_rest());
    }

    #[test]
    fn failing_while_resting_and_while_its_probe_is_out() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        b.on_failure(t0);
        assert!(!b.is_failing(t0), "closed, below the threshold");
        let mut b = tripped(t0);
        assert!(b.is_failing(t0 + secs(29)));
        assert!(!b.is_failing(t0 + secs(31)), "rest over, no attempt since");
        assert_eq!(b.allow(t0 + secs(31)), Admission::Probe);
        assert!(b.is_failing(t0 + secs(60)), "the probe is out");
        assert!(
            !b.is_failing(t0 + secs(92)),
            "the probe's deadline passed unanswered"
        );
        b.on_success();
        assert!(!b.is_failing(t0 + secs(60)));
    }

    /// A breaker that has just tripped at `t0`.
    fn tripped(t0: Instant) -> Breaker {
        let mut breaker = Breaker::new(config());
        for _ in 0..3 {
            breaker.on_failure(t0);
        }
        breaker
    }

    #[test]
    fn closed_allows_and_counts_only_consecutive_failures() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(config());
        assert_eq!(breaker.allow(t0), Admission::Allowed);
        breaker.on_failure(t0);
        breaker.on_failure(t0);
        breaker.on_success();
        breaker.on_failure(t0);
        breaker.on_failure(t0);
        assert_eq!(breaker.state_name(), "closed");
        assert_eq!(breaker.allow(t0), Admission::Allowed);
        breaker.on_failure(t0);
        assert_eq!(breaker.state_name(), "open");
    }

    #[test]
    fn open_rejects_until_the_rest_is_over_then_lets_one_probe_through() {
        let t0 = Instant::now();
        let mut breaker = tripped(t0);
        assert!(breaker.is_open(t0));
        assert_eq!(
            breaker.allow(t0 + secs(29)),
            Admission::Rejected {
                retry_at: t0 + secs(30)
            }
        );
        assert!(!breaker.is_open(t0 + secs(30)));
        assert_eq!(breaker.allow(t0 + secs(30)), Admission::Probe);
        assert_eq!(breaker.state_name(), "half_open");
        // Exactly one probe: everyone else waits for its outcome (or its deadline).
        let probe_deadline = t0 + secs(30) + secs(60);
        assert_eq!(
            breaker.allow(t0 + secs(31)),
            Admission::Rejected {
                retry_at: probe_deadline
            }
        );
        assert!(!breaker.is_open(t0 + secs(31)));
    }

    #[test]
    fn successful_probe_closes_and_resets() {
        let t0 = Instant::now();
        let mut breaker = tripped(t0);
        assert_eq!(breaker.allow(t0 + secs(30)), Admission::Probe);
        breaker.on_success();
        assert_eq!(breaker.state_name(), "closed");
        assert_eq!(breaker.allow(t0 + secs(30)), Admission::Allowed);
        // Reset: the next trip needs the full threshold again and rests only the base time.
        let t1 = t0 + secs(100);
        breaker.on_failure(t1);
        breaker.on_failure(t1);
        assert_eq!(breaker.state_name(), "closed");
        breaker.on_failure(t1);
        assert_eq!(
            breaker.allow(t1),
            Admission::Rejected {
                retry_at: t1 + secs(30)
            }
        );
    }

    #[test]
    fn failed_probe_reopens_for_twice_as_long_up_to_the_ceiling() {
        let t0 = Instant::now();
        let mut breaker = tripped(t0);
        let mut now = t0;
        let mut expected_rest = [60, 120, 240, 480, 600, 600].into_iter();
        let mut rest = secs(30);
        for _ in 0..6 {
            now += rest;
            assert_eq!(breaker.allow(now), Admission::Probe);
            breaker.on_failure(now);
            assert_eq!(breaker.state_name(), "open");
            rest = secs(expected_rest.next().unwrap());
            assert_eq!(
                breaker.allow(now),
                Admission::Rejected {
                    retry_at: now + rest
                }
            );
        }
    }

    #[test]
    fn late_results_of_requests_sent_before_the_trip() {
        let t0 = Instant::now();
        let mut breaker = tripped(t0);
        breaker.on_failure(t0 + secs(10));
        assert_eq!(
            breaker.allow(t0 + secs(10)),
            Admission::Rejected {
                retry_at: t0 + secs(30)
            }
        );
        breaker.on_success();
        assert_eq!(breaker.allow(t0 + secs(10)), Admission::Allowed);
    }

    #[test]
    fn lost_probe_outcome_does_not_wedge_half_open() {
        let t0 = Instant::now();
        let mut breaker = tripped(t0);
        assert_eq!(breaker.allow(t0 + secs(30)), Admission::Probe);
        assert_eq!(breaker.allow(t0 + secs(90)), Admission::Probe);
        breaker.on_success();
        assert_eq!(breaker.state_name(), "closed");
    }

    #[test]
    fn zero_threshold_trips_on_the_first_failure() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            ..config()
        });
        breaker.on_failure(t0);
        assert!(breaker.is_open(t0));
    }

    #[test]
    fn default_config_is_the_documented_one() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        for _ in 0..4 {
            breaker.on_failure(t0);
        }
        assert_eq!(breaker.allow(t0), Admission::Allowed);
        breaker.on_failure(t0);
        assert_eq!(
            breaker.allow(t0),
            Admission::Rejected {
                retry_at: t0 + secs(30)
            }
        );
    }
}
