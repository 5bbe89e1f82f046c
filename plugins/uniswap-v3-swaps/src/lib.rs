//! Uniswap V3 `Swap` decoder. Payload:
//! `{"pool","sender","recipient","amount0","amount1","sqrtPriceX96","liquidity","tick","price"}`:
//! addresses are lowercase hex; amounts, `sqrtPriceX96` and `liquidity` are decimal strings
//! (amounts signed, from the pool's point of view); `tick` is a JSON number; `price` is
//! `(sqrtPriceX96 / 2^96)^2` as a float: token1 per token0 in raw units (not adjusted for decimals).

use alloy_primitives::{Address, U160};
use alloy_sol_types::sol;
use pipeline_sdk::{Decision, Error, JsonObject, Log};
use serde::{Deserialize, Deserializer};

sol! {
    event Swap(
        address indexed sender,
        address indexed recipient,
        int256 amount0,
        int256 amount1,
        uint160 sqrtPriceX96,
        uint128 liquidity,
        int24 tick
    );
}

/// `{"pools": ["0x…", …]}`: only swaps emitted by these pools. Absent or empty: every pool.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "sorted_addresses")]
    pub pools: Vec<Address>,
}

fn sorted_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Address>, D::Error> {
    let raw = Vec::<String>::deserialize(d).map_err(|e| {
        serde::de::Error::custom(format!("pools must be an array of hex strings ({e})"))
    })?;
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let a = (s.len() == 42 && s.starts_with("0x"))
            .then(|| s.parse::<Address>().ok())
            .flatten()
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "pools[{i}] = {s:?} is not a 0x-prefixed 20-byte hex address"
                ))
            })?;
        out.push(a);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `(sqrtPriceX96 / 2^96)^2`: token1 per token0 in raw units.
pub fn price(sqrt_price_x96: U160) -> f64 {
    let s = f64::from(sqrt_price_x96) / 2f64.powi(96);
    s * s
}

pub fn process(cfg: &Config, log: &Log) -> Result<Decision, Error> {
    if !log.is::<Swap>() {
        return Ok(Decision::Drop);
    }
    let pool = log.address();
    if !cfg.pools.is_empty() && cfg.pools.binary_search(&pool).is_err() {
        return Ok(Decision::Drop);
    }
    let Some(s) = log.decode::<Swap>() else {
        return Ok(Decision::Drop);
    };
    // Keys in sorted order, as the `serde_json::Value` this plugin used before wrote them.
    Ok(Decision::KeepJson(
        JsonObject::new()
            .decimal("amount0", s.amount0)
            .decimal("amount1", s.amount1)
            .decimal("liquidity", s.liquidity)
            .hex("pool", pool)
            .number("price", price(s.sqrtPriceX96))
            .hex("recipient", s.recipient)
            .hex("sender", s.sender)
            .decimal("sqrtPriceX96", s.sqrtPriceX96)
            .number("tick", s.tick.as_i32())
            .finish(),
    ))
}

pipeline_sdk::export_plugin!(Config, process);
