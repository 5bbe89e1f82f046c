//! What the subscription routes answer: a subscription, a parked event, plugin log lines.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{json_value, modes};
use crate::admin::rfc3339;
use crate::admin::schema::{
    self, EventTypeName, OnDead, Ordering, OrderingKey, SubscriptionStatus,
};
use crate::store::{ParkedRow, SubscriptionRow};

/// A subscription as the API shows it: filters and config as JSON values, not strings.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Subscription)]
pub struct SubscriptionView {
    pub id: String,
    pub endpoint_id: String,
    pub chain_id: i64,
    #[schema(schema_with = schema::addresses)]
    pub addresses: Value,
    #[schema(schema_with = schema::topics)]
    pub topics: Value,
    pub plugin_id: Option<String>,
    /// The config passed to the plugin's `pipeline_init`, any JSON.
    #[schema(value_type = Value)]
    pub plugin_config: Value,
    pub confirmations: i64,
    #[schema(schema_with = schema::batch)]
    pub batch: Value,
    #[schema(value_type = Ordering)]
    pub ordering: String,
    #[schema(value_type = OrderingKey)]
    pub ordering_key: String,
    #[schema(value_type = OnDead)]
    pub on_dead: String,
    /// Ordering keys held back by a failing first delivery (empty when unordered).
    pub ordering_blocked: Vec<modes::BlockedView>,
    pub status: SubscriptionStatus,
    /// Why the subscription is quarantined, or the last plugin load error.
    pub last_error: Option<String>,
    /// Events held back by a failing plugin, waiting for `reprocess`.
    pub parked_events: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl SubscriptionView {
    pub(crate) fn new(
        row: SubscriptionRow,
        parked_events: i64,
        ordering_blocked: Vec<modes::BlockedView>,
    ) -> SubscriptionView {
        SubscriptionView {
            batch: modes::batch_value(&row.mode),
            ordering: row.mode.ordering,
            ordering_key: row.mode.ordering_key,
            on_dead: row.mode.on_dead,
            ordering_blocked,
            addresses: json_value(row.addresses.as_deref()),
            topics: json_value(row.topics.as_deref()),
            plugin_config: json_value(row.plugin_config.as_deref()),
            id: row.id,
            endpoint_id: row.endpoint_id,
            chain_id: row.chain_id,
            plugin_id: row.plugin_id,
            confirmations: row.confirmations,
            status: row.status,
            last_error: row.last_error,
            parked_events,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// A parked event, with the log as the JSON object the node sent.
#[derive(Serialize, ToSchema)]
#[schema(as = ParkedEvent)]
pub(crate) struct ParkedView {
    pub(crate) seq: i64,
    pub(crate) chain_id: i64,
    #[schema(value_type = EventTypeName)]
    pub(crate) event_type: String,
    /// The log as the node sent it.
    #[schema(value_type = Object)]
    pub(crate) log: Value,
    /// Why it was parked.
    pub(crate) error: String,
    pub(crate) event_index: Option<i64>,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
}

/// One line a plugin logged.
#[derive(Serialize, ToSchema)]
pub(crate) struct PluginLogLine {
    #[schema(format = DateTime)]
    pub(crate) at: String,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub(crate) level: String,
    pub(crate) message: String,
}

/// The recent log lines of a subscription's plugin (not paged: the last 200 at most).
#[derive(Serialize, ToSchema)]
pub(crate) struct PluginLogLines {
    pub(crate) items: Vec<PluginLogLine>,
}

impl From<ParkedRow> for ParkedView {
    fn from(row: ParkedRow) -> ParkedView {
        ParkedView {
            seq: row.seq,
            chain_id: row.event.chain_id,
            event_type: row.event.event_type,
            log: json_value(Some(&row.event.log)),
            error: row.event.error,
            event_index: row.event.event_index,
            created_at: rfc3339(row.created_at),
        }
    }
}
