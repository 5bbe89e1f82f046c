//! The plugin canary's routes and schemas in the hand-written document (issue 12), kept apart so
//! the document's conversion can take them over in one piece.

use serde_json::{Value, json};

use super::{array, id_param, integer, obj, op, schema, set, string};

/// `/v1/subscriptions/{id}/canary` and its promote (issue 12).
pub(super) fn with_paths(mut paths: Value) -> Value {
    set(
        &mut paths,
        "/v1/subscriptions/{id}/canary",
        json!({
            "post": op("subscriptions", "Start a canary: the candidate plugin runs in shadow on the live batches, its output never delivered \
                (400 unknown_plugin / invalid_plugin_config, 409 canary_exists while one runs)", Some(schema("CanaryCreate")), "201", schema("Canary")),
            "get": op("subscriptions", "How the canary's decisions compare with the live plugin's, and its first 100 differing events", None, "200", schema("Canary")),
            "delete": op("subscriptions", "Discard the canary", None, "204", Value::Null),
            "parameters": [id_param()],
        }),
    );
    set(
        &mut paths,
        "/v1/subscriptions/{id}/canary/promote",
        json!({
            "post": op("subscriptions", "Make the candidate the subscription's plugin, from the next batch on, and remove the canary", None, "200", schema("Subscription")),
            "parameters": [id_param()],
        }),
    );
    paths
}

pub(super) fn with_schemas(mut schemas: Value) -> Value {
    let count = integer();
    let output = obj(&[("kept", json!({"type": "boolean"})), ("data", json!({}))]);
    set(
        &mut schemas,
        "CanaryCreate",
        json!({"type": "object", "required": ["plugin_id"], "additionalProperties": false,
        "properties": {"plugin_id": string(), "plugin_config": {}}}),
    );
    set(
        &mut schemas,
        "Canary",
        obj(&[
            ("id", string()),
            ("subscription_id", string()),
            ("plugin_id", string()),
            ("plugin_config", json!({})),
            (
                "events",
                obj(&[
                    ("compared", count.clone()),
                    ("same", count.clone()),
                    ("only_live_kept", count.clone()),
                    ("only_canary_kept", count.clone()),
                    ("data_differs", count.clone()),
                ]),
            ),
            (
                "failures",
                obj(&[
                    ("traps", count.clone()),
                    ("out_of_fuel", count.clone()),
                    ("bad_output", count.clone()),
                    ("other", count.clone()),
                    ("last_error", json!({"type": ["string", "null"]})),
                ]),
            ),
            ("batches_compared", count.clone()),
            (
                "batches_skipped",
                json!({"type": "integer", "description": "Batches not compared: the canary's queue was full (the live path never waits)"}),
            ),
            ("events_skipped", count.clone()),
            (
                "examples",
                array(obj(&[
                    ("block_number", count.clone()),
                    ("block_hash", string()),
                    ("transaction_hash", string()),
                    ("log_index", count),
                    ("type", json!({"enum": ["log", "log.removed"]})),
                    ("live", output.clone()),
                    ("canary", output),
                ])),
            ),
            (
                "created_at",
                json!({"type": "string", "format": "date-time"}),
            ),
            (
                "updated_at",
                json!({"type": "string", "format": "date-time"}),
            ),
        ]),
    );
    schemas
}
