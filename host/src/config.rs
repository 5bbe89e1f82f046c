//! Configuration: defaults, then an optional TOML file, then environment variables (`load.rs`);
//! parsed into typed values and validated once, before anything runs.
//!
//! Each pipeline stage receives only its own section, already typed: no stage parses a setting.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod check;
mod ingest;
mod load;
mod retention;
mod secret_keys;
mod server;
mod stages;
mod text;
mod validate;
pub use check::{InvalidConfig, OutputFormat};
pub use ingest::{IngestConfig, MAX_CONFIRMATIONS};
pub use retention::RetentionConfig;
pub use server::ServerLimits;
pub use stages::{BatchConfig, DeliveryConfig, PluginLimits};

/// The whole host configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Directory for the embedded database and the generated admin token.
    pub data_dir: PathBuf,
    /// Admin API listen address.
    pub admin_addr: SocketAddr,
    /// Prometheus `/metrics` listen address.
    pub metrics_addr: SocketAddr,
    /// Bearer token for the admin API; generated and stored when absent.
    pub admin_token: Option<String>,
    /// Base64 32-byte keys, comma-separated, that endpoint secrets are encrypted under (the first
    /// encrypts); plaintext when absent (`config/secret_keys.rs`).
    #[serde(default)]
    pub secret_key: Option<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Chains to ingest.
    pub chains: Vec<ChainConfig>,
    pub batch: BatchConfig,
    pub delivery: DeliveryConfig,
    pub plugin: PluginLimits,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Limits of the admin and metrics servers.
    #[serde(default)]
    pub server: ServerLimits,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// One EVM chain: the node's `eth_chainId` must equal `chain_id`. Its `Debug` shows the URLs
/// redacted: they often carry API keys.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub name: String,
    pub chain_id: u64,
    /// WebSocket URLs, tried in order (failover).
    pub ws_urls: Vec<String>,
    /// Blocks to wait before a block's logs are processed.
    #[serde(default)]
    pub confirmations: u64,
    /// First block to ingest when no cursor is stored (default: the current head).
    #[serde(default)]
    pub start_block: Option<u64>,
    /// No new head for this long (ms): the chain is stale — reconnect or fail over to the next
    /// URL, `/readyz` not ready for it. Default from the chain's block time
    /// ([`ChainConfig::stale_after`]).
    #[serde(default)]
    pub stale_after_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://./data/pipeline.db".to_string(),
            data_dir: PathBuf::from("./data"),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            admin_token: None,
            secret_key: None,
            log_format: LogFormat::Text,
            chains: Vec::new(),
            batch: BatchConfig::default(),
            delivery: DeliveryConfig::default(),
            plugin: PluginLimits::default(),
            retention: RetentionConfig::default(),
            ingest: IngestConfig::default(),
            server: ServerLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests;
