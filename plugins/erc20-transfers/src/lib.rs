//! ERC-20 `Transfer` filter: keeps transfers with `value >= min_value`, payload
//! `{"from","to","token","value"}` (lowercase hex addresses, decimal value string).
//! ERC-721 transfers (4 topics) and other 1-/2-topic variants are dropped.

use alloy_primitives::{U256, hex};
use alloy_sol_types::sol;
use pipeline_sdk::{Decision, Error, JsonObject, Log, json};
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
    let Some(t) = kept_transfer(cfg, log) else {
        return Ok(Decision::Drop);
    };
    // Written straight into a reused buffer. The keys are in the order a `serde_json::Value` map
    // writes them (sorted), so the payload bytes are the same as `process_via_value`'s.
    Ok(Decision::KeepJson(
        JsonObject::new()
            .hex("from", t.from)
            .hex("to", t.to)
            .hex("token", log.address())
            .decimal("value", t.value)
            .finish(),
    ))
}

/// [`process`] with the payload built as a `serde_json::Value`, as this plugin did before the
/// SDK's `JsonObject`: kept as the reference that the tests and the A/B benchmark compare with.
pub fn process_via_value(cfg: &Config, log: &Log) -> Result<Decision, Error> {
    let Some(t) = kept_transfer(cfg, log) else {
        return Ok(Decision::Drop);
    };
    Ok(Decision::KeepWith(json!({
        "token": hex::encode_prefixed(log.address()),
        "from": hex::encode_prefixed(t.from),
        "to": hex::encode_prefixed(t.to),
        "value": t.value.to_string(),
    })))
}

/// The decoded transfer when `log` is an ERC-20 `Transfer` (3 topics) of at least `min_value`.
fn kept_transfer(cfg: &Config, log: &Log) -> Option<Transfer> {
    if log.topics().len() != 3 || !log.is::<Transfer>() {
        return None;
    }
    let t = log.decode::<Transfer>()?;
    (t.value >= cfg.min_value).then_some(t)
}

pipeline_sdk::export_plugin!(Config, process);
