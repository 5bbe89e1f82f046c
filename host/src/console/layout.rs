//! The page shell every console page shares (navigation, the signed-in scope, sign-out), the small
//! pieces pages are made of (times, status badges, forms carrying the CSRF token, the pager), and
//! how a page becomes a response (no caching, no framing, a strict content security policy).
//! maud escapes every interpolated value: plugin log lines and receiver bodies are hostile text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::auth::Viewer;
use crate::admin::{ApiError, rfc3339};

/// Which section a page belongs to (highlighted in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Subscriptions,
    Endpoints,
    Deliveries,
    Plugins,
}

const SECTIONS: [(Nav, &str, &str); 5] = [
    (Nav::Overview, "/console/", "Overview"),
    (
        Nav::Subscriptions,
        "/console/subscriptions",
        "Subscriptions",
    ),
    (Nav::Endpoints, "/console/endpoints", "Endpoints"),
    (Nav::Deliveries, "/console/deliveries", "Deliveries"),
    (Nav::Plugins, "/console/plugins", "Plugins"),
];

const CSP: &str = "default-src 'none'; connect-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A whole page: `viewer` is `None` on the sign-in page and error pages before sign-in.
pub fn page(title: &str, viewer: Option<&Viewer>, nav: Option<Nav>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Pipeline console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console/" { "Pipeline" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Sections" {
                            ul {
                                @for (section, href, label) in SECTIONS {
                                    li {
                                        @if Some(section) == nav {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span.scope { "token scope: " strong { (viewer.scope.as_str()) } }
                            form method="post" action="/console/sign-out" {
                                (csrf_field(viewer))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    @if viewer.is_some_and(|v| !v.can_write()) {
                        p.notice.readonly { "Signed in with a read-only token: you can look at everything and change nothing." }
                    }
                    (body)
                }
            }
        }
    }
}

/// A time as UTC ISO 8601; `console.js` rewrites the text into the viewer's time zone.
pub fn time(ms: i64) -> Markup {
    let iso = rfc3339(ms);
    html! { time datetime=(iso) { (iso) } }
}

pub fn optional_time(ms: Option<i64>) -> Markup {
    match ms {
        Some(ms) => time(ms),
        None => html! { "—" },
    }
}

pub fn badge(status: &str) -> Markup {
    let class = match status {
        "active" | "enabled" | "delivered" | "closed" | "connected" => "badge ok",
        "paused" | "pending" | "retrying" | "half_open" | "held" | "standby" => "badge warn",
        _ => "badge bad",
    };
    html! { span class=(class) { (status) } }
}

pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A form that POSTs one action with the CSRF token; its button is disabled for a read-only token
/// (the server refuses the action anyway).
pub fn action(viewer: &Viewer, target: &str, label: &str, fields: Markup) -> Markup {
    html! {
        form.action method="post" action=(target) {
            (csrf_field(viewer))
            (fields)
            button type="submit" disabled[!viewer.can_write()] { (label) }
        }
    }
}

/// "Next page" when there is one (keyset pagination: the link carries the last id seen).
pub fn pager(next: Option<String>) -> Markup {
    html! {
        nav.pager aria-label="Pagination" {
            a href="?" { "First page" }
            @if let Some(next) = next {
                " · " a href=(next) rel="next" { "Next page →" }
            }
        }
    }
}

/// A label/value list.
pub fn facts(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.facts {
            @for (label, value) in rows { dt { (label) } dd { (value) } }
        }
    }
}

/// An HTML response with the console's headers.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A console page that could not be shown or an action that was refused: its status and why.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

pub type PageResult = Result<Response, PageError>;

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        PageError::new(error.status, error.message)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> PageError {
        ApiError::from(error).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            s if s.is_client_error() => "Refused",
            _ => "Something went wrong",
        };
        let body = html! {
            p.error role="alert" { (self.message) }
            p { a href="/console/" { "Back to the console" } }
        };
        respond(self.status, page(title, None, None, body))
    }
}

/// JSON text pretty-printed for a `<pre>` (as given when it is not JSON).
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// The confirmation an action redirects with (`?notice=code`): fixed texts only, so a link cannot
/// make the console say something it did not do.
pub fn notice(code: Option<&str>) -> Markup {
    let text = match code {
        Some("paused") => "Paused: no new events are matched for it until it is resumed.",
        Some("resumed") => "Resumed.",
        Some("plugin") => "Plugin and config attached (hot swap); a quarantine is lifted.",
        Some("enabled") => "Enabled.",
        Some("disabled") => "Disabled: its deliveries wait until it is enabled again.",
        Some("retried") => "Retry queued: the delivery is due now.",
        Some("uploaded") => "Plugin uploaded.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// A 303 to `location` (a console path built from stored ids); an unusable one goes home instead.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let value =
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/console/"));
    response.headers_mut().insert(header::LOCATION, value);
    response
}
