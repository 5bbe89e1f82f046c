//! Subscriptions: a filtered, paged list; one subscription with its filter, plugin and config,
//! status and quarantine reason, parked events and the plugin's recent log lines; and its actions
//! (pause/resume, attach a plugin or config, reprocess parked events), each the admin API's own
//! handler.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Viewer;
use super::layout::{
    Nav, PageError, PageResult, action, badge, facts, notice, page, pager, pretty_json, respond,
    see_other, time,
};
use super::{ConsoleState, PAGE_SIZE, non_empty, query};
use crate::admin::subscriptions::{SubscriptionView, load, reprocess, update};
use crate::admin::{Id, parse_query, rfc3339};
use crate::store::{SubscriptionFilter, SubscriptionStatus};

/// Parked events and log lines shown on a subscription's page.
const PARKED_SHOWN: i64 = 20;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/subscriptions", get(list))
        .route("/console/subscriptions/{id}", get(show))
        .route("/console/subscriptions/{id}/status", post(set_status))
        .route("/console/subscriptions/{id}/plugin", post(attach_plugin))
        .route(
            "/console/subscriptions/{id}/reprocess",
            post(reprocess_parked),
        )
}

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    endpoint_id: Option<String>,
    plugin_id: Option<String>,
    after: Option<String>,
}

async fn list(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q: ListQuery = parse_query(raw.as_deref())?;
    let filter = SubscriptionFilter {
        status: non_empty(q.status).and_then(|s| s.parse().ok()),
        endpoint_id: non_empty(q.endpoint_id),
        plugin_id: non_empty(q.plugin_id),
        after_id: non_empty(q.after),
        limit: PAGE_SIZE,
    };
    let rows = state.admin.store.subscriptions_page(&filter).await?;
    let next = (rows.len() as i64 == PAGE_SIZE).then(|| {
        query(&[
            ("status", filter.status.map(SubscriptionStatus::as_str)),
            ("endpoint_id", filter.endpoint_id.as_deref()),
            ("plugin_id", filter.plugin_id.as_deref()),
            ("after", rows.last().map(|r| r.id.as_str())),
        ])
    });
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let parked = state.admin.store.count_parked(&row.id).await?;
        // The list leaves out blocked ordering keys (one query per row); the detail page shows them.
        views.push(SubscriptionView::new(row, parked, Vec::new()));
    }
    let body = html! {
        (filter_form(&filter))
        (table(&views))
        (pager(next))
    };
    let markup = page(
        "Subscriptions",
        Some(&viewer),
        Some(Nav::Subscriptions),
        body,
    );
    Ok(respond(StatusCode::OK, markup))
}

fn filter_form(filter: &SubscriptionFilter) -> Markup {
    let status = filter.status;
    html! {
        form.filters method="get" action="/console/subscriptions" {
            label for="f-status" { "Status" }
            select id="f-status" name="status" {
                option value="" selected[status.is_none()] { "any" }
                @for option in SubscriptionStatus::ALL {
                    option value=(option.as_str()) selected[Some(*option) == status] { (option.as_str()) }
                }
            }
            label for="f-endpoint" { "Endpoint id" }
            input id="f-endpoint" name="endpoint_id" value=(filter.endpoint_id.as_deref().unwrap_or(""));
            label for="f-plugin" { "Plugin id" }
            input id="f-plugin" name="plugin_id" value=(filter.plugin_id.as_deref().unwrap_or(""));
            button type="submit" { "Filter" }
        }
    }
}

fn table(views: &[SubscriptionView]) -> Markup {
    html! {
        @if views.is_empty() { p { "No subscriptions match." } }
        @else {
            table {
                thead { tr {
                    th scope="col" { "Subscription" } th scope="col" { "Status" } th scope="col" { "Chain" }
                    th scope="col" { "Endpoint" } th scope="col" { "Plugin" } th scope="col" { "Parked" } th scope="col" { "Last error" }
                } }
                tbody {
                    @for s in views {
                        tr {
                            th scope="row" { a href=(format!("/console/subscriptions/{}", s.id)) { (s.id) } }
                            td { (badge(s.status.as_str())) }
                            td { (s.chain_id) }
                            td { a href=(format!("/console/endpoints/{}", s.endpoint_id)) { (s.endpoint_id) } }
                            td { @if let Some(p) = &s.plugin_id { a href=(format!("/console/plugins/{p}")) { (short(p)) } } @else { "—" } }
                            td { (s.parked_events) }
                            td.clip { (s.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    notice: Option<String>,
    reprocessed: Option<u64>,
    delivered: Option<u64>,
    dropped: Option<u64>,
    orphaned: Option<u64>,
    held: Option<u64>,
}

async fn show(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Id(id): Id,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q: ShowQuery = parse_query(raw.as_deref())?;
    let admin = &state.admin;
    let row = load(admin, &id).await?;
    let parked_count = admin.store.count_parked(&id).await?;
    let parked = admin.store.list_parked(&id, PARKED_SHOWN).await?;
    let logs = admin.log_book.recent(&id);
    let blocked = crate::admin::subscriptions::modes::blocked(admin, &row).await?;
    let s = SubscriptionView::new(row, parked_count, blocked);
    let body = html! {
        (notice(q.notice.as_deref()))
        @if let Some(n) = q.reprocessed {
            p.notice role="status" { "Reprocessed " (n) " parked events: " (q.delivered.unwrap_or(0)) " queued for delivery ("
                (q.held.unwrap_or(0)) " held for confirmations), " (q.dropped.unwrap_or(0)) " dropped by the plugin, "
                (q.orphaned.unwrap_or(0)) " orphaned by a reorg." }
        }
        (details(&s))
        (actions(&viewer, &s))
        section aria-labelledby="parked" {
            h2 id="parked" { "Parked events (" (parked_count) ")" }
            @if parked.is_empty() { p { "None." } }
            @else {
                p.hint { "The oldest " (parked.len()) "; reprocessing takes up to 1,000 at a time." }
                table {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Parked" } th scope="col" { "Block" } th scope="col" { "Error" } } }
                    tbody { @for p in &parked {
                        @let log: Value = serde_json::from_str(&p.event.log).unwrap_or(Value::Null);
                        tr { td { (p.seq) } td { (time(p.created_at)) } td { (log["blockNumber"].as_str().unwrap_or("?")) } td.clip { (p.event.error) } }
                    } }
                }
            }
        }
        section aria-labelledby="logs" {
            h2 id="logs" { "Plugin log lines (most recent " (logs.len()) ")" }
            @if logs.is_empty() { p { "None." } }
            @else { pre.logs { @for line in &logs { (rfc3339(line.at)) " " (line.level) " " (line.message) "\n" } } }
        }
    };
    let title = format!("Subscription {id}");
    Ok(respond(
        StatusCode::OK,
        page(&title, Some(&viewer), Some(Nav::Subscriptions), body),
    ))
}

fn details(s: &SubscriptionView) -> Markup {
    let config = pretty_json(&s.plugin_config.to_string());
    facts(&[
        ("Status", html! { (badge(s.status.as_str())) }),
        (
            "Quarantine reason / last error",
            html! { (s.last_error.as_deref().unwrap_or("—")) },
        ),
        ("Chain", html! { (s.chain_id) }),
        (
            "Endpoint",
            html! { a href=(format!("/console/endpoints/{}", s.endpoint_id)) { (s.endpoint_id) } },
        ),
        ("Addresses", html! { code { (s.addresses.to_string()) } }),
        ("Topics", html! { code { (s.topics.to_string()) } }),
        (
            "Plugin",
            html! { @if let Some(p) = &s.plugin_id { a href=(format!("/console/plugins/{p}")) { (p) } } @else { "none (every matching log is delivered)" } },
        ),
        ("Plugin config", html! { pre { (config) } }),
        ("Confirmations", html! { (s.confirmations) }),
        (
            "Deliveries",
            html! { a href=(format!("/console/deliveries?subscription_id={}", s.id)) { "this subscription's deliveries" } },
        ),
        (
            "Created / updated",
            html! { time datetime=(s.created_at) { (s.created_at) } " / " time datetime=(s.updated_at) { (s.updated_at) } },
        ),
    ])
}

fn actions(viewer: &Viewer, s: &SubscriptionView) -> Markup {
    let base = format!("/console/subscriptions/{}", s.id);
    let (next_status, label) = match s.status {
        SubscriptionStatus::Paused => (SubscriptionStatus::Active, "Resume"),
        SubscriptionStatus::Active | SubscriptionStatus::Quarantined => {
            (SubscriptionStatus::Paused, "Pause")
        }
    };
    let config = if s.plugin_config.is_null() {
        String::new()
    } else {
        s.plugin_config.to_string()
    };
    html! {
        section aria-labelledby="actions" {
            h2 id="actions" { "Actions" }
            div.actions {
                (action(viewer, &format!("{base}/status"), label, html! { input type="hidden" name="status" value=(next_status.as_str()); }))
                (action(viewer, &format!("{base}/reprocess"), "Reprocess parked events", html! {}))
            }
            (action(viewer, &format!("{base}/plugin"), "Attach plugin and config", html! {
                label for="plugin_id" { "Plugin id (empty: no plugin)" }
                input id="plugin_id" name="plugin_id" value=(s.plugin_id.as_deref().unwrap_or("")) size="66";
                label for="plugin_config" { "Plugin config (JSON; empty: none)" }
                textarea id="plugin_config" name="plugin_config" rows="3" cols="60" { (config) }
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
    let _view = update::update(
        State(state.admin),
        Id(id.clone()),
        Ok(patch.to_string().into()),
    )
    .await?;
    // The update accepted the status, so it parses: paused, or active (resumed).
    let code = match form.status.parse() {
        Ok(SubscriptionStatus::Paused) => "paused",
        _ => "resumed",
    };
    Ok(see_other(&format!(
        "/console/subscriptions/{id}?notice={code}"
    )))
}

#[derive(Deserialize)]
struct PluginForm {
    plugin_id: String,
    plugin_config: String,
}

async fn attach_plugin(State(state): State<ConsoleState>, Id(id): Id, body: Bytes) -> PageResult {
    let form: PluginForm = form(&body)?;
    let plugin_id = non_empty(Some(form.plugin_id));
    let config = match non_empty(Some(form.plugin_config)) {
        None => Value::Null,
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!("the plugin config is not JSON: {e}"),
            )
        })?,
    };
    let patch = json!({ "plugin_id": plugin_id, "plugin_config": config });
    let _view = update::update(
        State(state.admin),
        Id(id.clone()),
        Ok(patch.to_string().into()),
    )
    .await?;
    Ok(see_other(&format!(
        "/console/subscriptions/{id}?notice=plugin"
    )))
}

async fn reprocess_parked(State(state): State<ConsoleState>, Id(id): Id) -> PageResult {
    let answer = reprocess::reprocess(State(state.admin), Id(id.clone()))
        .await?
        .0;
    let counts = format!(
        "reprocessed={}&delivered={}&dropped={}&orphaned={}&held={}",
        answer.reprocessed, answer.delivered, answer.dropped, answer.orphaned, answer.held
    );
    Ok(see_other(&format!("/console/subscriptions/{id}?{counts}")))
}

/// A URL-encoded form (the guard has checked its CSRF token already).
pub fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, PageError> {
    let parsed: T = serde_urlencoded::from_bytes(body).map_err(|e| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("the form is incomplete: {e}"),
        )
    })?;
    if body.windows(3).any(|w| w.eq_ignore_ascii_case(b"%00")) {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "the form contains a NUL character",
        ));
    }
    Ok(parsed)
}
