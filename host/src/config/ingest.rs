//! The `[ingest]` section (what one node may make the host hold), its checks, and a `Debug` of
//! `ChainConfig` that shows node URLs redacted.

use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::ChainConfig;

/// What one node may make the host hold. A busy mainnet block's `eth_getLogs` answer is typically
/// 0.5–3 MB of JSON (a few hundred to a few thousand logs of about 1 KB each). 16 MiB leaves over 5×
/// headroom for the heaviest blocks (and busy L2s), while one answer costs the host at most about
/// 3× that transiently (the message, the answer's text, the parsed logs) — within a small container.
/// Raise both for a chain whose blocks carry more.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// One WebSocket message or frame from a node (MiB): tungstenite refuses a larger one before
    /// buffering it. At least `max_logs_mib`, so that a big `eth_getLogs` answer gets its own error.
    pub max_message_mib: usize,
    /// One block's `eth_getLogs` answer (MiB of JSON text). Over it, the block is refused, the
    /// connection dropped and the chain's next URL tried.
    pub max_logs_mib: usize,
    /// Most blocks one `eth_getLogs` range covers in a catch-up far below the head (the range
    /// adapts below it: halved when the node refuses, doubled while answers are cheap).
    #[serde(default = "default_max_range_blocks")]
    pub max_range_blocks: u64,
    /// Ask the node only for logs some subscription can match (`eth_getLogs` with the union of
    /// the subscriptions' addresses and topic0s), when following heads as in a catch-up. Off: ask
    /// for every log of each block (then `pipeline_events_received_total` counts the whole chain).
    #[serde(default = "default_filter_at_node")]
    pub filter_at_node: bool,
}

fn default_filter_at_node() -> bool {
    true
}

fn default_max_range_blocks() -> u64 {
    10_000
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_message_mib: 32,
            max_logs_mib: 16,
            max_range_blocks: default_max_range_blocks(),
            filter_at_node: default_filter_at_node(),
        }
    }
}

impl IngestConfig {
    pub fn limits(&self) -> crate::ingest::NodeLimits {
        crate::ingest::NodeLimits {
            max_message_bytes: self.max_message_mib.saturating_mul(1 << 20),
            max_logs_bytes: self.max_logs_mib.saturating_mul(1 << 20),
            max_range_blocks: self.max_range_blocks,
            filter_at_node: self.filter_at_node,
        }
    }
}

impl std::fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.ws_urls.iter().map(|u| crate::redact::url(u)).collect();
        f.debug_struct("ChainConfig")
            .field("name", &self.name)
            .field("chain_id", &self.chain_id)
            .field("ws_urls", &urls)
            .field("confirmations", &self.confirmations)
            .field("start_block", &self.start_block)
            .field("stale_after_ms", &self.stale_after_ms)
            .finish()
    }
}

/// Expected time between blocks of well-known chains (ms).
fn block_time_ms(chain_id: u64) -> Option<u64> {
    match chain_id {
        // Ethereum mainnet, Sepolia, Holesky, Hoodi.
        1 | 11_155_111 | 17_000 | 560_048 => Some(12_000),
        // Gnosis.
        100 => Some(5_000),
        // BNB Smart Chain.
        56 => Some(3_000),
        // Optimism, Base (and their Sepolias), Polygon PoS, Avalanche C-Chain.
        10 | 8453 | 11_155_420 | 84_532 | 137 | 43_114 => Some(2_000),
        // Arbitrum One and Sepolia.
        42_161 | 421_614 => Some(250),
        _ => None,
    }
}

/// Without a known block time (anvil and other dev chains mine only on demand, so may be idle for
/// minutes): five minutes.
const UNKNOWN_CHAIN_STALE_MS: u64 = 300_000;

impl ChainConfig {
    /// How long without a new head before the chain counts as stale: `stale_after_ms`, else five
    /// block times and at least 20 s (12 s blocks → 60 s, 2 s blocks → 20 s), else five minutes.
    pub fn stale_after(&self) -> Duration {
        let default = || match block_time_ms(self.chain_id) {
            Some(block) => (5 * block).max(20_000),
            None => UNKNOWN_CHAIN_STALE_MS,
        };
        Duration::from_millis(self.stale_after_ms.unwrap_or_else(default))
    }
}

pub(super) fn validate_chain_stale(chain: &ChainConfig) -> anyhow::Result<()> {
    if let Some(ms) = chain.stale_after_ms
        && !(1_000..=86_400_000).contains(&ms)
    {
        bail!(
            "chain {:?}: stale_after_ms must be between 1000 (1 s) and 86400000 (1 day), got {ms}",
            chain.name
        );
    }
    Ok(())
}

/// Far more than any chain needs; bounded so block numbers plus confirmations cannot overflow.
pub const MAX_CONFIRMATIONS: u64 = 1_000_000;

pub(super) fn validate_ingest(ingest: &IngestConfig) -> anyhow::Result<()> {
    if !(1..=1024).contains(&ingest.max_message_mib) {
        bail!(
            "PIPELINE_INGEST_MAX_MESSAGE_MIB must be between 1 and 1024, got {}",
            ingest.max_message_mib
        );
    }
    if !(1..=ingest.max_message_mib).contains(&ingest.max_logs_mib) {
        bail!(
            "PIPELINE_INGEST_MAX_LOGS_MIB must be between 1 and PIPELINE_INGEST_MAX_MESSAGE_MIB ({}), got {}",
            ingest.max_message_mib,
            ingest.max_logs_mib
        );
    }
    if !(1..=1_000_000).contains(&ingest.max_range_blocks) {
        bail!(
            "PIPELINE_INGEST_MAX_RANGE_BLOCKS must be between 1 and 1000000, got {}",
            ingest.max_range_blocks
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;

    #[test]
    fn stale_after_defaults_to_the_chains_block_time_and_can_be_set() {
        let dir = std::env::temp_dir().join(format!("pipeline-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        let chain = |name: &str, id: u64, extra: &str| {
            format!(
                "[[chains]]\nname = \"{name}\"\nchain_id = {id}\nws_urls = [\"ws://n\"]\n{extra}"
            )
        };
        let toml = [
            chain("mainnet", 1, ""),
            chain("base", 8453, ""),
            chain("anvil", 31337, ""),
            chain("tuned", 5, "stale_after_ms = 7000\n"),
        ]
        .concat();
        std::fs::write(&file, toml).unwrap();
        let c = Config::load_from(Some(&file), &[]).unwrap();
        let stale: Vec<Duration> = c.chains.iter().map(|c| c.stale_after()).collect();
        assert_eq!(
            stale,
            [60, 20, 300, 7].map(Duration::from_secs).to_vec(),
            "12 s blocks → 60 s, 2 s → 20 s, unknown → 5 min, configured"
        );
        std::fs::write(&file, chain("x", 5, "stale_after_ms = 10\n")).unwrap();
        let err = Config::load_from(Some(&file), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("stale_after_ms"), "{err:#}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_limits_are_bounded_and_a_bad_node_url_is_shown_redacted() {
        let c = Config::load_from(None, &env(&[("PIPELINE_INGEST_MAX_LOGS_MIB", "8")])).unwrap();
        assert_eq!(c.ingest.limits().max_logs_bytes, 8 << 20);
        assert_eq!(c.ingest.limits().max_message_bytes, 32 << 20);
        let err =
            Config::load_from(None, &env(&[("PIPELINE_INGEST_MAX_LOGS_MIB", "64")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PIPELINE_INGEST_MAX_LOGS_MIB"),
            "{err:#}"
        );
        let err = Config::load_from(
            None,
            &env(&[("ETHEREUM_WSS", "https://x.example/v3/KEY123")]),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("https://x.example/…") && !text.contains("KEY123"),
            "{text}"
        );
    }
}
