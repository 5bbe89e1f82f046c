//! ERC-20 `Transfer` filter: keeps transfers with `value >= min_value`, payload
//! `{"token","from","to","value"}` (lowercase hex addresses, decimal value).
//! ERC-721 transfers (4 topics) and other 1-/2-topic variants are dropped.

use alloy_primitives::{U256, hex};
use alloy_sol_types::sol;
use pipeline_sdk::{Decision, Error, Log, json};
use serde::{Deserialize, Deserializer};

sol! {
    event Transfer(address indexed from, address indexed to, uint256 value);
}

/// `{"min_value": "<decimal string>"}`; default `"0"` (keep every ERC-20 transfer).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "decimal_u256")]
    pub min_value: U256,
}

fn decimal_u256<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Str(String),
        Num(u64),
    }
    let invalid = |what: &str| {
        serde::de::Error::custom(format!(
            "min_value must be a decimal string of at most 78 digits such as \"1000000\", got {what}"
        ))
    };
    match Raw::deserialize(d)
        .map_err(|_| invalid("a value that is neither a string nor an unsigned integer"))?
    {
        Raw::Num(n) => Ok(U256::from(n)),
        Raw::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            U256::from_str_radix(&s, 10)
                .map_err(|_| invalid(&format!("{s:?} (too large for uint256)")))
        }
        Raw::Str(s) => Err(invalid(&format!("{s:?}"))),
    }
}

pub fn process(cfg: &Config, log: &Log) -> Result<Decision, Error> {
    if log.topics().len() != 3 || !log.is::<Transfer>() {
        return Ok(Decision::Drop);
    }
    let Some(t) = log.decode::<Transfer>() else {
        return Ok(Decision::Drop);
    };
    if t.value < cfg.min_value {
        return Ok(Decision::Drop);
    }
    Ok(Decision::KeepWith(json!({
        "token": hex::encode_prefixed(log.address()),
        "from": hex::encode_prefixed(t.from),
        "to": hex::encode_prefixed(t.to),
        "value": t.value.to_string(),
    })))
}

pipeline_sdk::export_plugin!(Config, process);
