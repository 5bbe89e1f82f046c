//! `Config::validate`: everything that can be checked before start-up. Each message names the
//! setting as it is written in the TOML file and, where there is one, its environment variable,
//! so an operator finds it whichever way it was set. Values that are parsed (durations, the retry
//! schedule, CIDRs) were checked when they were read (`text.rs`); these are the checks across
//! values and of ranges.

use anyhow::bail;

use super::Config;
use super::ingest::{MAX_CONFIRMATIONS, validate_chain_stale, validate_ingest};

impl Config {
    /// Checks everything that can be checked before start-up, with messages that name the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            // Redacted: a mistyped URL may still carry its password.
            bail!(
                "database_url (DATABASE_URL) must start with sqlite:// or postgres://, got {:?}",
                super::check::database_url(&self.database_url)
            );
        }
        self.secret_keys()?;
        self.validate_batch()?;
        self.validate_delivery()?;
        if self.retention.interval.is_zero() {
            bail!("retention.interval (PIPELINE_RETENTION_INTERVAL) must be positive");
        }
        self.server.validate(self.plugin.compile_timeout_ms)?;
        validate_ingest(&self.ingest)?;
        self.validate_chains()
    }

    fn validate_batch(&self) -> anyhow::Result<()> {
        if self.batch.max_events == 0 {
            bail!("batch.max_events (PIPELINE_BATCH_MAX_EVENTS) must be at least 1");
        }
        if !(1..=4096).contains(&self.batch.max_in_flight_mib) {
            bail!(
                "batch.max_in_flight_mib (PIPELINE_BATCH_MAX_IN_FLIGHT_MIB) must be between 1 and 4096, got {}",
                self.batch.max_in_flight_mib
            );
        }
        Ok(())
    }

    fn validate_delivery(&self) -> anyhow::Result<()> {
        let d = &self.delivery;
        if !(1..=100_000).contains(&d.workers) {
            bail!(
                "delivery.workers (PIPELINE_DELIVERY_WORKERS) must be between 1 and 100000, got {}",
                d.workers
            );
        }
        if !(1..=10_000).contains(&d.per_endpoint_concurrency) {
            bail!(
                "delivery.per_endpoint_concurrency (PIPELINE_DELIVERY_PER_ENDPOINT_CONCURRENCY) must be between 1 and 10000, got {}",
                d.per_endpoint_concurrency
            );
        }
        if d.poll_interval_ms < 10 {
            bail!(
                "delivery.poll_interval_ms must be at least 10, got {}",
                d.poll_interval_ms
            );
        }
        if d.lease_ms <= d.request_timeout_ms {
            bail!(
                "delivery.lease_ms ({}) must exceed delivery.request_timeout_ms ({}), or attempts outlive their lease",
                d.lease_ms,
                d.request_timeout_ms
            );
        }
        for (name, value) in [
            ("connect_timeout_ms", d.connect_timeout_ms),
            ("request_timeout_ms", d.request_timeout_ms),
            ("body_timeout_ms", d.body_timeout_ms),
        ] {
            if value == 0 {
                bail!("delivery.{name} must be positive");
            }
        }
        if d.body_timeout_ms > d.request_timeout_ms {
            bail!(
                "delivery.body_timeout_ms ({}) must not exceed delivery.request_timeout_ms ({})",
                d.body_timeout_ms,
                d.request_timeout_ms
            );
        }
        Ok(())
    }

    fn validate_chains(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for chain in &self.chains {
            if chain.ws_urls.is_empty() {
                bail!("chains: chain {:?} has no ws_urls", chain.name);
            }
            if !seen.insert(chain.chain_id) {
                bail!("chains: chain_id {} is configured twice", chain.chain_id);
            }
            validate_chain_stale(chain)?;
            if chain.confirmations > MAX_CONFIRMATIONS {
                bail!(
                    "chains: chain {:?}: confirmations must be at most {MAX_CONFIRMATIONS}, got {}",
                    chain.name,
                    chain.confirmations
                );
            }
            for url in &chain.ws_urls {
                if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                    // Redacted: a URL with a typo may still carry its API key.
                    bail!(
                        "chains: chain {:?}: ws_urls: {} is not a ws:// or wss:// URL",
                        chain.name,
                        crate::redact::url(url)
                    );
                }
            }
        }
        Ok(())
    }
}
