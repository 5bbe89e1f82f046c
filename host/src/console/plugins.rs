//! Plugins: a paged list with the upload form; one plugin's metadata, the subscriptions using it,
//! and a dry run on sample events — the first recorded mainnet logs carried in the binary, or
//! pasted JSON — showing each event's decision and data, the fuel used and the plugin's log lines.
//! Upload and dry run are the admin API's own handlers.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::auth::Viewer;
use super::layout::{
    Nav, PageError, PageResult, action, facts, notice, page, pager, respond, see_other, time,
};
use super::subscriptions::{form, short};
use super::{ConsoleState, PAGE_SIZE, non_empty, query};
use crate::admin::plugins::{test, upload};
use crate::admin::{Id, parse_query};
use crate::plugin::dry_run::DryRunReport;
use crate::store::SubscriptionFilter;

/// Recorded logs a dry run may take (the first ones of the embedded fixture).
const MAX_RECORDED: usize = 500;
/// Result rows shown; the summary counts them all.
const RESULTS_SHOWN: usize = 500;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/plugins", get(list).post(upload_form))
        .route("/console/plugins/{id}", get(show))
        .route("/console/plugins/{id}/dry-run", post(dry_run))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    after: Option<String>,
}

async fn list(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q: ListQuery = parse_query(raw.as_deref())?;
    let after = non_empty(q.after);
    let rows = state
        .admin
        .store
        .plugins_page(after.as_deref(), PAGE_SIZE)
        .await?;
    let next = (rows.len() as i64 == PAGE_SIZE)
        .then(|| query(&[("after", rows.last().map(|r| r.id.as_str()))]));
    let body = html! {
        section aria-labelledby="upload" {
            h2 id="upload" { "Upload a plugin" }
            form.action method="post" action="/console/plugins" enctype="multipart/form-data" {
                (super::layout::csrf_field(&viewer))
                label for="name" { "Name" }
                input id="name" name="name" required;
                label for="wasm" { "WebAssembly module (.wasm)" }
                input id="wasm" name="wasm" type="file" accept=".wasm,application/wasm" required;
                button type="submit" disabled[!viewer.can_write()] { "Upload" }
            }
        }
        @if rows.is_empty() { p { "No plugins yet." } }
        @else {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id (sha256)" } th scope="col" { "Size" } th scope="col" { "Uploaded" } } }
                tbody { @for p in &rows {
                    tr {
                        th scope="row" { a href=(format!("/console/plugins/{}", p.id)) { (p.name) } }
                        td { code { (short(&p.id)) "…" } } td { (p.size) " bytes" } td { (time(p.created_at)) }
                    }
                } }
            }
        }
        (pager(next))
    };
    Ok(respond(
        StatusCode::OK,
        page("Plugins", Some(&viewer), Some(Nav::Plugins), body),
    ))
}

async fn upload_form(State(state): State<ConsoleState>, request: Request) -> PageResult {
    let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, m);
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(format!("the upload form is unreadable: {e}")))?;
    let (mut name, mut wasm) = (None, None);
    while let Some(field) = form.next_field().await.map_err(|e| bad(e.to_string()))? {
        match field.name() {
            Some("name") => name = Some(field.text().await.map_err(|e| bad(e.to_string()))?),
            Some("wasm") => wasm = Some(field.bytes().await.map_err(|e| bad(e.to_string()))?),
            _ => {}
        }
    }
    let wasm = wasm.ok_or_else(|| bad("choose a .wasm file to upload".into()))?;
    let name_query = serde_urlencoded::to_string([("name", name.unwrap_or_default())]).ok();
    let (_, view) = upload(State(state.admin), RawQuery(name_query), Ok(wasm)).await?;
    Ok(see_other(&format!(
        "/console/plugins/{}?notice=uploaded",
        view.0.id
    )))
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
    let markup = plugin_page(&state, &viewer, &id, notice(q.notice.as_deref()), None).await?;
    Ok(respond(StatusCode::OK, markup))
}

async fn plugin_page(
    state: &ConsoleState,
    viewer: &Viewer,
    id: &str,
    before: Markup,
    report: Option<Markup>,
) -> Result<Markup, PageError> {
    let store = &state.admin.store;
    let plugin = store.get_plugin(id).await?.ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("plugin {id:?} does not exist"),
        )
    })?;
    let users = store
        .subscriptions_page(&SubscriptionFilter {
            plugin_id: Some(id.to_string()),
            limit: PAGE_SIZE,
            ..SubscriptionFilter::default()
        })
        .await?;
    let body = html! {
        (before)
        (facts(&[
            ("Name", html! { (plugin.name) }),
            ("Id (sha256 of the module)", html! { code { (plugin.id) } }),
            ("Size", html! { (plugin.size) " bytes" }),
            ("Uploaded", html! { (time(plugin.created_at)) }),
        ]))
        section aria-labelledby="users" {
            h2 id="users" { "Subscriptions using it" }
            @if users.is_empty() { p { "None." } }
            ul { @for s in &users { li { a href=(format!("/console/subscriptions/{}", s.id)) { (s.id) } " — " (s.status) } } }
            @if users.len() as i64 == PAGE_SIZE {
                p { a href=(format!("/console/subscriptions?plugin_id={id}")) { "All of them" } }
            }
        }
        (dry_run_form(viewer, id))
        @if let Some(report) = report { (report) }
    };
    Ok(page(
        &format!("Plugin {}", plugin.name),
        Some(viewer),
        Some(Nav::Plugins),
        body,
    ))
}

fn dry_run_form(viewer: &Viewer, id: &str) -> Markup {
    // A dry run changes nothing, but it costs CPU, so it is an action like the others.
    action(
        viewer,
        &format!("/console/plugins/{id}/dry-run"),
        "Dry run",
        html! {
            fieldset {
                legend { "Sample events" }
                input type="radio" id="src-recorded" name="source" value="recorded" checked;
                label for="src-recorded" { "The first " }
                label.visually-hidden for="count" { "number of recorded logs" }
                input id="count" name="count" type="number" min="1" max=(MAX_RECORDED) value="50";
                " recorded mainnet logs"
                br;
                input type="radio" id="src-pasted" name="source" value="pasted";
                label for="src-pasted" { "Pasted JSON (an array of JSON-RPC log objects, or one per line)" }
            }
            label for="events" { "Pasted events" }
            textarea id="events" name="events" rows="4" cols="80" {}
            label for="config" { "Config (JSON)" }
            textarea id="config" name="config" rows="2" cols="80" { "null" }
        },
    )
}

#[derive(Deserialize)]
struct DryRunForm {
    source: String,
    count: Option<String>,
    events: String,
    config: String,
}

async fn dry_run(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Id(id): Id,
    body: Bytes,
) -> PageResult {
    let form: DryRunForm = form(&body)?;
    let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, m);
    let config = non_empty(Some(form.config)).unwrap_or_else(|| "null".into());
    let config: Box<RawValue> =
        serde_json::from_str(&config).map_err(|e| bad(format!("the config is not JSON: {e}")))?;
    let events = if form.source == "pasted" {
        pasted_events(&form.events)?
    } else {
        let count = form.count.and_then(|c| c.trim().parse().ok()).unwrap_or(50);
        recorded_events(count.clamp(1, MAX_RECORDED))?
    };
    let request = format!(
        r#"{{"config":{},"events":[{}]}}"#,
        config.get(),
        events.join(",")
    );
    let report = test(
        State(state.admin.clone()),
        Id(id.clone()),
        Ok(request.into()),
    )
    .await?
    .0;
    let markup = plugin_page(&state, &viewer, &id, html! {}, Some(report_markup(&report))).await?;
    Ok(respond(StatusCode::OK, markup))
}

/// A JSON array of events, or one JSON event per line; each event's JSON text.
fn pasted_events(text: &str) -> Result<Vec<String>, PageError> {
    let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, m);
    let text = text.trim();
    if text.starts_with('[') {
        let events: Vec<Box<RawValue>> = serde_json::from_str(text)
            .map_err(|e| bad(format!("the pasted events are not a JSON array: {e}")))?;
        return Ok(events.into_iter().map(|e| e.get().to_string()).collect());
    }
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str::<Box<RawValue>>(line)
                .map(|e| e.get().to_string())
                .map_err(|e| bad(format!("pasted line {}: not JSON: {e}", index + 1)))
        })
        .collect()
}

/// The first `count` recorded mainnet logs (unpacked once, the first [`MAX_RECORDED`] kept).
fn recorded_events(count: usize) -> Result<Vec<String>, PageError> {
    static RECORDED: OnceLock<Vec<String>> = OnceLock::new();
    if RECORDED.get().is_none() {
        let all = crate::fixtures::mainnet_logs().map_err(|e| {
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the recorded logs: {e}"),
            )
        })?;
        let first = all.lines().take(MAX_RECORDED).map(str::to_string).collect();
        let _ = RECORDED.set(first);
    }
    Ok(RECORDED
        .get()
        .map(|r| r.iter().take(count).cloned().collect())
        .unwrap_or_default())
}

fn report_markup(report: &DryRunReport) -> Markup {
    html! {
        section aria-labelledby="report" {
            h2 id="report" { "Dry run" }
            @if let Some(error) = &report.error { p.error role="alert" { "The plugin failed: " (error) } }
            p.notice role="status" {
                (report.events) " events: " strong { (report.kept) " kept" } ", " (report.dropped) " dropped; "
                (report.calls) " calls, " (report.fuel_used) " fuel, " (report.duration_us) " µs."
            }
            table {
                thead { tr { th scope="col" { "Event" } th scope="col" { "Decision" } th scope="col" { "Data" } } }
                tbody { @for r in report.results.iter().take(RESULTS_SHOWN) {
                    tr { td { (r.index) } td { (r.decision) } td { code { (r.data.as_ref().map(crate::plugin::Payload::get).unwrap_or("")) } } }
                } }
            }
            h3 { "Plugin log lines" @if report.logs_dropped > 0 { " (" (report.logs_dropped) " dropped)" } }
            @if report.logs.is_empty() { p { "None." } }
            @else { pre.logs { @for line in &report.logs { (line.level_name()) " " (line.message) "\n" } } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_events_are_an_array_or_json_lines() {
        let array = pasted_events(r#" [{"a":1}, {"b":2}] "#).unwrap();
        assert_eq!(array, vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        let lines = pasted_events("{\"a\":1}\n\n{\"b\":2}\n").unwrap();
        assert_eq!(lines.len(), 2);
        let error = pasted_events("{\"a\":1}\nnot json").err().unwrap();
        assert!(
            error.message.starts_with("pasted line 2"),
            "{}",
            error.message
        );
    }

    #[test]
    fn recorded_events_are_the_first_fixture_logs() {
        let events = recorded_events(3).unwrap();
        assert_eq!(events.len(), 3);
        assert!(events[0].contains("blockHash"), "{}", events[0]);
    }
}
