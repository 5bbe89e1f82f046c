#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is right
//! Fixed work for A/B comparisons of plugin cost on a shared, noisy machine: one variant runs a
//! given number of 100-event batch calls inside `measured_calls`, so
//! `valgrind --tool=callgrind --toggle-collect='*measured_calls*'` counts exactly those
//! instructions (repeatable to a few per million), and the wall-clock median per event of
//! blocks of calls is printed beside it.
//!
//! Variants: `erc20/native`, `erc20/wasm_unmetered`, `erc20/wasm_metered`, the same for
//! `passthrough` and `uniswap` (`uniswap-v3-swaps`, whose payloads also hold numbers), and `all`
//! (every variant, wall clock only). Input: the first 100 `Transfer`-topic logs of the recorded
//! mainnet fixture, as in `benches/plugin.rs`; for `uniswap`, the first 100 `Swap`-topic logs.
//! `PIPELINE_BENCH_WASM_DIR` reads the `.wasm` files from another directory (a guest built with
//! another profile).
//!
//! ```sh
//! cargo build --release --target wasm32-unknown-unknown -p erc20-transfers -p passthrough -p uniswap-v3-swaps
//! cargo bench -p pipeline-host --bench plugin_calls -- all
//! valgrind --tool=callgrind --toggle-collect='*measured_calls*' \
//!   target/release/deps/plugin_calls-<hash> erc20/wasm_metered 200
//! ```

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use pipeline_host::config::PluginLimits;
use pipeline_host::event::ChainLog;
use pipeline_host::plugin::{Output, PluginInstance, PluginRuntime, abi};

const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
const SWAP_TOPIC: &str = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67";
const ERC20_CONFIG: &str = r#"{"min_value":"1000000"}"#;
const VARIANTS: [&str; 9] = [
    "erc20/native",
    "erc20/wasm_unmetered",
    "erc20/wasm_metered",
    "passthrough/native",
    "passthrough/wasm_unmetered",
    "passthrough/wasm_metered",
    "uniswap/native",
    "uniswap/wasm_unmetered",
    "uniswap/wasm_metered",
];

fn logs_with_topic(topic: &str) -> Vec<ChainLog> {
    let text = pipeline_host::fixtures::mainnet_logs().expect("the recorded mainnet logs");
    text.lines()
        .filter(|l| l.contains(topic))
        .take(100)
        .map(|l| ChainLog::from_json(l).expect("fixture log"))
        .collect()
}

fn wasm(name: &str) -> Vec<u8> {
    let dir = std::env::var("PIPELINE_BENCH_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("wasm32-unknown-unknown/release")
        });
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (build the plugins first)", path.display()))
}

/// A plugin's native build, with its configuration.
enum Native {
    Erc20(erc20_transfers::Config),
    Passthrough,
    Uniswap(uniswap_v3_swaps::Config),
}

/// One call of a variant on the batch: what is counted and timed.
enum Subject {
    Native {
        input: Vec<u8>,
        out: Vec<u8>,
        plugin: Native,
    },
    Wasm(Box<PluginInstance>),
}

/// The plugin's `.wasm` name, its configuration, and its logs' topic.
fn plugin(name: &str) -> (&'static str, &'static str, &'static str) {
    match name {
        "erc20" => ("erc20_transfers", ERC20_CONFIG, TRANSFER_TOPIC),
        "passthrough" => ("passthrough", "null", TRANSFER_TOPIC),
        "uniswap" => ("uniswap_v3_swaps", "{}", SWAP_TOPIC),
        other => panic!("unknown plugin {other}"),
    }
}

impl Subject {
    fn new(variant: &str, logs: &[&ChainLog]) -> Subject {
        let (name, mode) = variant.split_once('/').expect("plugin/mode");
        let (wasm_name, config, _) = plugin(name);
        if mode == "native" {
            let mut input = Vec::new();
            abi::encode_batch(logs.iter().copied(), &mut input);
            let plugin = match name {
                "erc20" => Native::Erc20(serde_json::from_str(config).unwrap()),
                "uniswap" => Native::Uniswap(serde_json::from_str(config).unwrap()),
                _ => Native::Passthrough,
            };
            return Subject::Native {
                input,
                out: Vec::new(),
                plugin,
            };
        }
        let runtime = match mode {
            "wasm_metered" => PluginRuntime::new(PluginLimits::default()),
            "wasm_unmetered" => {
                PluginRuntime::new_unmetered_for_benchmarks(PluginLimits::default())
            }
            other => panic!("unknown mode {other}"),
        }
        .unwrap();
        let plugin = runtime.compile(&wasm(wasm_name)).expect("plugin compiles");
        Subject::Wasm(Box::new(runtime.instantiate(plugin, config).unwrap()))
    }

    fn call(&mut self, logs: &[&ChainLog]) -> usize {
        use pipeline_sdk::process_batch;
        match self {
            Subject::Native { input, out, plugin } => {
                let input = black_box(input);
                match plugin {
                    Native::Erc20(config) => {
                        process_batch(config, input, erc20_transfers::process, out)
                    }
                    Native::Uniswap(config) => {
                        process_batch(config, input, uniswap_v3_swaps::process, out)
                    }
                    Native::Passthrough => {
                        process_batch(&serde::de::IgnoredAny, input, passthrough::process, out)
                    }
                }
                .unwrap();
                out.len()
            }
            Subject::Wasm(instance) => match instance.process(black_box(logs)).unwrap().output {
                Output::Decisions(decisions) => decisions.len(),
                Output::Failed { .. } => panic!("the plugin failed the batch"),
            },
        }
    }
}

/// Fuel one call uses (0 natively or unmetered).
fn fuel_per_call(subject: &mut Subject, logs: &[&ChainLog]) -> u64 {
    match subject {
        Subject::Wasm(instance) => instance.process(logs).unwrap().fuel_used,
        Subject::Native { .. } => 0,
    }
}

/// The calls callgrind counts (`--toggle-collect='*measured_calls*'`).
#[inline(never)]
fn measured_calls(subject: &mut Subject, logs: &[&ChainLog], calls: usize) -> usize {
    (0..calls).map(|_| subject.call(logs)).sum()
}

/// Median wall-clock ns per event over `blocks` blocks of `calls` calls.
fn median_ns_per_event(subject: &mut Subject, logs: &[&ChainLog], blocks: usize) -> f64 {
    const CALLS: usize = 20;
    let mut per_event: Vec<f64> = (0..blocks)
        .map(|_| {
            let started = Instant::now();
            black_box(measured_calls(subject, logs, CALLS));
            started.elapsed().as_nanos() as f64 / (CALLS * logs.len()) as f64
        })
        .collect();
    per_event.sort_by(|a, b| a.total_cmp(b));
    per_event[per_event.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let variant = args.first().map(String::as_str).unwrap_or("all");
    let calls: Option<usize> = args.get(1).map(|n| n.parse().unwrap());
    let variants: Vec<&str> = if variant == "all" {
        VARIANTS.to_vec()
    } else {
        vec![variant]
    };
    for variant in variants {
        let (name, _) = variant.split_once('/').expect("plugin/mode");
        let logs = logs_with_topic(plugin(name).2);
        let refs: Vec<&ChainLog> = logs.iter().collect();
        let mut subject = Subject::new(variant, &refs);
        // Warm up: first calls grow buffers and fault in pages.
        black_box(measured_calls(&mut subject, &refs, 5));
        if let Some(calls) = calls {
            let decisions = black_box(measured_calls(&mut subject, &refs, calls));
            let fuel = fuel_per_call(&mut subject, &refs);
            println!("{variant}: {calls} calls, {decisions} decisions, {fuel} fuel per call");
        } else {
            let ns = median_ns_per_event(&mut subject, &refs, 200);
            println!("{variant:<28} {ns:>8.1} ns/event (median of 200 blocks of 20 batch calls)");
        }
    }
}
