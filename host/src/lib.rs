//! Pipeline host: chain events → batches → matched, plugin-filtered deliveries → signed webhooks.
//! See ARCHITECTURE.md for the map.

pub mod batch;
pub mod config;
pub mod event;
pub mod metrics;
pub mod plugin;
