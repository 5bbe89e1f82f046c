//! Support code for Pipeline's end-to-end tests: real processes (anvil, the `pipeline` binary,
//! PostgreSQL), a recording webhook receiver, an admin API client and the Python Standard Webhooks
//! verifier. Every wait has a timeout and every panic says what was expected and what happened.
//!
//! Run everything with `scripts/test.sh`: it installs the tools, builds the plugins and the host and
//! exports the variables read here (`PIPELINE_ANVIL`, `PIPELINE_TEST_TOKEN_BIN`,
//! `PIPELINE_TEST_PYTHON`, `PIPELINE_TEST_POSTGRES_URL`).

pub mod admin;
pub mod anvil;
pub mod checks;
pub mod command;
pub mod fixture;
pub mod host;
pub mod ledger;
pub mod load;
pub mod operations;
pub mod pg_server;
pub mod plugins;
pub mod postgres;
pub mod proxy;
pub mod receiver;
pub mod recorded;
pub mod verifier;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use admin::{Admin, ApiResponse, Body};
pub use anvil::Anvil;
pub use fixture::Fixture;
pub use host::{DbKind, Host, HostOptions};
pub use receiver::{Received, Receiver};

/// keccak256("Transfer(address,address,uint256)")
pub const TRANSFER_TOPIC0: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The tools folder that `scripts/test.sh` fills.
pub fn tools_dir() -> PathBuf {
    workspace_root().join(".tools")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Picked below the kernel's ephemeral range when there is room, so that a port a host gives up
/// while it is stopped is not handed to some outgoing connection before it starts again on it
/// (a restart keeps its admin and metrics ports). Falls back to a kernel-chosen port.
pub fn free_port() -> u16 {
    use rand::Rng;
    let lowest_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    const FIRST: u16 = 10_000;
    if lowest_ephemeral > FIRST + 1_000 {
        let mut rng = rand::rng();
        for _ in 0..64 {
            let port = rng.random_range(FIRST..lowest_ephemeral);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// A random lowercase alphanumeric string.
pub fn random_string(len: usize) -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(|c| (c as char).to_ascii_lowercase())
        .collect()
}

/// Polls `check` every `every` until it returns `Ok`, or panics after `timeout` naming `what` was
/// awaited and the last state that `check` reported through `Err`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Lowercase a hex string (addresses, hashes) for comparisons.
pub fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Parses a `0x…` JSON-RPC quantity.
pub fn parse_quantity(s: &str) -> u64 {
    let digits = s
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("quantity {s:?} lacks the 0x prefix"));
    u64::from_str_radix(digits, 16).unwrap_or_else(|e| panic!("quantity {s:?} is not hex: {e}"))
}
