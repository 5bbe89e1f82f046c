//! What the HTTP examples (`client_cost`, `fanout_floor`) share: a webhook-sized body the load
//! harness's sink accepts, and this process's CPU time.

use bytes::Bytes;

/// Bytes of a webhook body, about a 1K-scenario transfer's.
pub const BODY: usize = 1000;

/// A `BODY`-byte JSON body with the `log.blockNumber` the sink reads.
pub fn body() -> Bytes {
    let mut s = String::from("{\"log\":{\"blockNumber\":\"0x10\",\"data\":\"");
    while s.len() < BODY - 4 {
        s.push('a');
    }
    s.push_str("\"}}");
    Bytes::from(s)
}

/// This process's user and system CPU so far, in ms (`/proc/self/stat`, 10 ms ticks).
pub fn cpu_ms() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks * 10.0
}
