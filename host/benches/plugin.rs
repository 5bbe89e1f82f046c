#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is right
//! Plugin host overhead, measured with criterion on recorded mainnet logs:
//! - one 100-event batch through a plugin in wasm (metered and unmetered) versus the same plugin
//!   compiled natively and run through the same SDK decode/encode path;
//! - the fixed cost of one call; recovering from a trap (a fresh instance from `InstancePre`);
//! - one batch fanned out to 100 subscriptions, each with its own plugin instance.
//!
//! Needs the release wasm plugins (`scripts/test.sh` builds them, or
//! `cargo build --release --target wasm32-unknown-unknown -p erc20-transfers -p passthrough`).
//! Run: `cargo bench -p pipeline-host --bench plugin`. Results: BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline_host::config::PluginLimits;
use pipeline_host::event::{Batch, BlockKind, BlockLogs, ChainLog};
use pipeline_host::matcher::index::{PluginBinding, Subscription, SubscriptionStatus};
use pipeline_host::matcher::{Matcher, PluginLogBook, SubscriptionSet};
use pipeline_host::metrics::Metrics;
use pipeline_host::plugin::{CompiledPlugin, PluginRuntime, abi};
use tokio::sync::watch;

const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
const ERC20_CONFIG: &str = r#"{"min_value":"1000000"}"#;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// 100 real logs: the first 100 Transfer-topic logs of the recorded mainnet fixture.
fn transfer_logs() -> Vec<ChainLog> {
    let text = pipeline_host::fixtures::mainnet_logs().expect("the recorded mainnet logs");
    text.lines()
        .filter(|l| l.contains(TRANSFER_TOPIC))
        .take(100)
        .map(|l| ChainLog::from_json(l).expect("fixture log"))
        .collect()
}

fn wasm(name: &str) -> Vec<u8> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let path = target
        .join("wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (build the plugins first)", path.display()))
}

fn compile(runtime: &PluginRuntime, name: &str) -> Arc<CompiledPlugin> {
    runtime.compile(&wasm(name)).expect("plugin compiles")
}

fn batch_of_100(c: &mut Criterion) {
    let logs = transfer_logs();
    let refs: Vec<&ChainLog> = logs.iter().collect();
    let mut input = Vec::new();
    abi::encode_batch(refs.iter().copied(), &mut input);
    let metered = PluginRuntime::new(PluginLimits::default()).unwrap();
    let unmetered = PluginRuntime::new_unmetered_for_benchmarks(PluginLimits::default()).unwrap();

    let mut group = c.benchmark_group("batch_100");
    group.throughput(Throughput::Elements(refs.len() as u64));
    let erc20_config: erc20_transfers::Config = serde_json::from_str(ERC20_CONFIG).unwrap();
    let mut out = Vec::new();
    group.bench_function("erc20/native", |b| {
        b.iter(|| {
            pipeline_sdk::process_batch(
                &erc20_config,
                black_box(&input),
                erc20_transfers::process,
                &mut out,
            )
            .unwrap()
        })
    });
    for (label, runtime) in [
        ("erc20/wasm_metered", &metered),
        ("erc20/wasm_unmetered", &unmetered),
    ] {
        let mut instance = runtime
            .instantiate(compile(runtime, "erc20_transfers"), ERC20_CONFIG)
            .unwrap();
        group.bench_function(label, |b| {
            b.iter(|| instance.process(black_box(&refs)).unwrap())
        });
    }
    let passthrough_config = serde::de::IgnoredAny;
    group.bench_function("passthrough/native", |b| {
        b.iter(|| {
            pipeline_sdk::process_batch(
                &passthrough_config,
                black_box(&input),
                passthrough::process,
                &mut out,
            )
            .unwrap()
        })
    });
    let mut instance = metered
        .instantiate(compile(&metered, "passthrough"), "null")
        .unwrap();
    group.bench_function("passthrough/wasm_metered", |b| {
        b.iter(|| instance.process(black_box(&refs)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("call");
    let one = &refs[..1];
    let mut instance = metered
        .instantiate(compile(&metered, "passthrough"), "null")
        .unwrap();
    group.bench_function("passthrough_1_event", |b| {
        b.iter(|| instance.process(black_box(one)).unwrap())
    });
    let plugin = compile(&metered, "erc20_transfers");
    group.bench_function("fresh_instance_after_trap", |b| {
        b.iter(|| metered.instantiate(plugin.clone(), ERC20_CONFIG).unwrap())
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let logs: Vec<Arc<ChainLog>> = transfer_logs().into_iter().map(Arc::new).collect();
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let plugin = compile(&runtime, "erc20_transfers");
    let subscriptions = (0..100)
        .map(|i| {
            Arc::new(Subscription {
                id: format!("sub_{i}"),
                endpoint_id: "ep".into(),
                chain_id: 1,
                addresses: None,
                topics: vec![Some(vec![TRANSFER_TOPIC.parse().unwrap()])],
                plugin: Some(PluginBinding {
                    plugin: plugin.clone(),
                    config_json: ERC20_CONFIG.into(),
                }),
                status: SubscriptionStatus::Active,
                confirmations: 0,
                load_error: None,
                canary: None,
                mode: Default::default(),
            })
        })
        .collect();
    let (_tx, rx) = watch::channel(Arc::new(SubscriptionSet::new(subscriptions)));
    let mut matcher = Matcher::new(
        runtime,
        rx,
        HashMap::new(),
        PluginLogBook::default(),
        Metrics::new().unwrap(),
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let batch = || Batch {
        blocks: vec![BlockLogs {
            chain_id: 1,
            number: 1,
            hash: logs[0].block_hash,
            kind: BlockKind::Canonical,
            logs: logs.clone(),
            received_at: Instant::now(),
            in_flight: Default::default(),
            window_row: None,
        }],
        n_events: logs.len(),
    };
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    group.throughput(Throughput::Elements(100 * logs.len() as u64));
    group.bench_function("100_subscriptions_x_100_events", |b| {
        b.iter(|| tokio.block_on(matcher.process(batch())))
    });
    group.finish();
}

criterion_group!(benches, batch_of_100, fanout);
criterion_main!(benches);
