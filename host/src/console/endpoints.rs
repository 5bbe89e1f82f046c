//! Endpoints: a paged list with status and breaker state; one endpoint with its success rate,
//! latency and recent failures (from its last 100 deliveries' attempts); and its actions
//! (enable/disable, rotate the secret — shown once, on the answer page — and recover dead
//! deliveries since a time), each the admin API's own handler.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::auth::Viewer;
use super::layout::{
    Nav, PageError, PageResult, action, badge, facts, notice, page, pager, respond, see_other, time,
};
use super::subscriptions::form;
use super::{ConsoleState, PAGE_SIZE, non_empty, query};
use crate::admin::endpoints::{recover, rotate_secret, update};
use crate::admin::{Id, parse_query, rfc3339};
use crate::store::{EndpointAttempt, EndpointRow, EndpointStatus, now_ms};

/// The endpoint's page judges it on the attempts of its last this many deliveries …
const RECENT_DELIVERIES: i64 = 100;
/// … at most this many attempts.
const RECENT_ATTEMPTS: i64 = 200;
const FAILURES_SHOWN: usize = 10;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/endpoints", get(list))
        .route("/console/endpoints/{id}", get(show))
        .route("/console/endpoints/{id}/status", post(set_status))
        .route("/console/endpoints/{id}/rotate-secret", post(rotate))
        .route("/console/endpoints/{id}/recover", post(recover_dead))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    after: Option<String>,
}

async fn list(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q: ListQuery = parse_query(raw.as_deref())?;
    let status = non_empty(q.status).and_then(|s| s.parse::<EndpointStatus>().ok());
    let after = non_empty(q.after);
    let rows = state
        .admin
        .store
        .endpoints_page(status, after.as_deref(), PAGE_SIZE)
        .await?;
    let next = (rows.len() as i64 == PAGE_SIZE).then(|| {
        query(&[
            ("status", status.map(EndpointStatus::as_str)),
            ("after", rows.last().map(|r| r.id.as_str())),
        ])
    });
    let body = html! {
        form.filters method="get" action="/console/endpoints" {
            label for="f-status" { "Status" }
            select id="f-status" name="status" {
                option value="" selected[status.is_none()] { "any" }
                @for option in EndpointStatus::ALL {
                    option value=(option.as_str()) selected[Some(*option) == status] { (option.as_str()) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() { p { "No endpoints match." } }
        @else {
            table {
                thead { tr { th scope="col" { "Endpoint" } th scope="col" { "URL" } th scope="col" { "Description" } th scope="col" { "Status" } th scope="col" { "Breaker" } } }
                tbody { @for e in &rows {
                    tr {
                        th scope="row" { a href=(format!("/console/endpoints/{}", e.id)) { (e.id) } }
                        td.clip { (e.url) } td.clip { (e.description) } td { (badge(e.status.as_str())) }
                        td { (badge(breaker_state(&state, &e.id))) }
                    }
                } }
            }
        }
        (pager(next))
    };
    Ok(respond(
        StatusCode::OK,
        page("Endpoints", Some(&viewer), Some(Nav::Endpoints), body),
    ))
}

/// The dispatcher's breaker for this endpoint on this replica ("closed" before its first attempt).
fn breaker_state(state: &ConsoleState, id: &str) -> &'static str {
    let Ok(breakers) = state.admin.console.breakers.lock() else {
        return "unknown";
    };
    match breakers.get(id) {
        None => "closed",
        Some(b) if b.is_open(Instant::now()) => "open",
        Some(b) => match b.state_name() {
            "open" => "half_open",
            other => other,
        },
    }
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    notice: Option<String>,
    recovered: Option<u64>,
}

async fn show(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Id(id): Id,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q: ShowQuery = parse_query(raw.as_deref())?;
    let endpoint = load(&state, &id).await?;
    let attempts = state
        .admin
        .store
        .endpoint_recent_attempts(&id, RECENT_DELIVERIES, RECENT_ATTEMPTS)
        .await?;
    let body = html! {
        (notice(q.notice.as_deref()))
        @if let Some(n) = q.recovered { p.notice role="status" { (n) " dead deliveries queued again." } }
        (details(&state, &endpoint))
        (health(&attempts))
        (actions(&viewer, &endpoint))
    };
    let title = format!("Endpoint {id}");
    Ok(respond(
        StatusCode::OK,
        page(&title, Some(&viewer), Some(Nav::Endpoints), body),
    ))
}

async fn load(state: &ConsoleState, id: &str) -> Result<EndpointRow, PageError> {
    state.admin.store.get_endpoint(id).await?.ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("endpoint {id:?} does not exist"),
        )
    })
}

fn details(state: &ConsoleState, e: &EndpointRow) -> Markup {
    facts(&[
        ("URL", html! { code { (e.url) } }),
        ("Description", html! { (e.description) }),
        (
            "Status",
            html! { (badge(e.status.as_str())) " " (e.disabled_reason.as_deref().unwrap_or("")) },
        ),
        (
            "Circuit breaker (this replica)",
            html! { (badge(breaker_state(state, &e.id))) },
        ),
        (
            "Secret",
            html! { "hidden; rotating shows the new one once" },
        ),
        (
            "Deliveries",
            html! { a href=(format!("/console/deliveries?endpoint_id={}", e.id)) { "this endpoint's deliveries" } },
        ),
        (
            "Created / updated",
            html! { (time(e.created_at)) " / " (time(e.updated_at)) },
        ),
    ])
}

/// Pure: success rate (2xx share) and latency P50 / max of the attempts.
pub fn judge(attempts: &[EndpointAttempt]) -> Option<(f64, i64, i64)> {
    if attempts.is_empty() {
        return None;
    }
    let ok = attempts
        .iter()
        .filter(|a| {
            a.attempt
                .status_code
                .is_some_and(|c| (200..300).contains(&c))
        })
        .count();
    let mut latencies: Vec<i64> = attempts.iter().map(|a| a.attempt.latency_ms).collect();
    latencies.sort_unstable();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    Some((ok as f64 / attempts.len() as f64, median, max))
}

fn health(attempts: &[EndpointAttempt]) -> Markup {
    let failures: Vec<&EndpointAttempt> = attempts
        .iter()
        .filter(|a| {
            !a.attempt
                .status_code
                .is_some_and(|c| (200..300).contains(&c))
        })
        .take(FAILURES_SHOWN)
        .collect();
    html! {
        section aria-labelledby="health" {
            h2 id="health" { "Recent attempts" }
            @match judge(attempts) {
                None => p { "No attempts yet." },
                Some((rate, median, max)) => p {
                    "Of the last " (attempts.len()) " attempts: " strong { (format!("{:.1} %", rate * 100.0)) } " succeeded; latency median "
                    (median) " ms, max " (max) " ms."
                },
            }
            h3 { "Recent failures" }
            @if failures.is_empty() { p { "None." } }
            @else {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Delivery" } th scope="col" { "Status" } th scope="col" { "Error" } th scope="col" { "Response body" } } }
                    tbody { @for f in &failures {
                        tr {
                            td { (time(f.attempt.created_at)) }
                            td { a href=(format!("/console/deliveries/{}", f.delivery_id)) { (f.delivery_id) } }
                            td { (f.attempt.status_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                            td.clip { (f.attempt.error.as_deref().unwrap_or("")) }
                            td.clip { code { (f.attempt.response_body.as_deref().unwrap_or("")) } }
                        }
                    } }
                }
            }
        }
    }
}

fn actions(viewer: &Viewer, e: &EndpointRow) -> Markup {
    let base = format!("/console/endpoints/{}", e.id);
    let (next, label) = match e.status {
        EndpointStatus::Disabled => (EndpointStatus::Enabled, "Enable"),
        EndpointStatus::Enabled => (EndpointStatus::Disabled, "Disable"),
    };
    let day_ago = rfc3339(now_ms() - 24 * 60 * 60 * 1000);
    html! {
        section aria-labelledby="actions" {
            h2 id="actions" { "Actions" }
            div.actions {
                (action(viewer, &format!("{base}/status"), label, html! { input type="hidden" name="status" value=(next.as_str()); }))
                (action(viewer, &format!("{base}/rotate-secret"), "Rotate secret", html! {}))
            }
            (action(viewer, &format!("{base}/recover"), "Recover dead deliveries", html! {
                label for="since" { "Dead deliveries created since (RFC 3339, UTC)" }
                input id="since" name="since" value=(day_ago) required;
            }))
        }
    }
}

#[derive(Deserialize)]
struct StatusForm {
    status: String,
}

async fn set_status(State(state): State<ConsoleState>, Id(id): Id, body: Bytes) -> PageResult {
    let form: StatusForm = form(&body)?;
    let patch = json!({ "status": form.status });
    let _view = update(
        State(state.admin),
        Id(id.clone()),
        Ok(patch.to_string().into()),
    )
    .await?;
    // The update accepted the status, so it parses; the notice codes are the status names.
    let code = match form.status.parse() {
        Ok(EndpointStatus::Disabled) => "disabled",
        _ => "enabled",
    };
    Ok(see_other(&format!("/console/endpoints/{id}?notice={code}")))
}

/// The new secret is on this answer only (not a redirect: it is never stored in clear to show later).
async fn rotate(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Id(id): Id,
) -> PageResult {
    let answer = rotate_secret(State(state.admin), Id(id.clone())).await?.0;
    let body = html! {
        p.notice role="status" { "The secret was rotated. Copy it now: it is shown only this once. The previous secret keeps signing for 24 hours." }
        label for="secret" { "New signing secret" }
        input id="secret" readonly value=(answer.secret) size="70";
        p { a href=(format!("/console/endpoints/{id}")) { "Back to the endpoint" } }
    };
    Ok(respond(
        StatusCode::OK,
        page(
            "New endpoint secret",
            Some(&viewer),
            Some(Nav::Endpoints),
            body,
        ),
    ))
}

#[derive(Deserialize)]
struct RecoverForm {
    since: String,
}

async fn recover_dead(State(state): State<ConsoleState>, Id(id): Id, body: Bytes) -> PageResult {
    let form: RecoverForm = form(&body)?;
    let request = json!({ "since": form.since.trim() });
    let answer = recover(
        State(state.admin),
        Id(id.clone()),
        Ok(request.to_string().into()),
    )
    .await?
    .0;
    Ok(see_other(&format!(
        "/console/endpoints/{id}?recovered={}",
        answer.recovered
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AttemptRow;

    fn attempt(status_code: Option<i64>, latency_ms: i64) -> EndpointAttempt {
        EndpointAttempt {
            delivery_id: "msg_1".into(),
            attempt: AttemptRow {
                attempt: 1,
                status_code,
                latency_ms,
                error: None,
                response_body: None,
                created_at: 0,
            },
        }
    }

    #[test]
    fn an_endpoint_is_judged_on_its_2xx_share_and_latency() {
        assert_eq!(judge(&[]), None);
        let attempts = [
            attempt(Some(200), 10),
            attempt(Some(503), 30),
            attempt(None, 5_000),
            attempt(Some(204), 20),
        ];
        assert_eq!(judge(&attempts), Some((0.5, 30, 5_000)));
    }
}
