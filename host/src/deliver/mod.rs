//! Delivery: workers that sign and POST webhooks (global and per-endpoint caps, circuit breaker,
//! SSRF-safe client), a recorder that writes outcomes back in batches, and a poller that leases
//! due retries. New deliveries arrive from the outbox in memory; only retries are read back.

pub mod attempt;
pub mod breaker;
pub mod client;
mod dispatch;
pub mod held;
pub mod poller;
pub mod recorder;
mod room;
pub mod schedule;
pub mod sign;

pub use dispatch::{BreakerBoard, Dispatcher};
pub use room::{JobRoom, JobSender, NotSent};
