//! The subscription filter columns as the store holds them (JSON text), parsed.

use alloy_primitives::{Address, B256};

/// `["0x…", …]` or absent (any emitter).
pub fn parse_addresses(json: Option<&str>) -> Result<Option<Vec<Address>>, String> {
    let Some(json) = json else { return Ok(None) };
    let values: Option<Vec<String>> =
        serde_json::from_str(json).map_err(|e| format!("addresses: {e}"))?;
    values
        .map(|list| {
            list.iter()
                .map(|a| {
                    a.parse::<Address>()
                        .map_err(|e| format!("address {a:?}: {e}"))
                })
                .collect()
        })
        .transpose()
}

/// Positional topics: each entry `null` (any), a topic, or a list of topics (any of them).
pub fn parse_topics(json: Option<&str>) -> Result<Vec<Option<Vec<B256>>>, String> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("topics: {e}"))?;
    let positions = match value {
        serde_json::Value::Null => return Ok(Vec::new()),
        serde_json::Value::Array(p) => p,
        _ => return Err("topics must be an array".into()),
    };
    if positions.len() > 4 {
        return Err(format!(
            "topics has {} positions; a log has at most 4",
            positions.len()
        ));
    }
    let topic = |v: &serde_json::Value| -> Result<B256, String> {
        let s = v
            .as_str()
            .ok_or_else(|| format!("topic {v} is not a string"))?;
        s.parse::<B256>().map_err(|e| format!("topic {s:?}: {e}"))
    };
    positions
        .iter()
        .map(|p| match p {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Array(options) if options.is_empty() => {
                Err("an empty topic list matches nothing; use null for any".into())
            }
            serde_json::Value::Array(options) => options
                .iter()
                .map(topic)
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            single => topic(single).map(|t| Some(vec![t])),
        })
        .collect()
}
