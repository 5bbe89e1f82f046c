//! Delivery modes of a subscription (issue 12): batched webhooks and ordered delivery. The types,
//! their stored and API forms, and (in `batching.rs`) the pure batching policy. No I/O.

pub mod batching;

use serde_json::Value;

/// Most events one batch webhook carries (`batch.max_events`).
pub const MAX_BATCH_EVENTS: u32 = 1000;
/// Longest a `{max_events, max_wait_ms}` batch waits for more events (`batch.max_wait_ms`).
pub const MAX_BATCH_WAIT_MS: u32 = 60_000;

/// How a subscription's matches are grouped into webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPolicy {
    /// One webhook per (block, event type) with all the subscription's matches in that block.
    Block,
    /// Up to `max_events` per webhook, sent at most `max_wait_ms` after its first event.
    Count { max_events: u32, max_wait_ms: u32 },
}

/// What one ordering key covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderingKey {
    /// The whole subscription is one sequence.
    Subscription,
    /// One sequence per emitting contract.
    Address,
}

/// What a dead delivery at the head of an ordering key does to the rest of that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDead {
    /// The key stays blocked until the dead delivery is retried (or recovered) and delivered.
    Halt,
    /// The dead delivery is passed over and the next one of the key goes.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    None,
    Chain { key: OrderingKey, on_dead: OnDead },
}

/// A subscription's delivery mode. The default is today's: one webhook per event, unordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryMode {
    pub batch: Option<BatchPolicy>,
    pub ordering: Ordering,
}

impl Default for DeliveryMode {
    fn default() -> DeliveryMode {
        DeliveryMode {
            batch: None,
            ordering: Ordering::None,
        }
    }
}

/// The mode's columns as stored on the subscription row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModeColumns {
    /// JSON: `"block"` or `{"max_events":N,"max_wait_ms":M}`; `None` = per event.
    pub batch: Option<String>,
    pub ordering: String,
    pub ordering_key: String,
    pub on_dead: String,
}

impl Default for ModeColumns {
    fn default() -> ModeColumns {
        DeliveryMode::default().columns()
    }
}

impl OrderingKey {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderingKey::Subscription => "subscription",
            OrderingKey::Address => "address",
        }
    }
}

impl OnDead {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDead::Halt => "halt",
            OnDead::Skip => "skip",
        }
    }
}

impl BatchPolicy {
    /// The stored and shown JSON form.
    pub fn to_json(self) -> Value {
        match self {
            BatchPolicy::Block => Value::from("block"),
            BatchPolicy::Count {
                max_events,
                max_wait_ms,
            } => serde_json::json!({"max_events": max_events, "max_wait_ms": max_wait_ms}),
        }
    }

    /// Parses and checks the JSON form; the message names the field.
    pub fn from_json(value: &Value) -> Result<Option<BatchPolicy>, String> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) if s == "block" => Ok(Some(BatchPolicy::Block)),
            Value::Object(fields) => {
                if let Some(unknown) = fields
                    .keys()
                    .find(|k| *k != "max_events" && *k != "max_wait_ms")
                {
                    return Err(format!(
                        "batch.{unknown} is not a batch setting (max_events, max_wait_ms)"
                    ));
                }
                let max_events = bounded(fields.get("max_events"), "max_events", MAX_BATCH_EVENTS)?;
                let max_wait_ms =
                    bounded(fields.get("max_wait_ms"), "max_wait_ms", MAX_BATCH_WAIT_MS)?;
                Ok(Some(BatchPolicy::Count {
                    max_events,
                    max_wait_ms,
                }))
            }
            _ => Err(
                "batch must be null, \"block\" or {\"max_events\": N, \"max_wait_ms\": M}".into(),
            ),
        }
    }
}

/// A required integer field of `batch` within 1..=max.
fn bounded(value: Option<&Value>, name: &str, max: u32) -> Result<u32, String> {
    let message = || format!("batch.{name} must be an integer from 1 to {max}");
    let n = value.and_then(Value::as_u64).ok_or_else(message)?;
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(message)
}

impl DeliveryMode {
    pub fn columns(&self) -> ModeColumns {
        let (ordering, key, on_dead) = match self.ordering {
            Ordering::None => ("none", OrderingKey::Subscription, OnDead::Halt),
            Ordering::Chain { key, on_dead } => ("chain", key, on_dead),
        };
        ModeColumns {
            batch: self.batch.map(|b| b.to_json().to_string()),
            ordering: ordering.to_string(),
            ordering_key: key.as_str().to_string(),
            on_dead: on_dead.as_str().to_string(),
        }
    }

    /// The mode from its stored columns (written only after [`DeliveryMode::from_fields`]).
    pub fn from_columns(c: &ModeColumns) -> Result<DeliveryMode, String> {
        let batch = match &c.batch {
            None => None,
            Some(text) => {
                let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
                BatchPolicy::from_json(&value)?
            }
        };
        DeliveryMode::from_fields(batch, &c.ordering, &c.ordering_key, &c.on_dead)
    }

    /// Checks a combination of settings; the message names the field at fault.
    pub fn from_fields(
        batch: Option<BatchPolicy>,
        ordering: &str,
        ordering_key: &str,
        on_dead: &str,
    ) -> Result<DeliveryMode, String> {
        let key = match ordering_key {
            "subscription" => OrderingKey::Subscription,
            "address" => OrderingKey::Address,
            other => {
                return Err(format!(
                    "ordering_key {other:?} is not one of subscription, address"
                ));
            }
        };
        let on_dead = match on_dead {
            "halt" => OnDead::Halt,
            "skip" => OnDead::Skip,
            other => return Err(format!("on_dead {other:?} is not one of halt, skip")),
        };
        let ordering = match ordering {
            "none" => Ordering::None,
            "chain" => Ordering::Chain { key, on_dead },
            other => return Err(format!("ordering {other:?} is not one of none, chain")),
        };
        if batch.is_some() && key == OrderingKey::Address {
            return Err(
                "ordering_key \"address\" cannot be combined with batch (a batch may hold several contracts' events)"
                    .into(),
            );
        }
        Ok(DeliveryMode { batch, ordering })
    }

    /// The ordering key of a delivery of subscription `subscription_id` for a log emitted by
    /// `address` (lowercase hex); `None` when the subscription is unordered.
    pub fn ordering_key(&self, subscription_id: &str, address: &str) -> Option<String> {
        match self.ordering {
            Ordering::None => None,
            Ordering::Chain {
                key: OrderingKey::Subscription,
                ..
            } => Some(subscription_id.to_string()),
            Ordering::Chain {
                key: OrderingKey::Address,
                ..
            } => Some(format!("{subscription_id}/{address}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_settings_are_bounded_and_named() {
        assert_eq!(BatchPolicy::from_json(&json!(null)), Ok(None));
        assert_eq!(
            BatchPolicy::from_json(&json!("block")),
            Ok(Some(BatchPolicy::Block))
        );
        assert_eq!(
            BatchPolicy::from_json(&json!({"max_events": 1000, "max_wait_ms": 1})),
            Ok(Some(BatchPolicy::Count {
                max_events: 1000,
                max_wait_ms: 1
            }))
        );
        for bad in [
            json!({"max_events": 0, "max_wait_ms": 10}),
            json!({"max_events": 1001, "max_wait_ms": 10}),
            json!({"max_events": 10}),
        ] {
            let error = BatchPolicy::from_json(&bad).unwrap_err();
            assert!(error.contains("batch.max_"), "{error}");
        }
        let error =
            BatchPolicy::from_json(&json!({"max_events": 1, "max_wait_ms": 60001})).unwrap_err();
        assert!(error.contains("max_wait_ms"), "{error}");
        assert!(BatchPolicy::from_json(&json!("blocks")).is_err());
        assert!(
            BatchPolicy::from_json(&json!({"max_events": 1, "max_wait_ms": 1, "x": 1}))
                .unwrap_err()
                .contains("batch.x")
        );
    }

    #[test]
    fn modes_round_trip_through_their_columns() {
        let modes = [
            DeliveryMode::default(),
            DeliveryMode {
                batch: Some(BatchPolicy::Count {
                    max_events: 5,
                    max_wait_ms: 200,
                }),
                ordering: Ordering::Chain {
                    key: OrderingKey::Subscription,
                    on_dead: OnDead::Skip,
                },
            },
            DeliveryMode {
                batch: None,
                ordering: Ordering::Chain {
                    key: OrderingKey::Address,
                    on_dead: OnDead::Halt,
                },
            },
        ];
        for mode in modes {
            assert_eq!(DeliveryMode::from_columns(&mode.columns()), Ok(mode));
        }
    }

    #[test]
    fn address_keys_do_not_combine_with_batches_and_keys_name_the_scope() {
        assert!(
            DeliveryMode::from_fields(Some(BatchPolicy::Block), "chain", "address", "halt")
                .is_err()
        );
        assert!(DeliveryMode::from_fields(None, "sometimes", "address", "halt").is_err());
        let by_address = DeliveryMode::from_fields(None, "chain", "address", "skip").unwrap();
        assert_eq!(
            by_address.ordering_key("sub_1", "0xab").as_deref(),
            Some("sub_1/0xab")
        );
        let whole = DeliveryMode::from_fields(None, "chain", "subscription", "halt").unwrap();
        assert_eq!(
            whole.ordering_key("sub_1", "0xab").as_deref(),
            Some("sub_1")
        );
        assert_eq!(DeliveryMode::default().ordering_key("sub_1", "0xab"), None);
    }
}
