//! The web console at `/console/` on the admin port: server-rendered HTML (maud), a little
//! JavaScript for progressive enhancement (local times, refreshing the overview), charts as inline
//! SVG. Assets are compiled into the binary. Every page reads through the same store functions and
//! admin handlers as `/v1`, so an action in the console is exactly the API call it names; every
//! list is one capped page, every chart comes from the bounded sample ring.
//!
//! One file per page; `auth.rs` (sign-in and the guard every request passes), `session.rs`,
//! `layout.rs`, `charts.rs`, `samples.rs`.

pub mod auth;
mod charts;
mod deliveries;
mod endpoints;
pub mod layout;
mod overview;
mod plugins;
pub mod samples;
pub mod session;
mod subscriptions;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::admin::AdminState;
use crate::deliver::BreakerBoard;
pub use samples::Samples;
use session::Sessions;

/// What the console shares with the rest of the host: the sample ring the sampler task fills and
/// the dispatcher's circuit breakers.
#[derive(Clone, Default)]
pub struct ConsoleShared {
    pub samples: Samples,
    pub breakers: BreakerBoard,
}

/// The console's handlers' state.
#[derive(Clone)]
pub struct ConsoleState {
    pub admin: AdminState,
    pub sessions: Sessions,
    /// Largest form accepted (a plugin upload).
    pub upload_limit: usize,
}

/// Rows on one page of any list.
pub const PAGE_SIZE: i64 = 50;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes, to merge into the admin router.
pub fn router(admin: AdminState) -> Router<AdminState> {
    let upload_limit = admin.runtime.limits().max_module_bytes + (1 << 20);
    let state = ConsoleState {
        admin,
        sessions: Sessions::default(),
        upload_limit,
    };
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview::show))
        .route(
            "/console/sign-in",
            get(auth::sign_in_page).post(auth::sign_in),
        )
        .route("/console/sign-out", post(auth::sign_out))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .merge(subscriptions::routes())
        .merge(endpoints::routes())
        .merge(deliveries::routes())
        .merge(plugins::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(DefaultBodyLimit::max(upload_limit))
        .with_state(state)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Query parameters that are empty in a submitted filter form mean "any".
pub fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A query string from pairs, skipping unset ones (for pager links that keep the filters).
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let set: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();
    format!("?{}", serde_urlencoded::to_string(set).unwrap_or_default())
}
