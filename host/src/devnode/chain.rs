//! The replayed chain: an endless, deterministic sequence of blocks made of recorded mainnet logs.
//! Block `n`'s header and logs are pure functions of `n` (and the seed), so the node keeps no
//! history: memory does not grow with the number of blocks served.

use sha2::{Digest, Sha256};

use crate::fixtures;

/// keccak256("Transfer(address,address,uint256)")
pub const TRANSFER_TOPIC0: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// Which recorded logs fill the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogSource {
    /// Every recorded mainnet log (transfers, swaps, approvals, WETH, deposits, …), in order.
    Recorded,
    /// Only the recorded ERC-20 `Transfer` logs, re-addressed round-robin over `tokens` contracts.
    Transfers,
}

/// What the chain looks like.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    pub chain_id: u64,
    pub source: LogSource,
    /// Contracts the `transfers` source spreads its logs over (ignored by `recorded`).
    pub tokens: usize,
    /// Logs in every block.
    pub logs_per_block: usize,
    /// Seconds between blocks in the headers' `timestamp` (the real pace is the node's).
    pub block_seconds: u64,
    /// Makes block hashes differ between runs (so a restarted node is a new chain).
    pub seed: u64,
}

impl ChainSpec {
    /// A chain publishing `rate` events/s in blocks every `block_ms` (logs per block rounded, ≥ 1).
    pub fn paced(
        chain_id: u64,
        source: LogSource,
        tokens: usize,
        rate: f64,
        block_ms: u64,
        seed: u64,
    ) -> anyhow::Result<ChainSpec> {
        anyhow::ensure!(
            rate > 0.0 && rate.is_finite(),
            "the rate must be above 0 events/s"
        );
        anyhow::ensure!(block_ms > 0, "the block interval must be above 0 ms");
        Ok(ChainSpec {
            chain_id,
            source,
            tokens,
            logs_per_block: ((rate * block_ms as f64 / 1000.0).round() as usize).max(1),
            block_seconds: block_ms.div_ceil(1000).max(1),
            seed,
        })
    }
}

/// One recorded log, reduced to what a block needs (all fields are checked lowercase hex).
#[derive(Debug, Clone)]
struct Template {
    address: String,
    topics: Vec<String>,
    data: String,
    transaction_hash: String,
}

/// The chain as a function of the block number.
pub struct Chain {
    spec: ChainSpec,
    templates: Vec<Template>,
    genesis_time: u64,
}

impl Chain {
    pub fn new(spec: ChainSpec, genesis_time: u64) -> anyhow::Result<Chain> {
        anyhow::ensure!(spec.logs_per_block > 0, "blocks need at least one log");
        anyhow::ensure!(
            spec.source == LogSource::Recorded || spec.tokens > 0,
            "the transfers source needs at least one token"
        );
        let text = fixtures::mainnet_logs()?;
        let mut templates = Vec::new();
        for line in text.lines() {
            let Some(template) = template(line) else {
                continue;
            };
            if spec.source == LogSource::Transfers && !is_erc20_transfer(&template) {
                continue;
            }
            templates.push(template);
        }
        anyhow::ensure!(
            !templates.is_empty(),
            "no recorded logs fit {:?}",
            spec.source
        );
        Ok(Chain {
            spec,
            templates,
            genesis_time,
        })
    }

    /// A chain whose genesis block is timestamped now.
    pub fn starting_now(spec: ChainSpec) -> anyhow::Result<Chain> {
        let now = u64::try_from(crate::store::now_ms() / 1000).unwrap_or_default();
        Chain::new(spec, now)
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// The contract addresses the `transfers` source uses (empty for `recorded`).
    pub fn token_addresses(&self) -> Vec<String> {
        match self.spec.source {
            LogSource::Recorded => Vec::new(),
            LogSource::Transfers => (0..self.spec.tokens).map(token_address).collect(),
        }
    }

    pub fn block_hash(&self, number: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.spec.seed.to_be_bytes());
        hasher.update(number.to_be_bytes());
        let digest = hasher.finalize();
        // The last 8 bytes carry the number, so a hash maps back to its block without a table.
        format!("0x{}{number:016x}", hex::encode(&digest[..24]))
    }

    /// The block number a hash of this chain stands for.
    pub fn number_of(&self, hash: &str) -> Option<u64> {
        let digits = hash.strip_prefix("0x").filter(|d| d.len() == 64)?;
        let number = u64::from_str_radix(&digits[48..], 16).ok()?;
        (self.block_hash(number) == hash.to_ascii_lowercase()).then_some(number)
    }

    pub fn timestamp(&self, number: u64) -> u64 {
        self.genesis_time
            .saturating_add(number.saturating_mul(self.spec.block_seconds))
    }

    /// The JSON-RPC header object of block `number`.
    pub fn header_json(&self, number: u64) -> String {
        let parent = if number == 0 {
            format!("0x{:064x}", 0)
        } else {
            self.block_hash(number - 1)
        };
        format!(
            r#"{{"number":"{number:#x}","hash":"{}","parentHash":"{parent}","timestamp":"{:#x}","logsBloom":"0x{}"}}"#,
            self.block_hash(number),
            self.timestamp(number),
            "0".repeat(512)
        )
    }

    /// How many logs block `number` has (the genesis block has none).
    pub fn log_count(&self, number: u64) -> usize {
        if number == 0 {
            0
        } else {
            self.spec.logs_per_block
        }
    }

    /// Block `number`'s logs as JSON-RPC log objects, each kept when `keep` says so.
    pub fn logs_json(&self, number: u64, keep: &dyn Fn(&str, &[String]) -> bool) -> Vec<String> {
        let hash = self.block_hash(number);
        let first = (number.saturating_sub(1) as usize).wrapping_mul(self.spec.logs_per_block);
        (0..self.log_count(number))
            .filter_map(|i| {
                let index = (first.wrapping_add(i)) % self.templates.len();
                let t = &self.templates[index];
                let address = match self.spec.source {
                    LogSource::Recorded => t.address.clone(),
                    LogSource::Transfers => token_address(first.wrapping_add(i) % self.spec.tokens),
                };
                keep(&address, &t.topics).then(|| self.render(t, &address, number, &hash, i))
            })
            .collect()
    }

    fn render(&self, t: &Template, address: &str, number: u64, hash: &str, i: usize) -> String {
        let topics = t
            .topics
            .iter()
            .map(|topic| format!("\"{topic}\""))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            r#"{{"address":"{address}","topics":[{topics}],"data":"{}","blockNumber":"{number:#x}","blockHash":"{hash}","blockTimestamp":"{:#x}","transactionHash":"{}","transactionIndex":"{i:#x}","logIndex":"{i:#x}","removed":false}}"#,
            t.data,
            self.timestamp(number),
            t.transaction_hash,
        )
    }
}

/// The `i`-th token contract of the `transfers` source.
pub fn token_address(i: usize) -> String {
    format!("0x{:040x}", 0x7000_0000_0000_0000_0000u128 + i as u128)
}

fn is_erc20_transfer(t: &Template) -> bool {
    t.topics.len() == 3 && t.topics[0] == TRANSFER_TOPIC0 && t.data.len() == 66
}

fn is_hex(text: &str) -> bool {
    text.strip_prefix("0x").is_some_and(|d| {
        d.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A recorded line as a template, or `None` when a field is missing or not lowercase hex.
fn template(line: &str) -> Option<Template> {
    let log: serde_json::Value = serde_json::from_str(line).ok()?;
    let field = |name: &str| log[name].as_str().filter(|s| is_hex(s)).map(str::to_string);
    let topics = log["topics"]
        .as_array()?
        .iter()
        .map(|t| t.as_str().filter(|s| is_hex(s)).map(str::to_string))
        .collect::<Option<Vec<_>>>()?;
    Some(Template {
        address: field("address")?,
        topics,
        data: field("data")?,
        transaction_hash: field("transactionHash")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::ChainLog;

    fn chain(source: LogSource) -> Chain {
        let spec = ChainSpec {
            chain_id: 1,
            source,
            tokens: 3,
            logs_per_block: 7,
            block_seconds: 2,
            seed: 42,
        };
        Chain::new(spec, 1_000).unwrap()
    }

    #[test]
    fn blocks_chain_by_parent_hash_and_hashes_map_back_to_numbers() {
        let chain = chain(LogSource::Recorded);
        for n in [1u64, 2, 500] {
            let header: serde_json::Value = serde_json::from_str(&chain.header_json(n)).unwrap();
            assert_eq!(header["parentHash"], chain.block_hash(n - 1));
            assert_eq!(chain.number_of(header["hash"].as_str().unwrap()), Some(n));
        }
        assert_eq!(chain.number_of(&format!("0x{:064x}", 5)), None);
        assert_eq!(chain.timestamp(3), 1_006);
    }

    #[test]
    fn every_log_parses_and_belongs_to_its_block() {
        let chain = chain(LogSource::Recorded);
        let logs = chain.logs_json(4, &|_, _| true);
        assert_eq!(logs.len(), 7);
        for (i, text) in logs.iter().enumerate() {
            let log = ChainLog::from_json(text).unwrap();
            assert_eq!(log.block_number, 4);
            assert_eq!(format!("{:#x}", log.block_hash), chain.block_hash(4));
            assert_eq!(log.log_index, i as u64);
        }
        assert!(chain.logs_json(0, &|_, _| true).is_empty());
    }

    #[test]
    fn transfers_spread_over_the_tokens_and_filters_apply() {
        let chain = chain(LogSource::Transfers);
        let logs = chain.logs_json(1, &|_, _| true);
        let addresses: std::collections::BTreeSet<String> = logs
            .iter()
            .map(|l| format!("{:#x}", ChainLog::from_json(l).unwrap().address))
            .collect();
        assert_eq!(addresses.len(), 3);
        assert!(
            addresses
                .iter()
                .all(|a| chain.token_addresses().contains(a))
        );
        let only_first = token_address(0);
        let kept = chain.logs_json(1, &|address, _| address == only_first);
        assert_eq!(kept.len(), 3, "7 logs round-robin over 3 tokens");
    }
}
