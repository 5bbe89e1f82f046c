//! `POST /v1/subscriptions/{id}/reprocess`: runs parked events through the subscription's current
//! plugin and queues the kept ones as deliveries, exactly as the matcher would have — as of now:
//! an event whose block was reorged out meanwhile is not delivered, and one whose block has not yet
//! the subscription's confirmations is held until it has (`chain_view`).

use std::sync::Arc;
use std::time::Instant;

use crate::plugin::Payload;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::chain_view::{ChainView, Verdict};
use super::load;
use crate::admin::plugins::{load_plugin, run_blocking};
use crate::admin::{AdminState, ApiError, ApiResult, Id, IdParam};
use crate::event::{ChainLog, EventType};
use crate::matcher::{Candidate, Subscription, SubscriptionStatus};
use crate::plugin::dry_run::dry_run;
use crate::store::{NewDelivery, OutboxWrite, ParkedRow, StoreError, SubscriptionRow};

/// Parked events taken per request; call again for more.
const MAX_REPROCESS: i64 = 1000;
/// Events per plugin call, as in production batches.
const PLUGIN_BATCH: usize = 100;
/// Lease for the written deliveries: already expired, so the retry poller sends them.
const DUE_NOW: i64 = -1;

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ReprocessAnswer {
    pub reprocessed: usize,
    pub delivered: usize,
    pub dropped: usize,
    /// Events whose block is no longer canonical: resolved, never delivered.
    pub orphaned: usize,
    /// Of `delivered`, those held until the subscription's confirmations are reached.
    pub held: usize,
}

/// Per event: `None` = dropped, `Some(data)` = kept with the plugin's payload (if any).
type Decisions = Vec<Option<Option<Payload>>>;

/// Run up to 1000 parked events through the current plugin (409 `plugin_failed` if it fails again).
#[utoipa::path(post, path = "/subscriptions/{id}/reprocess", tag = "subscriptions", params(IdParam),
    responses((status = 200, description = "What became of the events", body = ReprocessAnswer)))]
pub async fn reprocess(
    State(state): State<AdminState>,
    Id(id): Id,
) -> ApiResult<Json<ReprocessAnswer>> {
    let row = load(&state, &id).await?;
    let parked = state.store.list_parked(&id, MAX_REPROCESS).await?;
    if parked.is_empty() {
        return Ok(Json(ReprocessAnswer::default()));
    }
    let events = candidates(&parked);
    let decisions = decide(&state, &row, &events).await?;
    let sub = body_subscription(&row)?;
    let chain = sub.chain_id;
    let chain_confirmations = state.chain_confirmations.get(&chain).copied().unwrap_or(0);
    let view = ChainView::load(&state.store, chain, chain_confirmations).await?;
    let mut answer = ReprocessAnswer {
        reprocessed: parked.len(),
        ..ReprocessAnswer::default()
    };
    let mut deliveries: Vec<NewDelivery> = Vec::new();
    for (event, decision) in events.iter().zip(&decisions) {
        let Some(data) = decision else { continue };
        let hash = format!("{:#x}", event.log.block_hash);
        let number = crate::matcher::db_int(event.log.block_number);
        match view.judge(number, &hash, sub.confirmations) {
            Verdict::Orphaned => answer.orphaned += 1,
            Verdict::Deliver { held } => {
                let base = if held {
                    chain_confirmations
                } else {
                    sub.confirmations
                };
                let delivery = crate::matcher::new_delivery(
                    &sub,
                    event,
                    base,
                    data.as_ref().map(Payload::get),
                );
                answer.held += usize::from(held);
                deliveries.push(delivery);
            }
        }
    }
    answer.delivered = deliveries.len();
    answer.dropped = parked.len() - answer.delivered - answer.orphaned;
    state
        .store
        .write_batch(
            &OutboxWrite {
                deliveries,
                // Exactly the rows read, in the same transaction as their deliveries.
                resolved_parked: parked.iter().map(|p| p.seq).collect(),
                ..Default::default()
            },
            DUE_NOW,
        )
        .await?;
    tracing::info!(subscription = %id, reprocessed = answer.reprocessed, delivered = answer.delivered, "parked events reprocessed");
    Ok(Json(answer))
}

/// The parked events that can still be read; one that cannot is logged and dropped with the rest.
fn candidates(parked: &[ParkedRow]) -> Vec<Candidate> {
    let received_at = Instant::now();
    parked
        .iter()
        .filter_map(|p| {
            let event_type = match p.event.event_type.as_str() {
                "log" => EventType::Log,
                "log.removed" => EventType::LogRemoved,
                other => {
                    tracing::warn!(
                        seq = p.seq,
                        event_type = other,
                        "parked event of unknown type dropped"
                    );
                    return None;
                }
            };
            match ChainLog::from_json(&p.event.log) {
                Ok(log) => Some(Candidate {
                    log: Arc::new(log),
                    chain_id: p.event.chain_id as u64,
                    event_type,
                    received_at,
                }),
                Err(error) => {
                    tracing::warn!(seq = p.seq, %error, "unreadable parked event dropped");
                    None
                }
            }
        })
        .collect()
}

/// Runs the events through a fresh instance of the current plugin; no plugin keeps everything.
async fn decide(
    state: &AdminState,
    row: &SubscriptionRow,
    events: &[Candidate],
) -> ApiResult<Decisions> {
    let Some(plugin_id) = &row.plugin_id else {
        return Ok(events.iter().map(|_| Some(None)).collect());
    };
    let plugin = load_plugin(state, plugin_id).await?;
    let config_json = row
        .plugin_config
        .clone()
        .unwrap_or_else(|| "null".to_string());
    let logs: Vec<ChainLog> = events.iter().map(|e| (*e.log).clone()).collect();
    let runtime = state.runtime.clone();
    let report =
        run_blocking(move || dry_run(&runtime, plugin, &config_json, &logs, PLUGIN_BATCH)).await?;
    state
        .log_book
        .record(&row.id, &report.logs, report.logs_dropped);
    if let Some(error) = report.error {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "plugin_failed",
            format!("the plugin failed again: {error}"),
        ));
    }
    if report.results.len() != events.len() {
        let message = format!(
            "the plugin decided {} of {} events",
            report.results.len(),
            events.len()
        );
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "plugin_failed",
            message,
        ));
    }
    Ok(report
        .results
        .into_iter()
        .map(|r| (r.decision == "keep").then_some(r.data))
        .collect())
}

/// Only the id and endpoint matter for a delivery; the rest is what the matcher would hold. A
/// stored mode that cannot be read is an error (the registry refuses it too), not the default.
fn body_subscription(row: &SubscriptionRow) -> Result<Subscription, StoreError> {
    let mode = crate::modes::DeliveryMode::from_columns(&row.mode).map_err(|reason| {
        StoreError::Unreadable {
            what: "delivery mode",
            reason,
        }
    })?;
    Ok(Subscription {
        id: row.id.clone(),
        endpoint_id: row.endpoint_id.clone(),
        chain_id: row.chain_id.max(0) as u64,
        addresses: None,
        topics: Vec::new(),
        plugin: None,
        status: SubscriptionStatus::Active,
        confirmations: row.confirmations.max(0) as u64,
        load_error: None,
        canary: None,
        mode,
    })
}
