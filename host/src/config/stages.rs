//! The sections of the stages that have no file of their own: `[batch]`, `[delivery]`,
//! `[plugin]`, with their defaults.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::deliver::schedule::RetrySchedule;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max_events: usize,
    pub max_wait_ms: u64,
    /// Bytes of logs (MiB) between ingest and the commit of the batch write carrying their block
    /// (the reorg window holds a block's logs until then) at most: when the pipeline falls behind,
    /// ingest waits instead of holding more, whatever the blocks' sizes.
    #[serde(default = "default_max_in_flight_mib")]
    pub max_in_flight_mib: usize,
}

fn default_body_timeout_ms() -> u64 {
    2_000
}

fn default_max_in_flight_mib() -> usize {
    16
}

impl BatchConfig {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Concurrent delivery attempts across all endpoints.
    pub workers: usize,
    /// Concurrent attempts to one endpoint.
    pub per_endpoint_concurrency: usize,
    /// Delays before each retry, written `5s,5m,30m`; jitter is added.
    #[serde(with = "super::text::retry_schedule")]
    pub retry_schedule: RetrySchedule,
    /// Destinations allowed despite the private/loopback block, written `127.0.0.0/8,…`.
    #[serde(with = "super::text::cidrs")]
    pub allowed_cidrs: Vec<IpNet>,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// Time allowed for reading a response body (kept only for the delivery log) once the
    /// headers are in; a dripping body is cut there instead of holding a worker.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// How long a claimed delivery is leased to one replica.
    pub lease_ms: u64,
    /// How often due retries are looked for.
    pub poll_interval_ms: u64,
    /// Hand a batch's new deliveries to the workers before its write commits instead of after
    /// (off by default). The write then runs while the webhooks are sent: at 1K events/s it was
    /// most of the wait before the first webhook (BENCHMARKS.md). What it gives up, each case
    /// still at least once and under the same `webhook-id`:
    /// - a crash between the send and the commit sends the batch again after the restart (as a
    ///   crash between a send and the recording of its outcome always could);
    /// - a delivery already stored (a block that comes back after a reorg took it away) is sent
    ///   again instead of being skipped as a replay;
    /// - a replica that has just lost its chain to another sends that one batch, which the new
    ///   owner sends too;
    /// - after a crash before the commit, a block a reorg then removes never gets its
    ///   `log.removed`: the block was never stored, so the restarted host does not know it sent it.
    #[serde(default)]
    pub send_before_commit: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 100,
            max_wait_ms: 100,
            max_in_flight_mib: default_max_in_flight_mib(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            workers: 256,
            per_endpoint_concurrency: 32,
            retry_schedule: RetrySchedule::default(),
            allowed_cidrs: Vec::new(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            body_timeout_ms: default_body_timeout_ms(),
            lease_ms: 60_000,
            poll_interval_ms: 250,
            send_before_commit: false,
        }
    }
}

/// Sandbox limits applied to every plugin call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    pub fuel_base: u64,
    pub fuel_per_event: u64,
    pub memory_bytes: usize,
    pub stack_bytes: usize,
    pub max_module_bytes: usize,
    pub max_output_bytes: usize,
    /// Wall-clock backstop per call; fuel normally stops a loop long before.
    pub call_timeout_ms: u64,
    pub compile_timeout_ms: u64,
    /// Compile uploaded modules in a child process of the `pipeline` binary (`plugin/compiler.rs`):
    /// the compiler's code and heap stay out of the host, and a compile past its time limit is
    /// killed. `false` compiles on one of the host's own threads.
    pub compile_in_child: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            fuel_base: 2_000_000,
            fuel_per_event: 200_000,
            memory_bytes: 16 << 20,
            stack_bytes: 256 << 10,
            max_module_bytes: 10 << 20,
            max_output_bytes: 4 << 20,
            call_timeout_ms: 1_000,
            compile_timeout_ms: 30_000,
            compile_in_child: true,
        }
    }
}
