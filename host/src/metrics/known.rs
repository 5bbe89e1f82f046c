//! The label values known in advance, exported at zero from the start.

use super::Metrics;

/// Label values known in advance, exported at zero from the start ([`Metrics::preinit`]): a
/// series that appears only with its first increment hides that increment from `rate()` and
/// `increase()`, so an alert on the first error would never fire.
const KNOWN_LABELS: &[(&str, &[&str])] = &[
    (
        "status:processed",
        &["matched", "dropped", "parked", "too_slow"],
    ),
    (
        "status:attempted",
        &[
            "success",
            "retry",
            "dead",
            "gone",
            "deferred",
            "breaker_open",
            "lease_expired",
        ],
    ),
    ("status:plugin", &["ok", "failed"]),
    // `PluginError::cause` and the guest's own error record.
    (
        "cause",
        &[
            "out_of_fuel",
            "memory_limit",
            "timeout",
            "stack_overflow",
            "trap",
            "panic",
            "bad_output",
            "error_code",
            "config_rejected",
            "instantiate",
            "error_record",
            "too_slow",
        ],
    ),
    (
        "queue",
        &["batch_input", "deliver_input", "matcher_held_cursors"],
    ),
    ("purpose:statements", &["outbox", "delivery_results"]),
    (
        "purpose:errors",
        &[
            "outbox",
            "backlog",
            "retention",
            "registry",
            "claim",
            "delivery_results",
            "seal_batches",
            "canary",
        ],
    ),
    ("table", &["deliveries", "parked_events"]),
    (
        "outcome:canary",
        &[
            "same",
            "only_live_kept",
            "only_canary_kept",
            "data_differs",
            "skipped",
        ],
    ),
    (
        "kind:canary",
        &["trap", "out_of_fuel", "bad_output", "other"],
    ),
];

fn known(kind: &str) -> &'static [&'static str] {
    KNOWN_LABELS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(&[], |(_, values)| values)
}

impl Metrics {
    /// Creates every series whose labels are known in advance, at zero, so dashboards and alerts
    /// see them from the start (see [`KNOWN_LABELS`]); per-chain series for `chains`.
    pub fn preinit(&self, chains: &[String]) {
        let counters = [
            (&self.events_processed, "status:processed"),
            (&self.deliveries_attempted, "status:attempted"),
            (&self.plugin_calls, "status:plugin"),
            (&self.plugin_failures, "cause"),
            (&self.db_statements, "purpose:statements"),
            (&self.db_errors, "purpose:errors"),
            (&self.pruned_rows, "table"),
            (&self.canary_events, "outcome:canary"),
            (&self.canary_failures, "kind:canary"),
        ];
        for (counter, kind) in counters {
            for value in known(kind) {
                counter.with_label_values(&[value]);
            }
        }
        for value in known("queue") {
            self.queue_depth.with_label_values(&[value]);
        }
        for chain in chains {
            for counter in [
                &self.events_received,
                &self.reorgs,
                &self.ws_reconnects,
                &self.reorgs_too_deep,
                &self.backfill_blocks,
            ] {
                counter.with_label_values(&[chain]);
            }
            self.chain_stale.with_label_values(&[chain]);
            // 0 = no head seen by this replica (yet, or it stands by): dashboards take the max.
            self.chain_head.with_label_values(&[chain]);
            self.chain_head_lag.with_label_values(&[chain]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preinit_exports_known_series_at_zero() {
        let m = Metrics::new().unwrap();
        assert!(!m.render().contains("pipeline_db_errors_total"));
        m.preinit(&["anvil".to_string()]);
        let text = m.render();
        for series in [
            "pipeline_db_errors_total{purpose=\"outbox\"} 0",
            "pipeline_plugin_failures_total{cause=\"out_of_fuel\"} 0",
            "pipeline_deliveries_attempted_total{status=\"dead\"} 0",
            "pipeline_reorgs_total{chain=\"anvil\"} 0",
            "pipeline_chain_head_lag_seconds_count{chain=\"anvil\"} 0",
            "pipeline_queue_depth{queue=\"batch_input\"} 0",
            "pipeline_deliveries_oldest_due_age_seconds 0",
            "pipeline_canary_events_total{outcome=\"only_canary_kept\"} 0",
            "pipeline_canary_failures_total{kind=\"trap\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}
