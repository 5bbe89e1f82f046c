//! The generated OpenAPI document against the router: every route the router serves is in the
//! document (routes are registered only from their annotations, `utoipa_axum::routes!`), every
//! operation of the document is served, and the document keeps what clients rely on.

use super::*;

/// The files whose routers make up the API (the console, `/console/…`, is HTML, not API).
fn api_sources() -> Vec<(PathBuf, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/admin");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("tests") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path, text));
            }
        }
    }
    assert!(files.len() >= 10, "admin sources not found: {files:?}");
    files
}

/// Walks the route table: every route of the admin API is registered with
/// `.routes(routes!(handler))`, whose path and method come from the handler's
/// `#[utoipa::path]` — the same place the document takes them from. A route added any other way
/// (axum's `.route(…)`, `get(handler)`, a plain `Router`) fails here, naming the file.
#[test]
fn every_route_is_registered_from_its_openapi_annotation() {
    let forbidden = [
        ".route(\"",
        ".route_service(",
        ".nest_service(",
        "axum::routing::",
        "Router::new()",
    ];
    let mut registered = 0;
    for (path, text) in api_sources() {
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let plain = line.replace("OpenApiRouter", "");
            if let Some(pattern) = forbidden.iter().find(|p| plain.contains(*p)) {
                // The one plain `Router` is the outer one, which only merges the API and the console.
                let outer = path.ends_with("admin/mod.rs") && *pattern == "Router::new()";
                assert!(
                    outer,
                    "{}: `{}` registers a route the OpenAPI document does not know; annotate the \
                     handler with #[utoipa::path(...)] and register it with \
                     .routes(routes!(handler)) (see admin/openapi.rs)",
                    path.display(),
                    line.trim()
                );
            }
            registered += line.matches("routes!(").count();
        }
    }
    // Each `routes!(a, b)` is one path; the document has one path per call.
    let paths = crate::admin::openapi::document()["paths"]
        .as_object()
        .unwrap()
        .len();
    assert_eq!(registered, paths, "routes!(…) calls vs documented paths");
}

/// Every (method, path) of the document, path ids filled in.
fn operations() -> Vec<(Method, String)> {
    let doc = crate::admin::openapi::document();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if item.get(method.as_str().to_lowercase()).is_some() {
                operations.push((method, path.replace("{id}", "x_unknown")));
            }
        }
    }
    operations
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let h = harness().await;
    let operations = operations();
    assert!(operations.len() >= 26, "{operations:?}");
    for (method, uri) in operations {
        let body = if method == Method::GET || method == Method::DELETE {
            Body::empty()
        } else {
            Body::from("{}")
        };
        let (status, answer) = h.send(method.clone(), &uri, Some("t"), body).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_ne!(
            answer["error"]["message"], "no such route",
            "{method} {uri}: {status}"
        );
    }
}

#[tokio::test]
async fn the_document_is_served_and_keeps_what_clients_rely_on() {
    let h = harness().await;
    let (status, doc) = h.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&doc, crate::admin::openapi::document());
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        json!({"type": "http", "scheme": "bearer"})
    );
    assert_eq!(doc["security"], json!([{"bearerAuth": []}]));
    // Health is open; every /v1 operation answers the error shape on the common failures.
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]));
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if path.starts_with("/v1/") {
                for status in ["400", "401", "403", "404", "503"] {
                    assert_eq!(
                        operation["responses"][status]["$ref"], "#/components/responses/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    let error = &schemas["Error"]["properties"]["error"];
    let detail = schemas.pointer(
        error["$ref"]
            .as_str()
            .unwrap_or("#/components/schemas/ErrorDetail")
            .trim_start_matches("#/components/schemas"),
    );
    let detail = detail.unwrap_or(error);
    assert!(detail["properties"]["code"].is_object(), "{error}");
    assert!(detail["properties"]["message"].is_object(), "{error}");
    assert_eq!(
        schemas["DeliveryStatus"]["enum"],
        json!(["pending", "delivered", "retrying", "dead", "filling"])
    );
    let subscription = &schemas["Subscription"]["properties"];
    for field in [
        "batch",
        "ordering",
        "ordering_key",
        "on_dead",
        "ordering_blocked",
    ] {
        assert!(subscription.get(field).is_some(), "Subscription.{field}");
    }
    let create = &schemas["SubscriptionCreate"];
    assert_eq!(create["additionalProperties"], false, "{create}");
    assert_eq!(
        create["properties"]["batch"]["oneOf"][2]["properties"]["max_wait_ms"]["maximum"],
        60000
    );
    let text = doc.to_string();
    assert!(!text.contains(schema::INVALID_SCHEMA));
    // Every $ref points at something defined.
    for reference in text.split("\"$ref\":\"#/components/").skip(1) {
        let pointer = format!("/components/{}", reference.split('"').next().unwrap());
        assert!(doc.pointer(&pointer).is_some(), "dangling $ref {pointer}");
    }
}

/// What schemathesis found, each now answered as the document says: a body that is not a JSON
/// object (serde read `[null, null]` as a struct of its fields), and confirmations beyond what a
/// chain may have (2^31 was accepted: its deliveries would have been held for ever).
#[tokio::test]
async fn what_schemathesis_found_is_refused() {
    each_store(async |h: Harness| {
        let endpoint = h.endpoint().await;
        let uri = format!("/v1/endpoints/{endpoint}");
        for body in [json!([null, null]), json!(null), json!("x")] {
            let code = h
                .refused(Method::PATCH, &uri, body, StatusCode::BAD_REQUEST)
                .await;
            assert_eq!(code, "invalid_json");
        }
        let body = json!(["read token", "read"]);
        let code = h
            .refused(Method::POST, "/v1/tokens", body, StatusCode::BAD_REQUEST)
            .await;
        assert_eq!(code, "invalid_json");

        let (status, body) = h
            .subscription(json!({"confirmations": 2_147_483_648u64}))
            .await;
        assert_eq!(
            error_code(status, &body, StatusCode::BAD_REQUEST),
            "invalid_field"
        );
        let (status, body) = h.subscription(json!({"confirmations": 1_000_000})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let uri = format!("/v1/subscriptions/{}", body["id"].as_str().unwrap());
        let patch = json!({"confirmations": 1_000_001});
        let code = h
            .refused(Method::PATCH, &uri, patch, StatusCode::BAD_REQUEST)
            .await;
        assert_eq!(code, "invalid_field");
    })
    .await;
}
