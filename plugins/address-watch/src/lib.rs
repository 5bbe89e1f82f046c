//! Keeps events that involve watched addresses: the emitter, or an indexed topic (topics 1..=3)
//! holding an address (its first 12 bytes are zero). Payload:
//! `{"matched": ["0x…", …], "via": ["emitter" | "topic1" | "topic2" | "topic3", …]}` with unique
//! lowercase addresses in order of first match and every place that matched.

use alloy_primitives::{Address, hex};
use pipeline_sdk::{Decision, Log, json};
use serde::{Deserialize, Deserializer};

/// `{"addresses": ["0x…", …]}` (20-byte hex, any case). Default / empty: nothing matches.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Sorted and deduplicated for binary search.
    #[serde(deserialize_with = "sorted_addresses")]
    pub addresses: Vec<Address>,
}

fn sorted_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Address>, D::Error> {
    let raw = Vec::<String>::deserialize(d).map_err(|e| {
        serde::de::Error::custom(format!("addresses must be an array of hex strings ({e})"))
    })?;
    let mut out = raw
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ok = s.len() == 42 && s.starts_with("0x");
            ok.then(|| s.parse::<Address>().ok())
                .flatten()
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "addresses[{i}] = {s:?} is not a 0x-prefixed 20-byte hex address"
                    ))
                })
        })
        .collect::<Result<Vec<_>, D::Error>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub fn process(cfg: &Config, log: &Log) -> Result<Decision, String> {
    let watched = |a: &Address| cfg.addresses.binary_search(a).is_ok();
    let mut matched: Vec<Address> = Vec::new();
    let mut via: Vec<&str> = Vec::new();
    let emitter = log.address();
    if watched(&emitter) {
        matched.push(emitter);
        via.push("emitter");
    }
    for (i, t) in log.topics().iter().enumerate().skip(1) {
        if t[..12] != [0u8; 12] {
            continue;
        }
        let a = Address::from_word(*t);
        if watched(&a) {
            if !matched.contains(&a) {
                matched.push(a);
            }
            via.push(["topic1", "topic2", "topic3"][i - 1]);
        }
    }
    if matched.is_empty() {
        return Ok(Decision::Drop);
    }
    let matched: Vec<String> = matched.iter().map(hex::encode_prefixed).collect();
    Ok(Decision::KeepWith(
        json!({ "matched": matched, "via": via }),
    ))
}

pipeline_sdk::export_plugin!(Config, process);
