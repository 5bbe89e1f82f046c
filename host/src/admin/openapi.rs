//! `GET /v1/openapi.json`: a hand-written OpenAPI 3.1 document of every admin route, kept beside
//! the handlers it describes (a test checks every route is listed).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AdminState;

mod canary;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Pipeline admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Chain events to signed webhooks, filtered by WebAssembly plugins. Errors are \
                            {\"error\":{\"code\",\"message\"}} with a fitting 4xx; lists are {\"items\",\"next_cursor\"}. \
                            Tokens have a scope: read (GET), write (also mutations), admin (also /v1/tokens)."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": canary::with_paths(paths()),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": reply("Bad input, missing token, unknown id, conflict or store unavailable", schema("Error"))},
            "schemas": canary::with_schemas(schemas()),
        },
    })
}

fn paths() -> Value {
    json!({
        "/healthz": {"get": open("health", "Liveness", json!({"200": reply("The process answers", obj(&[("status", string())]))}))},
        "/readyz": {"get": open("health", "Readiness: store reachable, chains connected, runtime responsive", json!({
            "200": reply("Ready", schema("Readiness")), "503": reply("Not ready; the failing checks say why", schema("Readiness"))}))},
        "/v1/openapi.json": {"get": op("meta", "This document", None, "200", json!({"type": "object"}))},
        "/v1/plugins": {
            "post": with_params(upload(), vec![query_param("name", "Display name of the plugin")]),
            "get": op("plugins", "List plugins", None, "200", list_of("Plugin")),
        },
        "/v1/plugins/{id}": {
            "get": op("plugins", "Show a plugin", None, "200", schema("Plugin")),
            "delete": op("plugins", "Delete a plugin (409 while a subscription uses it)", None, "204", Value::Null),
            "parameters": [id_param()],
        },
        "/v1/plugins/{id}/test": {
            "post": op("plugins", "Dry-run the plugin on sample events with production limits", Some(schema("DryRunRequest")), "200", schema("DryRunReport")),
            "parameters": [id_param()],
        },
        "/v1/endpoints": {
            "post": op("endpoints", "Create an endpoint; the answer shows its secret, once", Some(schema("EndpointCreate")), "201", schema("Endpoint")),
            "get": op("endpoints", "List endpoints", None, "200", list_of("Endpoint")),
        },
        "/v1/endpoints/{id}": {
            "get": op("endpoints", "Show an endpoint", None, "200", schema("Endpoint")),
            "patch": op("endpoints", "Change url, description or status", Some(schema("EndpointUpdate")), "200", schema("Endpoint")),
            "delete": op("endpoints", "Delete an endpoint (409 while subscriptions use it)", None, "204", Value::Null),
            "parameters": [id_param()],
        },
        "/v1/endpoints/{id}/rotate-secret": {
            "post": op("endpoints", "New secret; the previous one keeps signing for 24 h", None, "200", obj(&[("secret", string())])),
            "parameters": [id_param()],
        },
        "/v1/endpoints/{id}/recover": {
            "post": op("endpoints", "Re-drive the endpoint's dead deliveries created since a time", Some(schema("RecoverRequest")), "200", obj(&[("recovered", integer())])),
            "parameters": [id_param()],
        },
        "/v1/subscriptions": {
            "post": op("subscriptions", "Create a subscription", Some(schema("SubscriptionCreate")), "201", schema("Subscription")),
            "get": op("subscriptions", "List subscriptions", None, "200", list_of("Subscription")),
        },
        "/v1/subscriptions/{id}": {
            "get": op("subscriptions", "Show a subscription with its status, last plugin error and parked events", None, "200", schema("Subscription")),
            "patch": op("subscriptions", "Change filters, plugin, config, confirmations or status; a new plugin or config releases a quarantine", Some(schema("SubscriptionUpdate")), "200", schema("Subscription")),
            "delete": op("subscriptions", "Delete a subscription and its parked events", None, "204", Value::Null),
            "parameters": [id_param()],
        },
        "/v1/subscriptions/{id}/logs": {
            "get": op("subscriptions", "Recent plugin log lines", None, "200", obj(&[("items", array(schema("PluginLogLine")))])),
            "parameters": [id_param()],
        },
        "/v1/subscriptions/{id}/parked": {
            "get": op("subscriptions", "Events held back by a failing plugin (first 100)", None, "200", list_of("ParkedEvent")),
            "parameters": [id_param()],
        },
        "/v1/subscriptions/{id}/reprocess": {
            "post": op("subscriptions", "Run up to 1000 parked events through the current plugin (409 plugin_failed if it fails again)", None, "200",
                obj(&[("reprocessed", integer()), ("delivered", integer()), ("dropped", integer()), ("orphaned", integer()), ("held", integer())])),
            "parameters": [id_param()],
        },
        "/v1/deliveries": {
            "get": with_params(op("deliveries", "List deliveries, newest first", None, "200", list_of("Delivery")), vec![
                query_param("subscription_id", "Only this subscription's"),
                query_param("endpoint_id", "Only this endpoint's"),
                json!({"name": "status", "in": "query", "schema": {"enum": ["pending", "delivered", "retrying", "dead", "filling"]}}),
                json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}),
                query_param("cursor", "next_cursor of the previous page"),
            ]),
        },
        "/v1/deliveries/{id}": {
            "get": op("deliveries", "Show a delivery with its body and attempts", None, "200", schema("DeliveryDetail")),
            "parameters": [id_param()],
        },
        "/v1/tokens": {
            "post": op("tokens", "Create an API token (admin scope); the answer shows the token, once", Some(schema("TokenCreate")), "201", schema("Token")),
            "get": op("tokens", "List API tokens (admin scope), revoked ones included; never the token", None, "200", list_of("Token")),
        },
        "/v1/tokens/{id}": {
            "delete": op("tokens", "Revoke an API token (admin scope); it is refused with 401 from then on", None, "204", Value::Null),
            "parameters": [id_param()],
        },
        "/v1/deliveries/{id}/retry": {
            "post": op("deliveries", "Send the delivery again now", None, "202", obj(&[("id", string()), ("status", json!({"const": "retrying"}))])),
            "parameters": [id_param()],
        },
    })
}

fn upload() -> Value {
    let mut operation = op(
        "plugins",
        "Upload a plugin; the id is the sha256 of the bytes (200 when already stored)",
        None,
        "201",
        schema("Plugin"),
    );
    let wasm = json!({"required": true, "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}}});
    set(&mut operation, "requestBody", wasm);
    if let Some(responses) = operation.get_mut("responses") {
        set(
            responses,
            "200",
            reply("The same bytes were already stored", schema("Plugin")),
        );
        set(
            responses,
            "413",
            json!({"$ref": "#/components/responses/Error"}),
        );
    }
    operation
}

fn schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let nullable_string = json!({"type": ["string", "null"]});
    let address = json!({"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"});
    let topic = json!({"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"});
    json!({
        "Error": obj(&[("error", obj(&[("code", string()), ("message", string())]))]),
        "Readiness": obj(&[("status", json!({"enum": ["ready", "not_ready"]})),
            ("checks", json!({"type": "object", "additionalProperties": obj(&[("ok", json!({"type": "boolean"})), ("detail", string())])}))]),
        "Plugin": obj(&[("id", string()), ("name", string()), ("size", integer()), ("created_at", time.clone())]),
        "DryRunRequest": {"type": "object", "required": ["events"], "properties": {
            "config": {"description": "Any JSON, passed to pipeline_init"},
            "events": array(json!({"type": "object", "description": "A JSON-RPC log object"}))}},
        "DryRunReport": obj(&[("events", integer()), ("kept", integer()), ("dropped", integer()),
            ("results", array(obj(&[("index", integer()), ("decision", json!({"enum": ["keep", "drop", "error"]})), ("data", json!({}))]))),
            ("fuel_used", integer()), ("duration_us", integer()), ("calls", integer()),
            ("logs", array(obj(&[("level", integer()), ("message", string())]))), ("logs_dropped", integer()), ("error", nullable_string.clone())]),
        "Endpoint": obj(&[("id", string()), ("url", string()), ("description", string()), ("status", json!({"enum": ["enabled", "disabled"]})),
            ("disabled_reason", nullable_string.clone()), ("secret", json!({"type": "string", "description": "Only in the answer to the creation"})),
            ("created_at", time.clone()), ("updated_at", time.clone())]),
        "EndpointCreate": {"type": "object", "required": ["url"], "additionalProperties": false, "properties": {
            "url": {"type": "string", "format": "uri"}, "description": string(),
            "secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$", "description": "whsec_ and base64 of 24 to 64 bytes; generated when absent"}}},
        "EndpointUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "url": {"type": "string", "format": "uri"}, "description": string(), "status": {"enum": ["enabled", "disabled"]}}},
        "RecoverRequest": {"type": "object", "required": ["since"], "properties": {
            "since": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "description": "Unix milliseconds"}]}}},
        "TopicFilter": {"type": ["array", "null"], "maxItems": 4, "description": "Positional: null = any, a topic, or a list (any of them)",
            "items": {"oneOf": [{"type": "null"}, topic.clone(), array(topic)]}},
        "Subscription": obj(&[("id", string()), ("endpoint_id", string()), ("chain_id", integer()),
            ("addresses", json!({"type": ["array", "null"], "items": address.clone()})), ("topics", schema("TopicFilter")),
            ("plugin_id", nullable_string.clone()), ("plugin_config", json!({})), ("confirmations", integer()),
            ("status", json!({"enum": ["active", "paused", "quarantined"]})), ("last_error", nullable_string.clone()),
            ("batch", schema("Batch")), ("ordering", json!({"enum": ["none", "chain"]})),
            ("ordering_key", json!({"enum": ["subscription", "address"]})), ("on_dead", json!({"enum": ["halt", "skip"]})),
            ("ordering_blocked", array(schema("BlockedKey"))),
            ("parked_events", integer()), ("created_at", time.clone()), ("updated_at", time.clone())]),
        "Batch": {"description": "null: one webhook per event; \"block\": one per block and event type; or up to max_events, sent at most max_wait_ms after the first",
            "oneOf": [{"type": "null"}, {"enum": ["block"]}, {"type": "object", "required": ["max_events", "max_wait_ms"], "additionalProperties": false,
                "properties": {"max_events": {"type": "integer", "minimum": 1, "maximum": 1000}, "max_wait_ms": {"type": "integer", "minimum": 1, "maximum": 60000}}}]},
        "BlockedKey": obj(&[("key", string()), ("delivery_id", string()), ("status", json!({"enum": ["retrying", "dead"]})),
            ("attempts", integer()), ("last_error", nullable_string.clone()), ("since", json!({"type": ["string", "null"], "format": "date-time"}))]),
        "SubscriptionCreate": {"type": "object", "required": ["endpoint_id", "chain_id"], "additionalProperties": false, "properties": {
            "endpoint_id": string(), "chain_id": {"type": "integer", "minimum": 1},
            "addresses": {"type": ["array", "null"], "items": address.clone()}, "topics": schema("TopicFilter"),
            "plugin_id": nullable_string.clone(), "plugin_config": {}, "confirmations": {"type": "integer", "minimum": 0}, "batch": schema("Batch"), "ordering": {"enum": ["none", "chain"]},
            "ordering_key": {"enum": ["subscription", "address"], "description": "address: one order per contract (not with batch)"},
            "on_dead": {"enum": ["halt", "skip"], "description": "a dead delivery at the head of its key: halt keeps the key blocked until it is retried or recovered; skip passes over it"}}},
        "SubscriptionUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "addresses": {"type": ["array", "null"], "items": address}, "topics": schema("TopicFilter"),
            "plugin_id": {"type": ["string", "null"], "description": "null detaches the plugin"}, "plugin_config": {},
            "confirmations": {"type": "integer", "minimum": 0}, "status": {"enum": ["active", "paused"]}, "batch": schema("Batch"), "ordering": {"enum": ["none", "chain"]},
            "ordering_key": {"enum": ["subscription", "address"], "description": "address: one order per contract (not with batch)"},
            "on_dead": {"enum": ["halt", "skip"], "description": "a dead delivery at the head of its key: halt keeps the key blocked until it is retried or recovered; skip passes over it"}}},
        "Token": obj(&[("id", string()), ("name", string()), ("scope", json!({"enum": ["read", "write", "admin"]})),
            ("created_at", time.clone()), ("last_used_at", json!({"type": ["string", "null"], "format": "date-time"})),
            ("revoked_at", json!({"type": ["string", "null"], "format": "date-time"})),
            ("token", json!({"type": "string", "description": "Only in the answer to the creation"}))]),
        "TokenCreate": {"type": "object", "required": ["name", "scope"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "scope": {"enum": ["read", "write", "admin"], "description": "read: GET only; write: also mutations; admin: also /v1/tokens"}}},
        "PluginLogLine": obj(&[("at", time.clone()), ("level", string()), ("message", string())]),
        "ParkedEvent": obj(&[("seq", integer()), ("chain_id", integer()), ("event_type", json!({"enum": ["log", "log.removed"]})),
            ("log", json!({"type": "object"})), ("error", string()), ("event_index", json!({"type": ["integer", "null"]})), ("created_at", time.clone())]),
        "Delivery": delivery_schema(),
        "DeliveryDetail": {"allOf": [schema("Delivery"), obj(&[("body", json!({"type": "object"})), ("attempts", array(schema("Attempt")))])]},
        "Attempt": obj(&[("attempt", integer()), ("status_code", json!({"type": ["integer", "null"]})), ("latency_ms", integer()),
            ("error", nullable_string.clone()), ("response_body", nullable_string), ("created_at", time)]),
    })
}

fn delivery_schema() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    obj(&[
        ("id", string()),
        ("subscription_id", string()),
        ("endpoint_id", string()),
        ("chain_id", integer()),
        ("event_type", json!({"enum": ["log", "log.removed"]})),
        ("block_number", integer()),
        (
            "status",
            json!({"enum": ["pending", "delivered", "retrying", "dead", "filling"]}),
        ),
        ("attempt_count", integer()),
        ("next_attempt_at", time.clone()),
        ("last_status_code", json!({"type": ["integer", "null"]})),
        ("last_error", json!({"type": ["string", "null"]})),
        ("created_at", time.clone()),
        ("updated_at", time),
    ])
}

/// An authenticated operation with a JSON body (if any) and the common error answers.
fn op(tag: &str, summary: &str, body: Option<Value>, status: &str, response: Value) -> Value {
    let mut responses = json!({
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Error"},
    });
    let success = if response.is_null() {
        json!({"description": "Done"})
    } else {
        reply("Success", response)
    };
    set(&mut responses, status, success);
    let mut operation = json!({"tags": [tag], "summary": summary, "responses": responses});
    if let Some(schema) = body {
        set(
            &mut operation,
            "requestBody",
            json!({"required": true, "content": {"application/json": {"schema": schema}}}),
        );
    }
    operation
}

/// An operation that needs no token.
fn open(tag: &str, summary: &str, responses: Value) -> Value {
    json!({"tags": [tag], "summary": summary, "security": [], "responses": responses})
}

fn with_params(mut operation: Value, params: Vec<Value>) -> Value {
    set(&mut operation, "parameters", Value::Array(params));
    operation
}

/// Sets `key` of an object (every value this file builds is one).
fn set(target: &mut Value, key: &str, value: Value) {
    if let Some(object) = target.as_object_mut() {
        object.insert(key.to_string(), value);
    }
}

fn reply(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_of(name: &str) -> Value {
    obj(&[
        ("items", array(schema(name))),
        ("next_cursor", json!({"type": ["string", "null"]})),
    ])
}

fn obj(fields: &[(&str, Value)]) -> Value {
    let properties: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    json!({"type": "object", "properties": properties})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn integer() -> Value {
    json!({"type": "integer"})
}
