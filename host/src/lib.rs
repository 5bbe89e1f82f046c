//! Pipeline host: chain events → batches → matched, plugin-filtered deliveries → signed webhooks.
//! See ARCHITECTURE.md for the map.

pub mod admin;
pub mod app;
pub mod backlog;
pub mod batch;
pub mod canary;
pub mod config;
pub mod console;
pub mod deliver;
pub mod dev;
pub mod devnode;
pub mod event;
pub mod fixtures;
pub mod ingest;
pub mod malloc;
pub mod matcher;
pub mod metrics;
pub mod modes;
pub mod outbox;
pub mod plugin;
pub mod redact;
pub mod registry;
pub mod server;
pub mod store;
