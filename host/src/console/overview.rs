//! Overview: throughput, end-to-end latency and the delivery backlog over the last hour (from the
//! sample ring), the chains (head, lag, reorgs, connection) and subscriptions by status.

use std::sync::atomic::Ordering;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use maud::{Markup, html};

use super::ConsoleState;
use super::auth::Viewer;
use super::charts::{Series, line_chart};
use super::layout::{Nav, PageResult, badge, optional_time, page, respond};
use super::samples::{MAX_SAMPLES, SAMPLE_EVERY, Sample};
use crate::ingest::ChainHealth;
use crate::store::now_ms;

pub async fn show(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let samples = state.admin.console.samples.all();
    let counts = state.admin.store.subscription_status_counts().await?;
    let body = html! {
        p.hint data-refresh="30" {
            "Samples every " (SAMPLE_EVERY.as_secs()) " s, the last hour (" (samples.len()) " of " (MAX_SAMPLES) " kept by this host). The page refreshes every 30 s."
        }
        section aria-labelledby="charts" {
            h2 id="charts" { "Last hour" }
            (charts(&samples))
        }
        section aria-labelledby="chains" {
            h2 id="chains" { "Chains" }
            (chains(&state))
        }
        section aria-labelledby="subs" {
            h2 id="subs" { "Subscriptions" }
            @if counts.is_empty() { p { "None yet." } }
            ul.counts {
                @for (status, count) in &counts {
                    li { a href=(format!("/console/subscriptions?status={status}")) { (badge(status.as_str())) " " (count) } }
                }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        page("Overview", Some(&viewer), Some(Nav::Overview), body),
    ))
}

fn charts(samples: &[Sample]) -> Markup {
    let to = now_ms();
    let from = to - (MAX_SAMPLES as i64) * (SAMPLE_EVERY.as_millis() as i64);
    let series = |label, value: fn(&Sample) -> Option<f64>| Series {
        label,
        points: samples.iter().map(|s| (s.at_ms, value(s))).collect(),
    };
    html! {
        div.charts {
            (line_chart("Events received", "per s", &[series("events/s", |s| Some(s.events_per_s))], from, to))
            (line_chart("Webhooks delivered", "per s", &[series("webhooks/s", |s| Some(s.webhooks_per_s))], from, to))
            (line_chart("End-to-end latency", "ms", &[series("P50", |s| s.p50_ms), series("P99", |s| s.p99_ms)], from, to))
            (line_chart("Deliveries due", "deliveries", &[series("due", |s| Some(s.due as f64)), series("outstanding", |s| Some(s.outstanding as f64))], from, to))
            (line_chart("Oldest due delivery", "s", &[series("age", |s| Some(s.oldest_due_s))], from, to))
        }
    }
}

fn chains(state: &ConsoleState) -> Markup {
    let metrics = &state.admin.metrics;
    html! {
        table {
            thead { tr { th scope="col" { "Chain" } th scope="col" { "State" } th scope="col" { "Head" } th scope="col" { "Head lag (mean)" } th scope="col" { "Reorgs" } th scope="col" { "Last new head" } th scope="col" { "Detail" } } }
            tbody {
                @for chain in &state.admin.chains {
                    @let name = chain.name.as_str();
                    @let lag = metrics.chain_head_lag.with_label_values(&[name]);
                    @let lag_count = lag.get_sample_count();
                    tr {
                        th scope="row" { (name) " (" (chain.chain_id) ")" }
                        td { (badge(connection_state(chain))) }
                        td { (metrics.chain_head.with_label_values(&[name]).get()) }
                        td { @if lag_count > 0 { (format!("{:.1} s", lag.get_sample_sum() / lag_count as f64)) } @else { "—" } }
                        td { (metrics.reorgs.with_label_values(&[name]).get()) }
                        td { (optional_time(Some(chain.last_head_at_ms.load(Ordering::Relaxed)).filter(|t| *t > 0))) }
                        td { (chain.readiness().unwrap_or_else(Some).unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

fn connection_state(chain: &ChainHealth) -> &'static str {
    if chain.standby.load(Ordering::Relaxed) {
        "standby"
    } else if chain.stale.load(Ordering::Relaxed) {
        "stale"
    } else if chain.connected.load(Ordering::Relaxed) {
        "connected"
    } else {
        "disconnected"
    }
}
