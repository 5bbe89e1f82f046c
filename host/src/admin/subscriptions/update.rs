//! `PATCH /v1/subscriptions/{id}`: writes only the fields given (the matcher's quarantine and
//! recovery change `status`/`last_error` at any time, and a PATCH must not write back what it
//! read before), and a change of `confirmations` applies to deliveries already held at once.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{
    SubscriptionView, addresses_text, check_plugin, checked_confirmations, load, topics_text, view,
};
use crate::admin::schema::{self, OnDead, Ordering, OrderingKey, SubscriptionStatusInput};
use crate::admin::{AdminState, ApiError, ApiResult, Id, IdParam, parse_json};
use crate::store::{SubscriptionPatch, SubscriptionRow, SubscriptionStatus, now_ms};

/// Absent fields stay as they are; `null` clears (`addresses`, `topics`: any; `plugin_id`: detach).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SubscriptionUpdate)]
pub(super) struct UpdateSubscription {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::addresses)]
    addresses: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::topics)]
    topics: Option<Value>,
    /// null detaches the plugin.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    plugin_id: Option<Option<String>>,
    /// Any JSON, passed to the plugin's `pipeline_init`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Value)]
    plugin_config: Option<Value>,
    #[serde(default)]
    #[schema(maximum = 1_000_000)]
    confirmations: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Option<SubscriptionStatusInput>)]
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::batch)]
    batch: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Ordering>)]
    ordering: Option<String>,
    /// `address`: one order per contract (not with `batch`).
    #[serde(default)]
    #[schema(value_type = Option<OrderingKey>)]
    ordering_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<OnDead>)]
    on_dead: Option<String>,
}

/// Tells a field sent as `null` (Some(null)) from a field left out (None).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Change filters, plugin, config, confirmations, delivery mode or status; a new plugin or
/// config releases a quarantine.
#[utoipa::path(patch, path = "/subscriptions/{id}", tag = "subscriptions", params(IdParam),
    request_body = UpdateSubscription,
    responses((status = 200, description = "The subscription as changed", body = SubscriptionView)))]
pub(crate) async fn update(
    State(state): State<AdminState>,
    Id(id): Id,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SubscriptionView>> {
    let request: UpdateSubscription = parse_json(&body?)?;
    // Read for validation (the plugin and its config are checked together) and the chain id.
    let mut row = load(&state, &id).await?;
    let mut patch = SubscriptionPatch {
        addresses: request
            .addresses
            .as_ref()
            .map(|a| addresses_text(Some(a)))
            .transpose()?,
        topics: request
            .topics
            .as_ref()
            .map(|t| topics_text(Some(t)))
            .transpose()?,
        confirmations: checked_confirmations(request.confirmations)?,
        updated_at: now_ms(),
        ..SubscriptionPatch::default()
    };
    if request.plugin_id.is_some() || request.plugin_config.is_some() {
        apply_plugin_change(&state, &mut row, request.plugin_id, request.plugin_config).await?;
        patch.plugin = Some((row.plugin_id.clone(), row.plugin_config.clone()));
        patch.status = Some(SubscriptionStatus::Active);
        patch.last_error = Some(None);
    }
    let mode = super::modes::ModeFields {
        batch: request.batch,
        ordering: request.ordering,
        ordering_key: request.ordering_key,
        on_dead: request.on_dead,
    };
    if !mode.is_empty() {
        patch.mode = Some(mode.apply(&row.mode)?);
    }
    if let Some(text) = request.status.as_deref() {
        match text.parse() {
            // A client pauses and resumes; only the pipeline quarantines.
            Ok(status @ (SubscriptionStatus::Active | SubscriptionStatus::Paused)) => {
                patch.status = Some(status)
            }
            _ => {
                let message = format!("status {text:?} is not one of active, paused");
                return Err(ApiError::bad_request("invalid_status", message));
            }
        }
    }
    if !state.store.patch_subscription(&id, &patch).await? {
        return Err(ApiError::not_found("subscription", &id));
    }
    if patch.confirmations.is_some() {
        reconcile_held(&state, &row).await?;
    }
    state.registry.reload_subscription(&id).await?;
    view(&state, load(&state, &id).await?).await
}

/// New confirmations apply to the deliveries this subscription already holds: lowered, those
/// whose block is now deep enough are released at once; raised, the rest wait longer. Only on a
/// host that ingests the chain (it knows the chain's confirmations); elsewhere the owner's
/// periodic pass (`app::reconcile_held`) does it.
async fn reconcile_held(state: &AdminState, row: &SubscriptionRow) -> ApiResult<()> {
    let Ok(chain_id) = u64::try_from(row.chain_id) else {
        return Ok(());
    };
    let Some(&confirmations) = state.chain_confirmations.get(&chain_id) else {
        return Ok(());
    };
    let changes = state.store.reconcile_held(chain_id, confirmations).await?;
    tracing::info!(subscription = %row.id, rescheduled = changes.rescheduled, released = changes.released, cancelled = changes.cancelled, "held deliveries follow the new confirmations");
    Ok(())
}

/// A new plugin or config: validated, then the subscription is active again with no error. This
/// is how a quarantined subscription is released.
async fn apply_plugin_change(
    state: &AdminState,
    row: &mut SubscriptionRow,
    plugin_id: Option<Option<String>>,
    plugin_config: Option<Value>,
) -> ApiResult<()> {
    if let Some(plugin_id) = plugin_id {
        if plugin_id.is_none() {
            row.plugin_config = None;
        }
        row.plugin_id = plugin_id;
    }
    if let Some(config) = plugin_config {
        row.plugin_config = Some(config).filter(|c| !c.is_null()).map(|c| c.to_string());
    }
    check_plugin(state, row).await?;
    Ok(())
}
