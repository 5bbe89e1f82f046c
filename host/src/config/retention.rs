//! The `[retention]` section: how long finished rows are kept.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// How long finished rows are kept (humantime durations such as `30d`, `12h`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delivered deliveries and their attempts.
    pub delivered: String,
    /// Dead deliveries and their attempts: kept longer, for inspection and recovery.
    pub dead: String,
    /// Parked events not reprocessed.
    pub parked: String,
    /// How often expired rows are looked for.
    pub interval: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            delivered: "30d".into(),
            dead: "90d".into(),
            parked: "90d".into(),
            interval: "1m".into(),
        }
    }
}

impl RetentionConfig {
    /// The periods as durations: (delivered, dead, parked, interval).
    pub fn periods(&self) -> anyhow::Result<[Duration; 4]> {
        let parse = |name: &str, value: &str| {
            humantime::parse_duration(value)
                .with_context(|| format!("retention.{name}: {value:?} is not a duration like 30d"))
        };
        Ok([
            parse("delivered", &self.delivered)?,
            parse("dead", &self.dead)?,
            parse("parked", &self.parked)?,
            parse("interval", &self.interval)?,
        ])
    }
}
