//! Loading: defaults, then an optional TOML file, then environment variables (DESIGN §5), then
//! `Config::validate`. Every message names the key, and the variable when one sets it.

use std::path::Path;

use anyhow::bail;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

use super::{ChainConfig, Config, InvalidConfig};

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
    (
        "PIPELINE_DELIVERY_SEND_BEFORE_COMMIT",
        "delivery.send_before_commit",
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
        let mut config: Config = figment.extract().map_err(|e| describe(e, env))?;
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

/// figment's errors, one per bad value, each naming the key and the file, and the variable when
/// one was set for the key (figment only calls it "(key, value)"). Its profile prefix would only
/// confuse the reader.
fn describe(error: figment::Error, env: &[(String, String)]) -> anyhow::Error {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let text = e.to_string().replace("key \"default.", "key \"");
            let var = ENV_KEYS
                .iter()
                .find(|(var, k)| *k == key && env.iter().any(|(set, _)| set == var));
            match var {
                Some((var, _)) => format!("{text} (set by {var})"),
                None => text,
            }
        })
        .collect();
    anyhow::anyhow!(messages.join("; "))
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
    let boolean = matches!(key, "ingest.filter_at_node" | "delivery.send_before_commit");
    if boolean && let Ok(flag) = value.trim().parse::<bool>() {
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
