//! The samples the overview charts are drawn from, kept by the host itself (no Prometheus needed):
//! every 10 s a small task reads the host's own counters and gauges and appends one [`Sample`] to a
//! ring of 360 (one hour). Memory is fixed (360 × a few dozen bytes); a page reads the ring, never
//! the store, so drawing the charts costs the host nothing that grows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::Metric;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::now_ms;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: one hour at [`SAMPLE_EVERY`].
pub const MAX_SAMPLES: usize = 360;

/// Rates and levels over one sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// End of the interval (Unix ms).
    pub at_ms: i64,
    pub events_per_s: f64,
    pub webhooks_per_s: f64,
    /// End-to-end latency quantiles of the webhooks answered in the interval, if any were.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Deliveries due and waiting for a worker, and how long the oldest of them has waited.
    pub due: i64,
    pub outstanding: i64,
    pub oldest_due_s: f64,
}

/// The cumulative counters and current gauges at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub at_ms: i64,
    pub events: u64,
    pub webhooks: u64,
    /// The latency histogram: (upper bound in seconds, cumulative count), ascending.
    pub latency: Vec<(f64, u64)>,
    pub due: i64,
    pub outstanding: i64,
    pub oldest_due_s: f64,
}

/// The ring of samples. Cheap to clone.
#[derive(Clone, Default)]
pub struct Samples(Arc<Mutex<VecDeque<Sample>>>);

impl Samples {
    pub fn push(&self, sample: Sample) {
        if let Ok(mut ring) = self.0.lock() {
            if ring.len() >= MAX_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
    }

    /// Every sample kept, oldest first.
    pub fn all(&self) -> Vec<Sample> {
        self.0
            .lock()
            .map(|ring| ring.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Pure: the sample for the interval between two readings.
pub fn between(before: &Reading, after: &Reading) -> Sample {
    let seconds = ((after.at_ms - before.at_ms) as f64 / 1000.0).max(0.001);
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    let delta: Vec<(f64, u64)> = after
        .latency
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .latency
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |&(_, c)| c);
            (bound, count.saturating_sub(earlier))
        })
        .collect();
    Sample {
        at_ms: after.at_ms,
        events_per_s: rate(before.events, after.events),
        webhooks_per_s: rate(before.webhooks, after.webhooks),
        p50_ms: quantile(&delta, 0.5).map(|s| s * 1000.0),
        p99_ms: quantile(&delta, 0.99).map(|s| s * 1000.0),
        due: after.due,
        outstanding: after.outstanding,
        oldest_due_s: after.oldest_due_s,
    }
}

/// Pure: the `q` quantile of a histogram given as cumulative counts per upper bound (ascending;
/// observations above the last bound count in `total` only), interpolated linearly inside the
/// bucket like Prometheus' `histogram_quantile`. `None` without observations.
pub fn quantile(cumulative: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = cumulative.last().map(|&(_, c)| c)?;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in cumulative {
        if count as f64 >= rank {
            let in_bucket = (count - lower.1) as f64;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1 as f64) / in_bucket
            } else {
                0.0
            };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// Reads the host's counters now. `chains` are the chain label values (configured chain names).
pub fn read(metrics: &Metrics, chains: &[String], at_ms: i64) -> Reading {
    let events = chains
        .iter()
        .map(|c| metrics.events_received.with_label_values(&[c]).get())
        .sum();
    let webhooks = metrics
        .deliveries_attempted
        .with_label_values(&["success"])
        .get();
    let histogram = metrics.e2e_latency.metric();
    let mut latency: Vec<(f64, u64)> = histogram
        .get_histogram()
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    // Observations above the last bound: a bucket of their own at twice that bound.
    let count = histogram.get_histogram().get_sample_count();
    if let Some(&(last, _)) = latency.last() {
        latency.push((last * 2.0, count));
    }
    Reading {
        at_ms,
        events,
        webhooks,
        latency,
        due: metrics.deliveries_due.get(),
        outstanding: metrics.deliveries_outstanding.get(),
        oldest_due_s: metrics.deliveries_oldest_due_age.get(),
    }
}

/// Appends a sample every [`SAMPLE_EVERY`] until `shutdown`.
pub async fn run(
    samples: Samples,
    metrics: Metrics,
    chains: Vec<String>,
    shutdown: CancellationToken,
) {
    let mut before = read(&metrics, &chains, now_ms());
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let after = read(&metrics, &chains, now_ms());
        samples.push(between(&before, &after));
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 observations: 50 up to 1 ms, 40 more up to 2 ms, 10 more up to 10 ms.
        let h = [(0.001, 50), (0.002, 90), (0.010, 100)];
        assert_eq!(quantile(&h, 0.5), Some(0.001));
        let p99 = quantile(&h, 0.99).unwrap();
        assert!((p99 - 0.0092).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&[(0.001, 0), (0.002, 0)], 0.5), None);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_sample_is_the_rates_and_latency_of_its_interval_only() {
        let before = Reading {
            at_ms: 10_000,
            events: 100,
            webhooks: 40,
            latency: vec![(0.001, 1_000), (0.01, 1_000)],
            ..Reading::default()
        };
        let after = Reading {
            at_ms: 20_000,
            events: 600,
            webhooks: 140,
            // The interval's 100 webhooks all took between 1 and 10 ms.
            latency: vec![(0.001, 1_000), (0.01, 1_100)],
            due: 3,
            outstanding: 7,
            oldest_due_s: 1.5,
        };
        let sample = between(&before, &after);
        assert_eq!(sample.events_per_s, 50.0);
        assert_eq!(sample.webhooks_per_s, 10.0);
        let p50 = sample.p50_ms.unwrap();
        assert!((p50 - 5.5).abs() < 1e-9, "{p50}");
        assert_eq!((sample.due, sample.outstanding), (3, 7));
        assert_eq!(
            between(&after, &after).p99_ms,
            None,
            "no webhooks, no latency"
        );
    }

    #[test]
    fn the_ring_keeps_the_last_hour_only() {
        let samples = Samples::default();
        for i in 0..(MAX_SAMPLES as i64 + 5) {
            samples.push(Sample {
                at_ms: i,
                ..Sample::default()
            });
        }
        let all = samples.all();
        assert_eq!(all.len(), MAX_SAMPLES);
        assert_eq!(all[0].at_ms, 5);
    }
}
