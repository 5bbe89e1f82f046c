//! Pipeline guest SDK.
