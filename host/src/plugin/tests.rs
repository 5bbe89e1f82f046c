//! Test module: compiled only under #[cfg(test)], from its parent module.
//! Hostile and malformed modules, written in WAT: each must be refused at upload with its own
//! code, or contained at run time with the right error.

use super::*;
use crate::event::ChainLog;

const LOG: &str = r#"{"address":"0xf4eced2f682ce333f96f2d8966c613ded8fc95dd","topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"],"data":"0x00000000000000000000000000000000000000000000000000000000000186a0","blockNumber":"0x76250","blockHash":"0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae","transactionHash":"0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#;

/// A plugin whose `pipeline_process` body is `process`; the static output at 8192 keeps one event.
fn module(extra: &str, process: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "pipeline" "log" (func $log (param i32 i32 i32)))
  {extra}
  (memory (export "memory") 2)
  (data (i32.const 8192) "\01\00\00\00\01\00")
  (data (i32.const 9000) "hello from wasm")
  (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param $len i32) (result i64) {process})
)"#
    );
    wat::parse_str(&text).unwrap()
}

const KEEP_ONE: &str =
    "(call $log (i32.const 2) (i32.const 9000) (i32.const 15)) (i64.const 35184372088838)"; // 8192 << 32 | 6

fn runtime() -> PluginRuntime {
    PluginRuntime::new(PluginLimits {
        call_timeout_ms: 2_000,
        ..PluginLimits::default()
    })
    .unwrap()
}

fn run(bytes: &[u8]) -> Result<CallReport, PluginError> {
    let rt = runtime();
    let plugin = rt.compile(bytes).unwrap();
    let mut instance = rt.instantiate(plugin, "null")?;
    let log = ChainLog::from_json(LOG).unwrap();
    instance.process(&[&log])
}

fn refused(bytes: &[u8]) -> ValidationError {
    runtime().compile(bytes).unwrap_err()
}

#[test]
fn a_well_behaved_module_keeps_the_event_and_logs() {
    let report = run(&module("", KEEP_ONE)).unwrap();
    assert_eq!(
        report.output,
        Output::Decisions(vec![Decision::Keep].into())
    );
    assert!(report.fuel_used > 0);
    assert_eq!(report.logs.len(), 1);
    assert_eq!(report.logs[0].message, "hello from wasm");
}

#[test]
fn same_bytes_same_id() {
    let bytes = module("", KEEP_ONE);
    let rt = runtime();
    assert_eq!(rt.compile(&bytes).unwrap().id, plugin_id(&bytes));
    assert_eq!(plugin_id(&bytes).len(), 64);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let err = run(&module("", "(loop $l (br $l)) (i64.const 0)")).unwrap_err();
    assert!(matches!(err, PluginError::OutOfFuel), "{err:?}");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let err = run(&module(
        "",
        "(loop $l (drop (memory.grow (i32.const 16))) (br $l)) (i64.const 0)",
    ))
    .unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit(_)), "{err:?}");
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let err = run(&module("(func $r (call $r))", "(call $r) (i64.const 0)")).unwrap_err();
    assert!(matches!(err, PluginError::StackOverflow), "{err:?}");
}

#[test]
fn unreachable_is_a_trap() {
    let err = run(&module("", "unreachable")).unwrap_err();
    assert!(matches!(err, PluginError::Trap(_)), "{err:?}");
}

#[test]
fn output_outside_memory_is_malformed() {
    // pointer 0x7fff0000, length 6: far past the 128 KiB memory.
    let err = run(&module("", "(i64.const 9223090561878065158)")).unwrap_err();
    assert!(matches!(err, PluginError::BadOutput(_)), "{err:?}");
    // length of 2 GiB.
    let err = run(&module("", "(i64.const 35186519572480)")).unwrap_err();
    assert!(
        matches!(err, PluginError::BadOutput(ref m) if m.contains("exceeds")),
        "{err:?}"
    );
}

#[test]
fn negative_return_is_an_error_code() {
    let err = run(&module("", "(i64.const -3)")).unwrap_err();
    assert!(matches!(err, PluginError::ErrorCode(-3)), "{err:?}");
}

#[test]
fn infinite_start_is_refused_at_upload_and_infinite_init_is_stopped() {
    let start = module("(func $s (loop $l (br $l))) (start $s)", KEEP_ONE);
    let err = refused(&start);
    assert_eq!(err.code(), "start_did_not_finish");
    assert!(err.to_string().contains("out of fuel"), "{err}");
    let trapping_start = module("(func $s unreachable) (start $s)", KEEP_ONE);
    assert_eq!(refused(&trapping_start).code(), "instantiation_failed");
    let init = module(
        "(func (export \"pipeline_init\") (param i32) (result i32) (loop $l (br $l)) (i32.const 0))",
        KEEP_ONE,
    );
    assert!(matches!(run(&init).unwrap_err(), PluginError::OutOfFuel));
}

#[test]
fn rejected_config_carries_the_plugin_message() {
    let init = module(
        "(func (export \"pipeline_init\") (param i32) (result i32) (call $log (i32.const 0) (i32.const 9000) (i32.const 5)) (i32.const 1))",
        KEEP_ONE,
    );
    let err = run(&init).unwrap_err();
    assert!(
        matches!(err, PluginError::ConfigRejected(ref m) if m == "hello"),
        "{err:?}"
    );
}

#[test]
fn upload_refusals_have_their_own_codes() {
    assert_eq!(refused(b"MZ\x90\x00 not wasm").code(), "invalid_wasm");
    assert_eq!(refused(b"\0asm\x01\x00\x00\x00\xff").code(), "invalid_wasm");
    let missing = wat::parse_str("(module (memory (export \"memory\") 1))").unwrap();
    assert_eq!(
        refused(&missing),
        ValidationError::MissingExport("pipeline_abi_v1")
    );
    let wrong = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "pipeline_abi_v1"))
        (func (export "pipeline_input") (param i32) (result i32) i32.const 0)
        (func (export "pipeline_process") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let err = refused(&wrong);
    assert_eq!(err.code(), "bad_signature");
    assert!(err.to_string().contains("pipeline_process"), "{err}");
    let wasi = module(
        "(import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))",
        KEEP_ONE,
    );
    let err = refused(&wasi);
    assert_eq!(err.code(), "forbidden_import");
    assert!(
        err.to_string().contains("wasi_snapshot_preview1.fd_write"),
        "{err}"
    );
    let env = module("(import \"env\" \"abort\" (func))", KEEP_ONE);
    assert_eq!(refused(&env).code(), "forbidden_import");
    let mut big = module("", KEEP_ONE);
    big.resize(11 << 20, 0);
    assert_eq!(refused(&big).code(), "too_large");
}

#[test]
fn the_wall_clock_stops_a_loop_that_fuel_would_allow() {
    let limits = PluginLimits {
        fuel_base: u64::MAX / 4,
        call_timeout_ms: 50,
        ..PluginLimits::default()
    };
    let rt = PluginRuntime::new(limits).unwrap();
    let plugin = rt
        .compile(&module("", "(loop $l (br $l)) (i64.const 0)"))
        .unwrap();
    let mut instance = rt.instantiate(plugin, "null").unwrap();
    let log = ChainLog::from_json(LOG).unwrap();
    let started = std::time::Instant::now();
    let err = instance.process(&[&log]).unwrap_err();
    assert!(matches!(err, PluginError::Timeout), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_panic_reports_its_message_and_location() {
    let text = r#"(module (import "pipeline" "panic" (func $panic (param i32 i32)))
      (memory (export "memory") 2) (data (i32.const 9000) "boom at src/lib.rs:7:14")
      (func (export "pipeline_abi_v1"))
      (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
      (func (export "pipeline_process") (param i32) (result i64)
        (call $panic (i32.const 9000) (i32.const 23)) (i64.const 0)))"#;
    let err = run(&wat::parse_str(text).unwrap()).unwrap_err();
    assert_eq!(err.to_string(), "panic: boom at src/lib.rs:7:14");
}

#[test]
fn modules_that_could_never_run_are_refused_at_upload_naming_the_limit() {
    let limit = PluginLimits::default().memory_bytes;
    // 300 pages = 19.7 MB, above the 16 MiB default.
    let big_memory = wat::parse_str(
        r#"(module (memory (export "memory") 300) (func (export "pipeline_abi_v1"))
        (func (export "pipeline_input") (param i32) (result i32) i32.const 0)
        (func (export "pipeline_process") (param i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    let err = refused(&big_memory);
    assert_eq!(err.code(), "memory_too_large");
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    let big_table = module("(table 5000000 funcref)", KEEP_ONE);
    let err = refused(&big_table);
    assert_eq!(err.code(), "table_too_large");
    assert!(err.to_string().contains("100000"), "{err}");
    let two_tables = module("(table 1 funcref) (table 1 funcref)", KEEP_ONE);
    assert_eq!(refused(&two_tables).code(), "too_many_tables");
    let globals: String = (0..101)
        .map(|i| format!("(global $g{i} i32 (i32.const 0))"))
        .collect();
    let err = refused(&module(&globals, KEEP_ONE));
    assert_eq!(err.code(), "too_many_globals");
    assert!(err.to_string().contains("at most 100"), "{err}");
    // A table within the element cap still counts against memory at run time: with a 1 MiB
    // limit, 80,000 elements (640 KB) plus the 2-page memory (128 KB) fit, growing past it not.
    let rt = PluginRuntime::new(PluginLimits {
        memory_bytes: 1 << 20,
        ..PluginLimits::default()
    })
    .unwrap();
    let grows = module(
        "(table $t 80000 funcref)",
        "(drop (table.grow $t (ref.null func) (i32.const 60000))) (i64.const 35184372088838)",
    );
    let plugin = rt.compile(&grows).unwrap();
    let mut instance = rt.instantiate(plugin, "null").unwrap();
    let log = ChainLog::from_json(LOG).unwrap();
    let err = instance.process(&[&log]).unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit(_)), "{err:?}");
}

#[test]
fn logging_costs_fuel_so_a_log_flood_ends_like_a_loop() {
    // 300 lines of 15 bytes cost 300 × (10,000 + 15 × 16) ≈ 3.1M fuel, more than a one-event
    // call gets (2.2M): the flood runs out of fuel instead of spending the wall clock.
    let flood = module(
        "(global $n (mut i32) (i32.const 0))",
        "(loop $l (call $log (i32.const 2) (i32.const 9000) (i32.const 15))
           (global.set $n (i32.add (global.get $n) (i32.const 1)))
           (br_if $l (i32.lt_u (global.get $n) (i32.const 300))))
         (i64.const 35184372088838)",
    );
    assert!(matches!(run(&flood).unwrap_err(), PluginError::OutOfFuel));
    // A few lines are cheap.
    let report = run(&module("", KEEP_ONE)).unwrap();
    assert_eq!(report.logs.len(), 1);
    assert!(report.fuel_used >= 10_000);
}

#[test]
fn a_call_that_runs_long_is_demoted_and_still_stopped_by_the_wall_clock() {
    let limits = PluginLimits {
        fuel_base: u64::MAX / 4,
        call_timeout_ms: 100,
        ..PluginLimits::default()
    };
    let rt = PluginRuntime::new(limits).unwrap();
    let spin = rt
        .compile(&module("", "(loop $l (br $l)) (i64.const 0)"))
        .unwrap();
    let log = ChainLog::from_json(LOG).unwrap();
    std::thread::spawn(move || {
        let mut instance = rt.instantiate(spin, "null").unwrap();
        let err = instance.process(&[&log]).unwrap_err();
        assert!(matches!(err, PluginError::Timeout), "{err:?}");
        assert!(instance.ran_long());
        assert!(priority::is_demoted(), "the thread runs at low priority");
        priority::restore_current_thread();
    })
    .join()
    .unwrap();
}
