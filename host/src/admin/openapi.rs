//! The admin API's OpenAPI 3.1 document, generated from the code by utoipa, and the one way a
//! route is added: `utoipa_axum::routes!(handler)` in the resource's `routes()`, which takes the
//! method and path from the handler's `#[utoipa::path]` annotation. So the router serves exactly
//! what the document lists, and a handler without an annotation does not compile there. The
//! annotation names the request and response types; their `ToSchema` derives are the schemas.
//! What every `/v1` operation shares (the error answers, the bearer token) is added here once.
//!
//! `GET /v1/openapi.json` serves the document, built once.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AdminState;
use super::error::ErrorBody;

/// The answers any `/v1` operation may give besides its own: bad input (body, query parameter or
/// path id), no live token, a token whose scope is too low, an unknown id, a conflict with the
/// resource's state, the store unavailable.
const COMMON_ERRORS: [&str; 6] = ["400", "401", "403", "404", "409", "503"];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Pipeline admin API",
        description = "Chain events to signed webhooks, filtered by WebAssembly plugins. Errors are \
            {\"error\":{\"code\",\"message\"}} with a fitting status; lists are {\"items\",\"next_cursor\"}. \
            Tokens have a scope: read (GET), write (also mutations), admin (also /v1/tokens)."
    ),
    servers((url = "/")),
    security(("bearerAuth" = [])),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Open: liveness and readiness"),
        (name = "meta", description = "This document"),
        (name = "plugins", description = "WebAssembly filter/transform modules"),
        (name = "endpoints", description = "Webhook receivers and their signing secrets"),
        (name = "subscriptions", description = "What to watch, how to filter it, where it goes"),
        (name = "deliveries", description = "Webhooks sent and to send"),
        (name = "tokens", description = "API tokens (admin scope)"),
    )
)]
struct ApiDoc;

/// The `bearerAuth` scheme every `/v1` operation uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let error = ResponseBuilder::new()
            .description("The error shape of every failure")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .build();
        components
            .responses
            .insert("Error".to_string(), error.into());
    }
}

/// `/v1/openapi.json`.
pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new().routes(routes!(serve))
}

/// The document's starting point: info, security, shared components.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// Adds what every `/v1` operation shares to the paths the routers collected.
pub fn finish(mut document: OpenApi) -> OpenApi {
    for (path, item) in document.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_common_errors(operation);
        }
    }
    document
}

fn add_common_errors(operation: &mut Operation) {
    for status in COMMON_ERRORS {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::new("#/components/responses/Error")));
    }
}

/// The whole document (every route of `admin::api`), built once.
pub fn document() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, document) = super::api(None).split_for_parts();
        serde_json::to_value(finish(document)).unwrap_or_else(|error| {
            tracing::error!(%error, "the OpenAPI document could not be serialized");
            serde_json::Value::Null
        })
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = serde_json::Value))
)]
async fn serve() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], document().to_string())
}
