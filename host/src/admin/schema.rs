//! The parts of the OpenAPI document that Rust types alone cannot say: the values of the fields
//! still carried as strings (event types, modes, the statuses a client may set), and the
//! JSON-valued fields (filters, `batch`, `since`) whose shape the handlers check by hand. The
//! status enums the store reads and writes (`store/states.rs`) are re-exported here and are the
//! types of the views' fields themselves.

// The enums defined here are named in the document (`value_type = …`), never constructed.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

pub use crate::store::{DeliveryStatus, EndpointStatus, SubscriptionStatus};

/// The statuses a client may set on a subscription.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatusInput {
    Active,
    Paused,
}

/// The status of the delivery holding an ordering key back.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BlockedStatus {
    Retrying,
    Dead,
}

/// The type of a webhook event.
#[derive(Serialize, ToSchema)]
pub enum EventTypeName {
    #[serde(rename = "log")]
    Log,
    #[serde(rename = "log.removed")]
    LogRemoved,
}

/// A plugin's decision on one event of a dry run.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecisionName {
    Keep,
    Drop,
    Error,
}

/// `none`: deliveries in any order; `chain`: one in flight per ordering key, in chain order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    None,
    Chain,
}

/// What an ordered subscription keeps in order: all of it, or each contract's events.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderingKey {
    Subscription,
    Address,
}

/// A dead delivery at the head of its key: `halt` keeps the key blocked until it is retried or
/// recovered; `skip` passes over it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnDead {
    Halt,
    Skip,
}

/// `addresses`: emitting contracts, or null for any.
pub fn addresses() -> RefOr<Schema> {
    from_json(json!({
        "type": ["array", "null"],
        "description": "Emitting contracts (any of them); null or absent: any emitter",
        "minItems": 1,
        "items": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
    }))
}

/// `topics`: the positional filter.
pub fn topics() -> RefOr<Schema> {
    let topic = json!({"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"});
    from_json(json!({
        "type": ["array", "null"],
        "maxItems": 4,
        "description": "Positional: null = any, a topic, or a list (any of them)",
        "items": {"oneOf": [{"type": "null"}, topic, {"type": "array", "items": topic}]},
    }))
}

/// `batch`: none, per block, or by count and time.
pub fn batch() -> RefOr<Schema> {
    from_json(json!({
        "description": "null: one webhook per event; \"block\": one per block and event type; or up to max_events, sent at most max_wait_ms after the first",
        "oneOf": [
            {"type": "null"},
            {"type": "string", "enum": ["block"]},
            {"type": "object", "required": ["max_events", "max_wait_ms"], "additionalProperties": false, "properties": {
                "max_events": {"type": "integer", "minimum": 1, "maximum": 1000},
                "max_wait_ms": {"type": "integer", "minimum": 1, "maximum": 60000}}},
        ],
    }))
}

/// `since` of a recovery: a time or Unix milliseconds.
pub fn since() -> RefOr<Schema> {
    from_json(json!({
        "oneOf": [
            {"type": "string", "format": "date-time"},
            {"type": "integer", "minimum": 0, "description": "Unix milliseconds"},
        ],
    }))
}

/// A literal schema. The literals above are fixed, so this cannot fail in practice; if one did,
/// the document says so in that schema's description (a test reads every schema of the document).
fn from_json(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).unwrap_or_else(|error| {
        RefOr::T(Schema::Object(
            utoipa::openapi::schema::ObjectBuilder::new()
                .description(Some(format!("{INVALID_SCHEMA}: {error}")))
                .build(),
        ))
    })
}

/// Marks a schema literal that did not parse (see `from_json`).
pub const INVALID_SCHEMA: &str = "invalid schema literal";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_literal_parses_and_keeps_every_keyword() {
        for schema in [addresses(), topics(), batch(), since()] {
            let text = serde_json::to_string(&schema).unwrap();
            assert!(!text.contains(INVALID_SCHEMA), "{text}");
        }
        // Nothing is lost in utoipa's types (they ignore keywords they do not know).
        let batch = serde_json::to_value(batch()).unwrap();
        assert_eq!(
            batch["oneOf"][2]["properties"]["max_events"]["maximum"],
            1000
        );
        assert_eq!(batch["oneOf"][2]["additionalProperties"], false);
        assert_eq!(serde_json::to_value(addresses()).unwrap()["minItems"], 1);
        let topics = serde_json::to_value(topics()).unwrap();
        assert_eq!(topics["maxItems"], 4);
        assert_eq!(topics["type"], json!(["array", "null"]));
        assert_eq!(
            topics["items"]["oneOf"][2]["items"]["pattern"],
            "^0x[0-9a-fA-F]{64}$"
        );
        let since = serde_json::to_value(since()).unwrap();
        assert_eq!(since["oneOf"][0]["format"], "date-time");
    }
}
