//! The delivery-mode fields of a subscription in the API: `batch`, `ordering`, `ordering_key`,
//! `on_dead` (validated together: `400 invalid_field` naming the field), and what ordered delivery
//! shows of itself, `ordering_blocked`.

use serde::Serialize;
use serde_json::Value;

use super::rfc3339;
use crate::admin::{AdminState, ApiError, ApiResult};
use crate::modes::{BatchPolicy, DeliveryMode, ModeColumns};
use crate::store::{BlockedKey, DeliveryStatus, SubscriptionRow};

/// The mode fields of a create or PATCH body; absent fields keep what the subscription has
/// (a create starts from the default). `batch: null` turns batching off.
#[derive(Debug, Default)]
pub(super) struct ModeFields {
    pub batch: Option<Value>,
    pub ordering: Option<String>,
    pub ordering_key: Option<String>,
    pub on_dead: Option<String>,
}

impl ModeFields {
    pub fn is_empty(&self) -> bool {
        self.batch.is_none()
            && self.ordering.is_none()
            && self.ordering_key.is_none()
            && self.on_dead.is_none()
    }

    /// `current` with these fields applied, checked as a whole.
    pub fn apply(&self, current: &ModeColumns) -> ApiResult<ModeColumns> {
        let invalid = |message: String| ApiError::bad_request("invalid_field", message);
        let mut mode = DeliveryMode::from_columns(current).map_err(invalid)?;
        if let Some(batch) = &self.batch {
            mode.batch = BatchPolicy::from_json(batch).map_err(invalid)?;
        }
        let columns = mode.columns();
        let mode = DeliveryMode::from_fields(
            mode.batch,
            self.ordering.as_deref().unwrap_or(&columns.ordering),
            self.ordering_key
                .as_deref()
                .unwrap_or(&columns.ordering_key),
            self.on_dead.as_deref().unwrap_or(&columns.on_dead),
        )
        .map_err(invalid)?;
        Ok(mode.columns())
    }
}

/// An ordering key held back by its first undelivered delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BlockedKey)]
pub struct BlockedView {
    pub key: String,
    pub delivery_id: String,
    #[schema(value_type = crate::admin::schema::BlockedStatus)]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub since: Option<String>,
}

impl From<BlockedKey> for BlockedView {
    fn from(k: BlockedKey) -> BlockedView {
        BlockedView {
            key: k.key,
            delivery_id: k.delivery_id,
            status: k.status,
            attempts: k.attempts,
            last_error: k.last_error,
            since: k.since.map(rfc3339),
        }
    }
}

/// The subscription's blocked keys (none to look for when it is not ordered).
pub(crate) async fn blocked(
    state: &AdminState,
    row: &SubscriptionRow,
) -> ApiResult<Vec<BlockedView>> {
    if row.mode.ordering == "none" {
        return Ok(Vec::new());
    }
    let keys = state.store.blocked_keys(Some(&row.id)).await?;
    Ok(keys.into_iter().map(BlockedView::from).collect())
}

/// `batch` as the API shows it.
pub(super) fn batch_value(columns: &ModeColumns) -> Value {
    columns
        .batch
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}
