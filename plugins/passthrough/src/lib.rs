//! Keeps every event with webhook `data = null`. Any config is accepted and ignored.

use pipeline_sdk::{Decision, Log};

/// Any JSON value; ignored.
pub type Config = serde::de::IgnoredAny;

pub fn process(_: &Config, _: &Log) -> Result<Decision, String> {
    Ok(Decision::Keep)
}

pipeline_sdk::export_plugin!(Config, process);
