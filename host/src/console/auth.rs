//! Signing in and what a request may do. Sign-in takes an API token (the bootstrap token or one
//! from `/v1/tokens`) and opens a session (`session.rs`). One middleware, [`guard`], runs before
//! every console handler: it finds the session (re-checking its token, so a revoked token's
//! sessions end at once), and for every POST checks the origin, the session's CSRF token in the
//! form, and the scope — a read-only token may look at everything and change nothing.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::ConsoleState;
use super::layout::{PageError, page, respond};
use super::session;
use crate::admin::auth::{Scope, hash_token, scope_of_hash};
use crate::store::now_ms;

/// The signed-in user of a request, put in its extensions by [`guard`].
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session_id: String,
    pub scope: Scope,
    pub csrf: String,
}

impl Viewer {
    pub fn can_write(&self) -> bool {
        self.scope >= Scope::Write
    }
}

/// Paths served without a session.
fn is_public(path: &str) -> bool {
    path == "/console/sign-in" || path.starts_with("/console/assets/")
}

/// The middleware described in the module comment.
pub async fn guard(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let is_post = request.method() == Method::POST;
    if is_post && !same_origin(request.headers()) {
        return PageError::forbidden("this form was sent from another site").into_response();
    }
    if is_public(&path) {
        return next.run(request).await;
    }
    let Some(viewer) = viewer(&state, request.headers()).await else {
        if is_post {
            return PageError::forbidden("your session has ended; sign in again").into_response();
        }
        return Redirect::to("/console/sign-in").into_response();
    };
    let mut request = if is_post {
        match checked_post(&state, viewer.clone(), request, &path).await {
            Ok(request) => request,
            Err(refused) => return refused.into_response(),
        }
    } else {
        request
    };
    request.extensions_mut().insert(viewer);
    next.run(request).await
}

/// A POST with the session's CSRF token, by a token whose scope allows it; its body is read
/// (within the upload limit) to find the token and handed on unchanged.
async fn checked_post(
    state: &ConsoleState,
    viewer: Viewer,
    request: Request,
    path: &str,
) -> Result<Request, PageError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.upload_limit)
        .await
        .map_err(|_| PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
    let presented = csrf_in_form(&parts.headers, &bytes).await;
    if !presented.is_some_and(|p| session::same_secret(&viewer.csrf, &p)) {
        return Err(PageError::forbidden(
            "the form's CSRF token is missing or wrong; reload the page and try again",
        ));
    }
    if path != "/console/sign-out" && !viewer.can_write() {
        return Err(PageError::forbidden(
            "this token is read-only: it may look at everything and change nothing",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The `csrf` field of a URL-encoded or multipart form.
async fn csrf_in_form(headers: &HeaderMap, body: &Bytes) -> Option<String> {
    let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
        return pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v);
    }
    if content_type.starts_with("multipart/form-data") {
        let request = Request::builder()
            .header(CONTENT_TYPE, content_type)
            .body(Body::from(body.clone()))
            .ok()?;
        let mut form = Multipart::from_request(request, &()).await.ok()?;
        while let Ok(Some(field)) = form.next_field().await {
            if field.name() == Some("csrf") {
                return field.text().await.ok();
            }
        }
    }
    None
}

/// A browser sends `Origin` with every POST; when it names another host than the one asked
/// (`Host`, or `X-Forwarded-Host` from a reverse proxy that rewrites `Host`), the form came from
/// another site (SameSite=Strict already keeps the cookie from it; the CSRF token is the check
/// that matters, this one is a second).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let Some((_, origin_host)) = origin.split_once("://") else {
        return false;
    };
    [HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|h| h.to_str().ok()))
        .any(|host| host.split(',').next().map(str::trim) == Some(origin_host))
}

/// The session's viewer, if the cookie names a live session whose token is still valid.
async fn viewer(state: &ConsoleState, headers: &HeaderMap) -> Option<Viewer> {
    let id = session::session_id(headers)?;
    let session = state.sessions.touch(&id, now_ms())?;
    match scope_of_hash(&state.admin, &session.token_sha256).await {
        Ok(scope) => Some(Viewer {
            session_id: id,
            scope,
            csrf: session.csrf,
        }),
        Err(error) => {
            if error.status == StatusCode::UNAUTHORIZED {
                state.sessions.close(&id);
            }
            None
        }
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
}

pub async fn sign_in_page() -> Response {
    respond(StatusCode::OK, sign_in_markup(None))
}

fn sign_in_markup(error: Option<&str>) -> maud::Markup {
    let body = html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form.signin method="post" action="/console/sign-in" {
            label for="token" { "API token" }
            input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
            p.hint { "The bootstrap token (PIPELINE_ADMIN_TOKEN or data/admin-token) or a token from /v1/tokens. A read token can look, a write or admin token can also act." }
            button type="submit" { "Sign in" }
        }
    };
    page("Sign in", None, None, body)
}

pub async fn sign_in(
    State(state): State<ConsoleState>,
    body: Bytes,
) -> Result<Response, PageError> {
    let form: SignInForm = serde_urlencoded::from_bytes(&body)
        .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, "the sign-in form is incomplete"))?;
    let hash = hash_token(form.token.trim());
    if scope_of_hash(&state.admin, &hash).await.is_err() {
        let markup = sign_in_markup(Some("That token is not valid (or was revoked)."));
        return Ok(respond(StatusCode::UNAUTHORIZED, markup));
    }
    let id = state.sessions.open(hash, now_ms()).ok_or_else(|| {
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no session could be opened",
        )
    })?;
    Ok(with_cookie(session::set_cookie(&id), "/console/"))
}

pub async fn sign_out(
    State(state): State<ConsoleState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
) -> Response {
    state.sessions.close(&viewer.session_id);
    with_cookie(session::clear_cookie(), "/console/sign-in")
}

fn with_cookie(cookie: String, location: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_origin_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(
            same_origin(&headers),
            "no Origin: not a cross-site browser form"
        );
        headers.insert(ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, "https://console.example".parse().unwrap());
        headers.insert("x-forwarded-host", "console.example".parse().unwrap());
        assert!(same_origin(&headers), "behind a proxy that rewrites Host");
    }

    #[tokio::test]
    async fn the_csrf_field_is_found_in_both_form_encodings() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let body = Bytes::from_static(b"a=1&csrf=abc");
        assert_eq!(csrf_in_form(&headers, &body).await.as_deref(), Some("abc"));
        headers.insert(
            CONTENT_TYPE,
            "multipart/form-data; boundary=XX".parse().unwrap(),
        );
        let body = Bytes::from_static(
            b"--XX\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nxyz\r\n--XX--\r\n",
        );
        assert_eq!(csrf_in_form(&headers, &body).await.as_deref(), Some("xyz"));
        assert_eq!(csrf_in_form(&HeaderMap::new(), &body).await, None);
    }
}
