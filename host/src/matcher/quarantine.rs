//! The quarantine policy of a subscription's plugin, pure: one transition function from a state,
//! an event and `now` to the next state. `plugins.rs` applies it and turns the changes it sees
//! into status writes, metrics and logs.

use std::time::Duration;

use tokio::time::Instant;

/// Consecutive failed batches before a subscription is quarantined.
pub const QUARANTINE_AFTER: u32 = 5;
const BACKOFF_MIN: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Where a subscription's plugin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Called with every batch; `failures` consecutive batches failed (fewer than
    /// [`QUARANTINE_AFTER`]).
    Healthy { failures: u32 },
    /// Not called before `probe_at`; the batch that arrives then is a probe. `round` counts the
    /// backoffs so far, so each failed probe waits twice as long (30 s up to 10 min).
    Quarantined { probe_at: Instant, round: u32 },
}

impl Default for Health {
    fn default() -> Self {
        Health::Healthy { failures: 0 }
    }
}

/// What happened to the subscription's plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A plugin or config was attached (or the host started): a fresh start, except that a
    /// subscription stored as quarantined stays quarantined and is probed at once.
    Attached { stored_quarantined: bool },
    /// A batch was decided by the plugin.
    Succeeded,
    /// A batch failed in the plugin (not one skipped while quarantined).
    Failed,
}

impl Health {
    /// The transition function of the policy.
    pub fn step(self, event: Event, now: Instant) -> Health {
        match (self, event) {
            (_, Event::Attached { stored_quarantined }) => {
                if stored_quarantined {
                    Health::Quarantined {
                        probe_at: now,
                        round: 0,
                    }
                } else {
                    Health::default()
                }
            }
            (_, Event::Succeeded) => Health::default(),
            (Health::Healthy { failures }, Event::Failed) => {
                let failures = failures.saturating_add(1);
                if failures >= QUARANTINE_AFTER {
                    quarantine(0, now)
                } else {
                    Health::Healthy { failures }
                }
            }
            (Health::Quarantined { round, .. }, Event::Failed) => quarantine(round, now),
        }
    }

    /// Whether the plugin may be called at `now`: always unless quarantined and the backoff is
    /// not over.
    pub fn admits(&self, now: Instant) -> bool {
        match self {
            Health::Healthy { .. } => true,
            Health::Quarantined { probe_at, .. } => now >= *probe_at,
        }
    }

    pub fn is_quarantined(&self) -> bool {
        matches!(self, Health::Quarantined { .. })
    }
}

/// The state after the failed batch that ends backoff round `round`.
fn quarantine(round: u32, now: Instant) -> Health {
    Health::Quarantined {
        probe_at: now + backoff(round),
        round: round.saturating_add(1),
    }
}

/// 30 s doubling each round, at most 10 min.
fn backoff(round: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1 << round.min(5))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_times(mut health: Health, n: u32, now: Instant) -> Health {
        for _ in 0..n {
            health = health.step(Event::Failed, now);
        }
        health
    }

    #[test]
    fn five_failed_batches_in_a_row_quarantine_and_a_success_between_resets_the_count() {
        let now = Instant::now();
        let four = fail_times(Health::default(), QUARANTINE_AFTER - 1, now);
        assert_eq!(four, Health::Healthy { failures: 4 });
        assert!(four.admits(now));
        assert_eq!(
            four.step(Event::Succeeded, now),
            Health::Healthy { failures: 0 }
        );
        let reset = fail_times(four.step(Event::Succeeded, now), 4, now);
        assert!(!reset.is_quarantined());
        let fifth = four.step(Event::Failed, now);
        assert_eq!(
            fifth,
            Health::Quarantined {
                probe_at: now + Duration::from_secs(30),
                round: 1
            }
        );
    }

    #[test]
    fn a_quarantined_plugin_is_not_called_until_its_backoff_is_over() {
        let now = Instant::now();
        let quarantined = fail_times(Health::default(), QUARANTINE_AFTER, now);
        assert!(!quarantined.admits(now));
        assert!(!quarantined.admits(now + Duration::from_secs(29)));
        assert!(quarantined.admits(now + Duration::from_secs(30)));
        // A successful probe lifts the quarantine.
        let probed = now + Duration::from_secs(31);
        assert_eq!(
            quarantined.step(Event::Succeeded, probed),
            Health::default()
        );
    }

    #[test]
    fn each_failed_probe_doubles_the_backoff_up_to_ten_minutes() {
        let mut now = Instant::now();
        let mut health = fail_times(Health::default(), QUARANTINE_AFTER, now);
        let mut waits = Vec::new();
        for _ in 0..7 {
            let Health::Quarantined { probe_at, .. } = health else {
                panic!("not quarantined: {health:?}");
            };
            waits.push((probe_at - now).as_secs());
            now = probe_at;
            health = health.step(Event::Failed, now);
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn attaching_starts_afresh_but_a_stored_quarantine_is_probed_at_once() {
        let now = Instant::now();
        let quarantined = fail_times(Health::default(), 7, now);
        let attached = quarantined.step(
            Event::Attached {
                stored_quarantined: false,
            },
            now,
        );
        assert_eq!(attached, Health::default());
        let restarted = Health::default().step(
            Event::Attached {
                stored_quarantined: true,
            },
            now,
        );
        assert!(restarted.is_quarantined() && restarted.admits(now));
        // A failed probe after a restart backs off from the first round, as a new quarantine.
        assert_eq!(
            restarted.step(Event::Failed, now),
            Health::Quarantined {
                probe_at: now + Duration::from_secs(30),
                round: 1
            }
        );
    }
}
