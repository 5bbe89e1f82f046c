//! The states a row can be in, as enums. The columns stay TEXT (lowercase names, the same
//! strings the JSON API shows); a value the code does not know, read from the database, is a
//! `StoreError::UnknownState`, never a panic or a silent default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A value read from a status column that names no state of its enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?} in the database")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

/// Declares a state enum with its text form (`as_str`, `FromStr`, `Display`).
macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the column and shown by the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The state as an SQL string literal (`'pending'`), for statements that name a
            /// state in their text rather than binding it (an index condition, a fixed rule).
            pub const fn sql(self) -> &'static str {
                match self {
                    $($name::$variant => concat!("'", $text, "'")),+
                }
            }

            /// `('a', 'b')`: the states as an SQL list for `status IN …`.
            pub fn sql_in(states: &[$name]) -> String {
                let literals: Vec<&str> = states.iter().map(|s| s.sql()).collect();
                format!("({})", literals.join(", "))
            }
        }

        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <str as sqlx::Type<sqlx::Any>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str(), buf)
            }
        }

        /// Read from a TEXT column; an unknown value fails with [`UnknownState`] as the source,
        /// which `StoreError::from` turns into `StoreError::UnknownState`.
        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> Result<$name, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<$name, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState { kind: $kind, value: s.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

state_enum! {
    /// A delivery's status. `filling`: a batch still taking events (`batch: {max_events,
    /// max_wait_ms}`), not yet due.
    DeliveryStatus, "delivery status" {
        Pending => "pending",
        Delivered => "delivered",
        Retrying => "retrying",
        Dead => "dead",
        Filling => "filling",
    }
}

impl DeliveryStatus {
    /// Delivered or dead: no attempt will be made again (unless retried by hand).
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Dead)
    }
}

state_enum! {
    /// An endpoint's status.
    EndpointStatus, "endpoint status" {
        Enabled => "enabled",
        Disabled => "disabled",
    }
}

state_enum! {
    /// A subscription's status; `quarantined` is set by the pipeline (a failing plugin), never by a client.
    SubscriptionStatus, "subscription status" {
        Active => "active",
        Paused => "paused",
        Quarantined => "quarantined",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_matches_serde() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(*status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        for status in SubscriptionStatus::ALL {
            assert_eq!(status.as_str().parse::<SubscriptionStatus>(), Ok(*status));
        }
        for status in EndpointStatus::ALL {
            assert_eq!(status.as_str().parse::<EndpointStatus>(), Ok(*status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
    }

    #[test]
    fn unknown_text_is_an_error() {
        let err = "Delivered".parse::<DeliveryStatus>().unwrap_err();
        assert_eq!(err.value, "Delivered");
        assert!("paused".parse::<EndpointStatus>().is_err());
    }
}
