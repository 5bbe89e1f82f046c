//! Native test helpers (not compiled for wasm32).
//!
//! ```
//! use pipeline_sdk::{testing, Decision, Log};
//! fn keep_all(_: &(), _: &Log) -> Result<Decision, String> { Ok(Decision::Keep) }
//! let log = testing::log_from_json(r#"{"address":"0x00000000000000000000000000000000000000aa",
//!     "topics":[],"data":"0x","blockNumber":"0x1","logIndex":"0x0"}"#).unwrap();
//! assert_eq!(testing::run_native(keep_all, "null", &[log]), Ok(vec![Decision::Keep]));
//! ```

use crate::batch::{Batch, Log};
use crate::decision::{Decision, decode_output};
use crate::encode::{OwnedLog, encode_batch};
use crate::logging::Level;
use crate::rt::{parse_config, process_batch};
use alloy_primitives::{Address, B256, hex};
use core::fmt::Display;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses one JSON-RPC log object as returned by `eth_getLogs` (hex strings for quantities and
/// bytes). Missing or `null` fields (pending logs) become zero / empty / false; extra fields such
/// as `blockTimestamp` are ignored.
pub fn log_from_json(json: &str) -> Result<OwnedLog, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("log is not JSON: {e}"))?;
    log_from_value(&v)
}

/// Like [`log_from_json`] for an already parsed value.
pub fn log_from_value(v: &Value) -> Result<OwnedLog, String> {
    fn s<'v>(v: &'v Value, k: &str) -> Result<Option<&'v str>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{k}: expected a hex string, got {other}")),
        }
    }
    fn qty(v: &Value, k: &str) -> Result<u64, String> {
        match s(v, k)? {
            None => Ok(0),
            Some(x) => u64::from_str_radix(x.trim_start_matches("0x"), 16)
                .map_err(|e| format!("{k}: bad quantity {x:?}: {e}")),
        }
    }
    fn word(v: &Value, k: &str) -> Result<B256, String> {
        s(v, k)?.map_or(Ok(B256::ZERO), |x| {
            x.parse().map_err(|e| format!("{k}: {x:?}: {e}"))
        })
    }
    fn u32_qty(v: &Value, k: &str) -> Result<u32, String> {
        u32::try_from(qty(v, k)?).map_err(|_| format!("{k}: does not fit in u32"))
    }
    let address: Address = match s(v, "address")? {
        Some(a) => a.parse().map_err(|e| format!("address: {a:?}: {e}"))?,
        None => return Err("address: missing".into()),
    };
    let topics = match v.get("topics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ts)) => ts
            .iter()
            .map(|t| {
                t.as_str()
                    .ok_or_else(|| format!("topics: expected strings, got {t}"))?
                    .parse::<B256>()
                    .map_err(|e| format!("topics: {t}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(format!("topics: expected an array, got {other}")),
    };
    if topics.len() > 4 {
        return Err(format!("topics: {} topics (max 4)", topics.len()));
    }
    let data = match s(v, "data")? {
        None => Vec::new(),
        Some(d) => hex::decode(d).map_err(|e| format!("data: {e}"))?,
    };
    let removed = match v.get("removed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("removed: expected a bool, got {other}")),
    };
    Ok(OwnedLog {
        address,
        topics,
        data,
        block_number: qty(v, "blockNumber")?,
        block_hash: word(v, "blockHash")?,
        transaction_hash: word(v, "transactionHash")?,
        transaction_index: u32_qty(v, "transactionIndex")?,
        log_index: u32_qty(v, "logIndex")?,
        removed,
    })
}

/// Parses JSON lines (one log object per non-blank line), e.g. an excerpt of
/// `fixtures/mainnet-logs.jsonl` embedded with `include_str!`.
pub fn logs_from_jsonl(text: &str) -> Result<Vec<OwnedLog>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| log_from_json(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Runs `f` on `logs` through the same path as the wasm exports: config parsing (`null` or empty
/// = default), batch encoding, zero-copy decoding, processing, output encoding, and a strict
/// decode of that output. `Err((event_index, message))` is the error record.
///
/// Panics if the config is rejected (test that with [`crate::parse_config`]).
pub fn run_native<C, E, F>(
    f: F,
    config_json: &str,
    logs: &[OwnedLog],
) -> Result<Vec<Decision>, (usize, String)>
where
    C: DeserializeOwned + Default,
    E: Display,
    F: Fn(&C, &Log<'_>) -> Result<Decision, E>,
{
    let config: C =
        parse_config(config_json.as_bytes()).unwrap_or_else(|msg| panic!("config rejected: {msg}"));
    let input = encode_batch(logs);
    let mut out = Vec::new();
    process_batch(&config, &input, f, &mut out).expect("encode_batch output is a valid batch");
    let output = decode_output(&out, Some(logs.len() as u32)).expect("SDK wrote a valid output");
    match output.error {
        Some((i, msg)) => Err((i as usize, msg)),
        None => Ok(output.decisions),
    }
}

/// Calls `f` directly on one owned log (encoded, then viewed as a [`Log`]).
pub fn run_one<C, E, F>(f: F, config: &C, log: &OwnedLog) -> Result<Decision, E>
where
    F: Fn(&C, &Log<'_>) -> Result<Decision, E>,
{
    let bytes = encode_batch([log]);
    let batch = Batch::parse(&bytes).expect("encode_batch output is a valid batch");
    let view = batch.iter().next().unwrap();
    f(config, &view)
}

/// Returns and clears the log lines emitted on this thread by `error!` … `trace!`.
pub fn take_logs() -> Vec<(Level, String)> {
    crate::logging::native::take()
}

/// Calls `f` with a [`Log`] view of `log` (encoded as a one-event batch), for assertions on
/// accessors or `decode` without going through a plugin function.
pub fn with_log<R>(log: &OwnedLog, f: impl FnOnce(&Log<'_>) -> R) -> R {
    let bytes = encode_batch([log]);
    let batch = Batch::parse(&bytes).expect("encode_batch output is a valid batch");
    let view = batch.iter().next().unwrap();
    f(&view)
}
