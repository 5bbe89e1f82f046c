//! The `[retention]` section: how long finished rows are kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long finished rows are kept (written as durations such as `30d`, `12h`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delivered deliveries and their attempts.
    #[serde(with = "super::text::duration")]
    pub delivered: Duration,
    /// Dead deliveries and their attempts: kept longer, for inspection and recovery.
    #[serde(with = "super::text::duration")]
    pub dead: Duration,
    /// Parked events not reprocessed.
    #[serde(with = "super::text::duration")]
    pub parked: Duration,
    /// How often expired rows are looked for.
    #[serde(with = "super::text::duration")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            delivered: DAY * 30,
            dead: DAY * 90,
            parked: DAY * 90,
            interval: Duration::from_secs(60),
        }
    }
}
