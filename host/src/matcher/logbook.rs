//! Recent plugin log lines per subscription: rate-limited (a token bucket per subscription, so a
//! chatty plugin cannot flood the host's logs), kept in a small ring for the admin API, and mirrored
//! to `tracing` with the subscription id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::plugin::PluginLog;
use crate::store::now_ms;

const LINES_KEPT: usize = 200;
const BURST: f64 = 100.0;
const LINES_PER_SECOND: f64 = 20.0;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    pub at: i64,
    pub level: &'static str,
    pub message: String,
}

struct SubscriptionLog {
    lines: VecDeque<LogEntry>,
    tokens: f64,
    refilled: Instant,
}

impl SubscriptionLog {
    fn new() -> SubscriptionLog {
        SubscriptionLog {
            lines: VecDeque::new(),
            tokens: BURST,
            refilled: Instant::now(),
        }
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * LINES_PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn push(&mut self, entry: LogEntry) {
        if self.lines.len() == LINES_KEPT {
            self.lines.pop_front();
        }
        self.lines.push_back(entry);
    }
}

#[derive(Clone, Default)]
pub struct PluginLogBook(Arc<Mutex<HashMap<String, SubscriptionLog>>>);

impl PluginLogBook {
    /// Records one call's lines; `dropped_in_call` were already cut by the per-call cap. Returns
    /// how many lines were dropped in all (noted once in the log itself).
    pub fn record(&self, subscription_id: &str, logs: &[PluginLog], dropped_in_call: u32) -> u64 {
        if logs.is_empty() && dropped_in_call == 0 {
            return 0;
        }
        let Ok(mut book) = self.0.lock() else {
            return 0;
        };
        let log = book
            .entry(subscription_id.to_string())
            .or_insert_with(SubscriptionLog::new);
        let mut dropped = u64::from(dropped_in_call);
        for line in logs {
            if !log.take_token() {
                dropped += 1;
                continue;
            }
            tracing::info!(subscription = subscription_id, level = line.level_name(), message = %line.message, "plugin log");
            log.push(LogEntry {
                at: now_ms(),
                level: line.level_name(),
                message: line.message.clone(),
            });
        }
        if dropped > 0 {
            let message = format!(
                "{dropped} plugin log line(s) dropped (limit: {LINES_PER_SECOND}/s, burst {BURST})"
            );
            tracing::warn!(
                subscription = subscription_id,
                dropped,
                "plugin log lines dropped"
            );
            log.push(LogEntry {
                at: now_ms(),
                level: "warn",
                message,
            });
        }
        dropped
    }

    pub fn recent(&self, subscription_id: &str) -> Vec<LogEntry> {
        let Ok(book) = self.0.lock() else {
            return Vec::new();
        };
        book.get(subscription_id)
            .map(|l| l.lines.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<PluginLog> {
        (0..n)
            .map(|i| PluginLog {
                level: 2,
                message: format!("line {i}"),
            })
            .collect()
    }

    #[test]
    fn a_flood_is_cut_at_the_burst_and_the_cut_is_noted() {
        let book = PluginLogBook::default();
        assert_eq!(book.record("sub_a", &lines(150), 3), 53);
        let recent = book.recent("sub_a");
        assert_eq!(recent.len(), 101);
        assert_eq!(recent[99].message, "line 99");
        assert!(
            recent[100]
                .message
                .starts_with("53 plugin log line(s) dropped"),
            "{}",
            recent[100].message
        );
        // Another subscription has its own budget.
        assert_eq!(book.record("sub_b", &lines(10), 0), 0);
        assert_eq!(book.recent("sub_b").len(), 10);
    }
}
