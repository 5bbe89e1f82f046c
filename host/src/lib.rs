//! Pipeline host: chain events → batches → matched, plugin-filtered deliveries → signed webhooks.
//! See ARCHITECTURE.md for the map.

pub mod batch;
pub mod config;
pub mod deliver;
pub mod event;
pub mod metrics;
pub mod plugin;
pub mod store;
pub mod ingest;
pub mod matcher;
pub mod registry;
pub mod admin;
pub mod app;
pub mod outbox;
