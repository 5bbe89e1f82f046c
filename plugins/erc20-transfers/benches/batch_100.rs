#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is right
//! `erc20-transfers` compiled natively on one 100-event batch, through the SDK's decode → process →
//! encode path (`pipeline_sdk::process_batch`), as `batch_100/erc20/native` in the host's bench.
//! Input: the first 100 `Transfer`-topic logs of `fixtures/mainnet-logs.jsonl.zst`.
//!
//! Run: `cargo bench -p erc20-transfers --bench batch_100`.

use std::hint::black_box;
use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline_sdk::testing::log_from_json;

const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// The host bench's config: keeps the transfers of at least 1,000,000 base units.
const CONFIG: &str = r#"{"min_value":"1000000"}"#;

/// The encoded batch of the first 100 Transfer-topic logs of the recorded mainnet fixture.
fn transfer_batch() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/mainnet-logs.jsonl.zst"
    );
    let zst = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut text = String::new();
    ruzstd::decoding::StreamingDecoder::new(&mut zst.as_slice())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let logs: Vec<_> = text
        .lines()
        .filter(|l| l.contains(TRANSFER_TOPIC))
        .take(100)
        .map(|l| log_from_json(l).unwrap())
        .collect();
    assert_eq!(logs.len(), 100);
    pipeline_sdk::encode_batch(&logs)
}

fn batch_100(c: &mut Criterion) {
    let input = transfer_batch();
    let config: erc20_transfers::Config = pipeline_sdk::parse_config(CONFIG.as_bytes()).unwrap();
    let mut out = Vec::new();
    let decode = |out: &[u8]| pipeline_sdk::decode_output(out, Some(100)).unwrap();
    pipeline_sdk::process_batch(&config, &input, erc20_transfers::process, &mut out).unwrap();
    let fast = decode(&out);
    pipeline_sdk::process_batch(
        &config,
        &input,
        erc20_transfers::process_via_value,
        &mut out,
    )
    .unwrap();
    assert_eq!(fast, decode(&out), "both paths decide and pay the same");
    let kept = fast.decisions.iter().filter(|d| d.code() == 2).count();
    eprintln!("batch_100: {kept} of 100 events kept with a payload");
    let mut group = c.benchmark_group("batch_100");
    group.throughput(Throughput::Elements(100));
    // A/B in one run: the payload through `JsonObject` (the plugin) and through a
    // `serde_json::Value` (its previous code, kept as `process_via_value`). Each is passed as a
    // function item, as the host's bench does, so `process_batch` can inline it.
    group.bench_function("erc20/native", |b| {
        b.iter(|| {
            pipeline_sdk::process_batch(
                &config,
                black_box(&input),
                erc20_transfers::process,
                &mut out,
            )
            .unwrap()
        })
    });
    group.bench_function("erc20/native_via_value", |b| {
        b.iter(|| {
            pipeline_sdk::process_batch(
                &config,
                black_box(&input),
                erc20_transfers::process_via_value,
                &mut out,
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, batch_100);
criterion_main!(benches);
