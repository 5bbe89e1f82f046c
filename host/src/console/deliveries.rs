//! Deliveries: filtered by status, endpoint, subscription and creation time, newest first, one
//! page at a time (keyset on `seq`); one delivery with the webhook body as sent and every attempt
//! (status code, latency, error, response body); and manual retry (the admin API's handler).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Viewer;
use super::layout::{
    Nav, PageError, PageResult, action, badge, facts, notice, page, pager, pretty_json, respond,
    see_other, time,
};
use super::{ConsoleState, PAGE_SIZE, non_empty, query};
use crate::admin::deliveries::retry;
use crate::admin::{Id, parse_query};
use crate::store::{DeliveryFilter, DeliveryRow, DeliveryStatus, HELD_UNTIL_RELEASED};

/// The statuses the filter offers (a filling batch is not a delivery yet, so not among them).
const STATUSES: [DeliveryStatus; 4] = [
    DeliveryStatus::Pending,
    DeliveryStatus::Retrying,
    DeliveryStatus::Delivered,
    DeliveryStatus::Dead,
];

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/deliveries", get(list))
        .route("/console/deliveries/{id}", get(show))
        .route("/console/deliveries/{id}/retry", post(retry_now))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    endpoint_id: Option<String>,
    subscription_id: Option<String>,
    from: Option<String>,
    until: Option<String>,
    before: Option<String>,
}

async fn list(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q: ListQuery = parse_query(raw.as_deref())?;
    let status = non_empty(q.status)
        .and_then(|s| s.parse::<DeliveryStatus>().ok())
        .filter(|s| STATUSES.contains(s));
    let from = non_empty(q.from);
    let until = non_empty(q.until);
    let filter = DeliveryFilter {
        subscription_id: non_empty(q.subscription_id),
        endpoint_id: non_empty(q.endpoint_id),
        status,
        before_seq: non_empty(q.before).and_then(|b| b.parse().ok()),
        created_from: from.as_deref().map(parse_time).transpose()?,
        created_before: until.as_deref().map(parse_time).transpose()?,
        limit: PAGE_SIZE,
    };
    let rows = state.admin.store.list_deliveries(&filter).await?;
    let last_seq = rows.last().map(|r| r.seq.to_string());
    let next = (rows.len() as i64 == PAGE_SIZE).then(|| {
        query(&[
            ("status", filter.status.map(DeliveryStatus::as_str)),
            ("endpoint_id", filter.endpoint_id.as_deref()),
            ("subscription_id", filter.subscription_id.as_deref()),
            ("from", from.as_deref()),
            ("until", until.as_deref()),
            ("before", last_seq.as_deref()),
        ])
    });
    let body = html! {
        (filter_form(&filter, from.as_deref(), until.as_deref()))
        (table(&rows))
        (pager(next))
    };
    Ok(respond(
        StatusCode::OK,
        page("Deliveries", Some(&viewer), Some(Nav::Deliveries), body),
    ))
}

/// An RFC 3339 time (UTC) as Unix milliseconds.
fn parse_time(text: &str) -> Result<i64, PageError> {
    let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not an RFC 3339 UTC time: {e}"),
        )
    })?;
    let ms = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn filter_form(filter: &DeliveryFilter, from: Option<&str>, until: Option<&str>) -> Markup {
    let status = filter.status;
    html! {
        form.filters method="get" action="/console/deliveries" {
            label for="f-status" { "Status" }
            select id="f-status" name="status" {
                option value="" selected[status.is_none()] { "any" }
                @for option in STATUSES {
                    option value=(option.as_str()) selected[Some(option) == status] { (option.as_str()) }
                }
            }
            label for="f-endpoint" { "Endpoint id" }
            input id="f-endpoint" name="endpoint_id" value=(filter.endpoint_id.as_deref().unwrap_or(""));
            label for="f-sub" { "Subscription id" }
            input id="f-sub" name="subscription_id" value=(filter.subscription_id.as_deref().unwrap_or(""));
            label for="f-from" { "Created from (UTC)" }
            input id="f-from" name="from" placeholder="2026-01-01T00:00:00Z" value=(from.unwrap_or(""));
            label for="f-until" { "until" }
            input id="f-until" name="until" placeholder="2026-01-02T00:00:00Z" value=(until.unwrap_or(""));
            button type="submit" { "Filter" }
        }
    }
}

fn table(rows: &[DeliveryRow]) -> Markup {
    html! {
        @if rows.is_empty() { p { "No deliveries match." } }
        @else {
            table {
                thead { tr {
                    th scope="col" { "Delivery" } th scope="col" { "Status" } th scope="col" { "Type" } th scope="col" { "Block" }
                    th scope="col" { "Attempts" } th scope="col" { "Last code" } th scope="col" { "Created" } th scope="col" { "Subscription" }
                } }
                tbody { @for d in rows {
                    tr {
                        th scope="row" { a href=(format!("/console/deliveries/{}", d.id)) { (d.id) } }
                        td { (badge(&display_status(d))) } td { (d.event_type) } td { (d.block_number) }
                        td { (d.attempts) } td { (d.last_status_code.map(|c| c.to_string()).unwrap_or_default()) }
                        td { (time(d.created_at)) }
                        td { a href=(format!("/console/subscriptions/{}", d.subscription_id)) { (d.subscription_id) } }
                    }
                } }
            }
        }
    }
}

/// A delivery waiting for its subscription's confirmations shows as held.
fn display_status(d: &DeliveryRow) -> String {
    if d.next_attempt_at == HELD_UNTIL_RELEASED {
        "held".to_string()
    } else {
        d.status.as_str().to_string()
    }
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    notice: Option<String>,
}

async fn show(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Id(id): Id,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q: ShowQuery = parse_query(raw.as_deref())?;
    let store = &state.admin.store;
    let (d, body) = store.get_delivery(&id).await?.ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("delivery {id:?} does not exist"),
        )
    })?;
    let attempts = store.delivery_attempts(&id).await?;
    let page_body = html! {
        (notice(q.notice.as_deref()))
        (facts(&[
            ("Status", html! { (badge(&display_status(&d))) }),
            ("Type", html! { (d.event_type) }),
            ("Chain / block", html! { (d.chain_id) " / " (d.block_number) }),
            ("Subscription", html! { a href=(format!("/console/subscriptions/{}", d.subscription_id)) { (d.subscription_id) } }),
            ("Endpoint", html! { a href=(format!("/console/endpoints/{}", d.endpoint_id)) { (d.endpoint_id) } }),
            ("Attempts", html! { (d.attempts) }),
            ("Next attempt", html! { @if d.status.is_final() { "—" } @else { (time(d.next_attempt_at)) } }),
            ("Last error", html! { (d.last_error.as_deref().unwrap_or("—")) }),
            ("Created / updated", html! { (time(d.created_at)) " / " (time(d.updated_at)) }),
        ]))
        (action(&viewer, &format!("/console/deliveries/{id}/retry"), "Retry now", html! {}))
        section aria-labelledby="body" {
            h2 id="body" { "Webhook body" }
            pre.body { (pretty_json(&body)) }
        }
        section aria-labelledby="attempts" {
            h2 id="attempts" { "Attempts" }
            @if attempts.is_empty() { p { "None yet." } }
            @else {
                table {
                    thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Status code" } th scope="col" { "Latency" } th scope="col" { "Error" } th scope="col" { "Response body" } } }
                    tbody { @for a in &attempts {
                        tr {
                            td { (a.attempt) } td { (time(a.created_at)) }
                            td { (a.status_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                            td { (a.latency_ms) " ms" }
                            td { (a.error.as_deref().unwrap_or("")) }
                            td { pre.response { (a.response_body.as_deref().unwrap_or("")) } }
                        }
                    } }
                }
            }
        }
    };
    let title = format!("Delivery {id}");
    Ok(respond(
        StatusCode::OK,
        page(&title, Some(&viewer), Some(Nav::Deliveries), page_body),
    ))
}

async fn retry_now(State(state): State<ConsoleState>, Id(id): Id) -> PageResult {
    let _queued = retry(State(state.admin), Id(id.clone())).await?;
    Ok(see_other(&format!(
        "/console/deliveries/{id}?notice=retried"
    )))
}
