//! The `[ingest]` section (what one node may make the host hold), its checks, and a `Debug` of
//! `ChainConfig` that shows node URLs redacted.

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
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_message_mib: 32,
            max_logs_mib: 16,
        }
    }
}

impl IngestConfig {
    pub fn limits(&self) -> crate::ingest::NodeLimits {
        crate::ingest::NodeLimits {
            max_message_bytes: self.max_message_mib.saturating_mul(1 << 20),
            max_logs_bytes: self.max_logs_mib.saturating_mul(1 << 20),
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
            .finish()
    }
}

/// Far more than any chain needs; bounded so block numbers plus confirmations cannot overflow.
pub(super) const MAX_CONFIRMATIONS: u64 = 1_000_000;

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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

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
