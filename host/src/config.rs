//! Configuration: defaults, then an optional TOML file, then environment variables; validated once.
//!
//! Each pipeline stage receives only its own section.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod check;
mod ingest;
mod retention;
mod secret_keys;
mod validate;
pub use check::{InvalidConfig, OutputFormat};
pub use ingest::{IngestConfig, MAX_CONFIRMATIONS};
pub use retention::RetentionConfig;
mod server;

pub use server::ServerLimits;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max_events: usize,
    pub max_wait_ms: u64,
    /// Bytes of logs (MiB) between ingest and the end of matching at most: when the pipeline
    /// falls behind, ingest waits instead of holding more, whatever the blocks' sizes.
    #[serde(default = "default_max_in_flight_mib")]
    pub max_in_flight_mib: usize,
}

fn default_body_timeout_ms() -> u64 {
    2_000
}

fn default_max_in_flight_mib() -> usize {
    16
}

impl BatchConfig {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Concurrent delivery attempts across all endpoints.
    pub workers: usize,
    /// Concurrent attempts to one endpoint.
    pub per_endpoint_concurrency: usize,
    /// Delays before each retry, e.g. `5s,5m,30m`; jitter is added.
    pub retry_schedule: String,
    /// Destinations allowed despite the private/loopback block, e.g. `127.0.0.0/8`.
    pub allowed_cidrs: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// Time allowed for reading a response body (kept only for the delivery log) once the
    /// headers are in; a dripping body is cut there instead of holding a worker.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// How long a claimed delivery is leased to one replica.
    pub lease_ms: u64,
    /// How often due retries are looked for.
    pub poll_interval_ms: u64,
}

/// Sandbox limits applied to every plugin call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    pub fuel_base: u64,
    pub fuel_per_event: u64,
    pub memory_bytes: usize,
    pub stack_bytes: usize,
    pub max_module_bytes: usize,
    pub max_output_bytes: usize,
    /// Wall-clock backstop per call; fuel normally stops a loop long before.
    pub call_timeout_ms: u64,
    pub compile_timeout_ms: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            fuel_base: 2_000_000,
            fuel_per_event: 200_000,
            memory_bytes: 16 << 20,
            stack_bytes: 256 << 10,
            max_module_bytes: 10 << 20,
            max_output_bytes: 4 << 20,
            call_timeout_ms: 1_000,
            compile_timeout_ms: 30_000,
        }
    }
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
            batch: BatchConfig {
                max_events: 100,
                max_wait_ms: 100,
                max_in_flight_mib: default_max_in_flight_mib(),
            },
            delivery: DeliveryConfig {
                workers: 256,
                per_endpoint_concurrency: 32,
                retry_schedule: "5s,5m,30m,2h,5h,10h,10h".to_string(),
                allowed_cidrs: String::new(),
                connect_timeout_ms: 5_000,
                request_timeout_ms: 30_000,
                body_timeout_ms: default_body_timeout_ms(),
                lease_ms: 60_000,
                poll_interval_ms: 250,
            },
            plugin: PluginLimits::default(),
            retention: RetentionConfig::default(),
            ingest: IngestConfig::default(),
            server: ServerLimits::default(),
        }
    }
}

/// Environment variables of DESIGN §5 and the config keys they set.
const ENV_KEYS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("PIPELINE_DATA_DIR", "data_dir"),
    ("PIPELINE_ADMIN_ADDR", "admin_addr"),
    ("PIPELINE_METRICS_ADDR", "metrics_addr"),
    ("PIPELINE_ADMIN_TOKEN", "admin_token"),
    ("PIPELINE_SECRET_KEY", "secret_key"),
    ("PIPELINE_LOG_FORMAT", "log_format"),
    ("PIPELINE_DELIVERY_ALLOWED_CIDRS", "delivery.allowed_cidrs"),
    ("PIPELINE_DELIVERY_WORKERS", "delivery.workers"),
    (
        "PIPELINE_DELIVERY_PER_ENDPOINT_CONCURRENCY",
        "delivery.per_endpoint_concurrency",
    ),
    (
        "PIPELINE_DELIVERY_RETRY_SCHEDULE",
        "delivery.retry_schedule",
    ),
    ("PIPELINE_BATCH_MAX_EVENTS", "batch.max_events"),
    ("PIPELINE_BATCH_MAX_WAIT_MS", "batch.max_wait_ms"),
    (
        "PIPELINE_BATCH_MAX_IN_FLIGHT_MIB",
        "batch.max_in_flight_mib",
    ),
    ("PIPELINE_RETENTION_DELIVERED", "retention.delivered"),
    ("PIPELINE_RETENTION_DEAD", "retention.dead"),
    ("PIPELINE_RETENTION_PARKED", "retention.parked"),
    ("PIPELINE_RETENTION_INTERVAL", "retention.interval"),
    ("PIPELINE_INGEST_MAX_MESSAGE_MIB", "ingest.max_message_mib"),
    ("PIPELINE_INGEST_MAX_LOGS_MIB", "ingest.max_logs_mib"),
    (
        "PIPELINE_INGEST_MAX_RANGE_BLOCKS",
        "ingest.max_range_blocks",
    ),
    ("PIPELINE_INGEST_FILTER_AT_NODE", "ingest.filter_at_node"),
];

/// Well-known chains switched on by a `*_WSS` variable.
const WELL_KNOWN_CHAINS: &[(&str, &str, u64)] = &[
    ("ETHEREUM_WSS", "ethereum", 1),
    ("ARBITRUM_WSS", "arbitrum", 42161),
    ("OPTIMISM_WSS", "optimism", 10),
    ("BASE_WSS", "base", 8453),
];

impl Config {
    /// Loads defaults → TOML file (if any) → environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, InvalidConfig> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Like [`Config::load`] with an explicit environment, so tests need not touch the process's.
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config, InvalidConfig> {
        Self::read(file, env).map_err(InvalidConfig)
    }

    fn read(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        for (var, key) in ENV_KEYS {
            if let Some((_, value)) = env.iter().find(|(k, _)| k == var) {
                figment = figment.merge((*key, env_value(key, value)));
            }
        }
        // figment names the key and the file; its profile prefix would only confuse the reader.
        let mut config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!(e.to_string().replace("key \"default.", "key \"")))?;
        for (var, name, chain_id) in WELL_KNOWN_CHAINS {
            if let Some((_, urls)) = env.iter().find(|(k, _)| k == var) {
                config.add_well_known_chain(name, *chain_id, urls);
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn add_well_known_chain(&mut self, name: &str, chain_id: u64, urls: &str) {
        let ws_urls: Vec<String> = split_list(urls);
        if ws_urls.is_empty() {
            return;
        }
        self.chains.retain(|c| c.chain_id != chain_id);
        self.chains.push(ChainConfig {
            name: name.to_string(),
            chain_id,
            ws_urls,
            confirmations: 0,
            start_block: None,
            stale_after_ms: None,
        });
    }
}

/// Environment values are strings; numeric keys are passed as numbers so serde accepts them.
fn env_value(key: &str, value: &str) -> figment::value::Value {
    let numeric = matches!(
        key,
        "delivery.workers"
            | "delivery.per_endpoint_concurrency"
            | "batch.max_events"
            | "batch.max_wait_ms"
            | "batch.max_in_flight_mib"
            | "ingest.max_message_mib"
            | "ingest.max_logs_mib"
            | "ingest.max_range_blocks"
    );
    if key == "ingest.filter_at_node"
        && let Ok(flag) = value.trim().parse::<bool>()
    {
        return figment::value::Value::from(flag);
    }
    match value.trim().parse::<u64>() {
        Ok(n) if numeric => figment::value::Value::from(n),
        _ => figment::value::Value::from(value.to_string()),
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// Parses `5s,5m,30m` into delays.
pub fn parse_retry_schedule(s: &str) -> anyhow::Result<Vec<Duration>> {
    let delays = split_list(s)
        .iter()
        .map(|part| humantime::parse_duration(part).with_context(|| format!("bad delay {part:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if delays.is_empty() {
        bail!("the retry schedule needs at least one delay");
    }
    Ok(delays)
}

/// Parses a comma-separated CIDR list.
pub fn parse_cidrs(s: &str) -> anyhow::Result<Vec<IpNet>> {
    split_list(s)
        .iter()
        .map(|part| {
            part.parse::<IpNet>()
                .with_context(|| format!("bad CIDR {part:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::load_from(None, &[]).unwrap();
        assert_eq!(c.database_url, "sqlite://./data/pipeline.db");
        assert_eq!(c.admin_addr.port(), 8080);
        assert_eq!(c.metrics_addr.port(), 9090);
        // Raised from DESIGN §5's 50 (and 10 per endpoint) for issue 6: one fast endpoint at 10K
        // webhooks/s needs more than 10 in flight; a slow one still holds at most 32 of 256.
        assert_eq!(c.delivery.workers, 256);
        assert_eq!(c.delivery.per_endpoint_concurrency, 32);
        assert_eq!(c.batch.max_events, 100);
        assert_eq!(
            parse_retry_schedule(&c.delivery.retry_schedule)
                .unwrap()
                .len(),
            7
        );
        assert!(c.chains.is_empty());
    }

    #[test]
    fn environment_overrides_file_and_adds_chains() {
        let dir = std::env::temp_dir().join(format!("pipeline-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "database_url = \"postgres://x/y\"\n[batch]\nmax_events = 7\nmax_wait_ms = 5\n\
             [[chains]]\nname = \"anvil\"\nchain_id = 31337\nws_urls = [\"ws://127.0.0.1:8545\"]\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            &env(&[
                ("PIPELINE_BATCH_MAX_EVENTS", "9"),
                ("PIPELINE_DELIVERY_RETRY_SCHEDULE", "200ms,1s"),
                ("ETHEREUM_WSS", "wss://a, wss://b"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database_url, "postgres://x/y");
        assert_eq!(c.batch.max_events, 9);
        assert_eq!(c.batch.max_wait_ms, 5);
        assert_eq!(c.chains.len(), 2);
        assert_eq!(c.chains[1].ws_urls, vec!["wss://a", "wss://b"]);
        assert_eq!(
            parse_retry_schedule(&c.delivery.retry_schedule).unwrap(),
            vec![Duration::from_millis(200), Duration::from_secs(1)]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::load_from(None, &env(&[("PIPELINE_DELIVERY_RETRY_SCHEDULE", "soon")]))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("PIPELINE_DELIVERY_RETRY_SCHEDULE"),
            "{err:#}"
        );
        let err = Config::load_from(
            None,
            &env(&[("PIPELINE_DELIVERY_ALLOWED_CIDRS", "10.0.0.0/33")]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("ALLOWED_CIDRS"), "{err:#}");
        let err = Config::load_from(None, &env(&[("PIPELINE_DELIVERY_WORKERS", "0")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PIPELINE_DELIVERY_WORKERS"),
            "{err:#}"
        );
        let err = Config::load_from(None, &env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(format!("{err:#}").contains("DATABASE_URL"), "{err:#}");
    }
}
