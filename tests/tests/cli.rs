//! The plugin developer's commands, run as a user would: `pipeline plugin check` and
//! `pipeline plugin test` on the recorded mainnet logs of the repository's `fixtures/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use alloy_primitives::U256;
use pipeline_tests::host::pipeline_binary;
use pipeline_tests::plugins::wasm_path;
use pipeline_tests::recorded::{mainnet_logs_path, mainnet_logs_text};
use serde_json::Value;

const TRANSFER_TOPIC0: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

fn mainnet_logs() -> PathBuf {
    mainnet_logs_path()
}

/// An oracle independent of the plugin and the SDK: ERC-20 transfers (3 topics) with value ≥ min.
fn expected_erc20_transfers(min_value: U256) -> usize {
    let text = mainnet_logs_text();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|log| {
            let topics = log["topics"].as_array().unwrap();
            let data = log["data"].as_str().unwrap().trim_start_matches("0x");
            topics.len() == 3
                && topics[0] == TRANSFER_TOPIC0
                && data.len() == 64
                && U256::from_str_radix(data, 16).unwrap() >= min_value
        })
        .count()
}

fn pipeline(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(pipeline_binary())
        .args(args)
        .output()
        .expect("run pipeline");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `plugin test` of `erc20-transfers` (min 1,000,000) over the recorded logs, from `events` or
/// the copy in the binary: succeeds, reads all 21,786 logs and keeps what the oracle expects.
/// Returns the output lines (kept events, then the summary).
fn erc20_over_recorded(events: Option<&Path>) -> Vec<Value> {
    let wasm = wasm_path("erc20-transfers");
    let mut args = vec!["plugin", "test", wasm.to_str().unwrap()];
    if let Some(events) = events {
        args.extend(["--events", events.to_str().unwrap()]);
    }
    args.extend(["--config", r#"{"min_value":"1000000"}"#, "--only-kept"]);
    let (code, lines, stderr) = pipeline(&args);
    assert_eq!(code, 0, "{stderr}");
    let summary = &lines.last().expect("a summary line")["summary"];
    let expected = expected_erc20_transfers(U256::from(1_000_000u64));
    assert_eq!(summary["events"], 21_786);
    assert_eq!(summary["kept"].as_u64(), Some(expected as u64), "{summary}");
    assert_eq!(lines.len() - 1, expected, "one line per kept event");
    lines
}

#[test]
fn plugin_test_runs_erc20_transfers_over_the_mainnet_fixture() {
    let lines = erc20_over_recorded(Some(&mainnet_logs()));
    let summary = &lines.last().expect("a summary line")["summary"];
    assert!(summary["fuel_used"].as_u64().unwrap() > 0);
    assert!(summary["error"].is_null());
    let first = &lines[0];
    assert_eq!(first["decision"], "keep");
    let data = &first["data"];
    for field in ["token", "from", "to"] {
        let value = data[field].as_str().unwrap();
        assert!(
            value.starts_with("0x") && value.len() == 42 && value == value.to_lowercase(),
            "{data}"
        );
    }
    assert!(
        U256::from_str_radix(data["value"].as_str().unwrap(), 10).unwrap()
            >= U256::from(1_000_000u64)
    );
}

#[test]
fn plugin_test_defaults_to_the_recorded_logs_carried_in_the_binary() {
    erc20_over_recorded(None);
}

#[test]
fn plugin_test_reports_a_rejected_config() {
    let wasm = wasm_path("erc20-transfers");
    let events = mainnet_logs();
    let (code, lines, _) = pipeline(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--config",
        r#"{"min_value":"lots"}"#,
        "--limit",
        "10",
    ]);
    assert_eq!(code, 1);
    let error = lines.last().unwrap()["summary"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("config rejected"), "{error}");
}

#[test]
fn plugin_check_names_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let wasi = dir.path().join("wasi.wasm");
    std::fs::write(&wasi, wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1))"#).unwrap()).unwrap();
    let (code, lines, _) = pipeline(&["plugin", "check", wasi.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["code"], "forbidden_import");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("wasi_snapshot_preview1.fd_write")
    );

    let wasm = wasm_path("uniswap-v3-swaps");
    let (code, lines, _) = pipeline(&["plugin", "check", wasm.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["id"].as_str().unwrap().len(), 64);
}

/// `plugin check` and `plugin test` judge a module under the `[plugin]` limits of the host's
/// configuration (`--config`, before or after the subcommand, or `PIPELINE_CONFIG`), not the
/// defaults: a module over the file's size limit is refused, a call over its fuel fails.
#[test]
fn plugin_check_and_test_honour_the_configured_plugin_limits() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.toml");
    std::fs::write(&small, "[plugin]\nmax_module_bytes = 1000\n").unwrap();
    let small = small.to_str().unwrap();
    let wasm = wasm_path("erc20-transfers");
    let wasm = wasm.to_str().unwrap();
    for args in [
        vec!["--config", small, "plugin", "check", wasm],
        vec!["plugin", "check", wasm, "--config", small],
    ] {
        let (code, lines, _) = pipeline_with_env(&args, &[]);
        let report: Value = serde_json::from_str(lines.trim()).unwrap();
        assert_eq!(code, 1, "{args:?}: {report}");
        assert_eq!(report["code"], "too_large", "{report}");
    }
    let (code, lines, _) =
        pipeline_with_env(&["plugin", "check", wasm], &[("PIPELINE_CONFIG", small)]);
    assert_eq!(code, 1, "{lines}");
    let (code, _, _) = pipeline_with_env(&["plugin", "check", wasm], &[]);
    assert_eq!(code, 0, "the default limits admit the module");

    let starved = dir.path().join("starved.toml");
    std::fs::write(&starved, "[plugin]\nfuel_base = 1\nfuel_per_event = 1\n").unwrap();
    let events = mainnet_logs();
    let (code, stdout, stderr) = pipeline_with_env(
        &[
            "--config",
            starved.to_str().unwrap(),
            "plugin",
            "test",
            wasm,
            "--events",
            events.to_str().unwrap(),
            "--config",
            r#"{"min_value":"0"}"#,
            "--limit",
            "10",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let error = summary["summary"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("fuel"), "{summary}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[plugin]\nfuel_base = \"lots\"\n").unwrap();
    let (code, _, stderr) = pipeline_with_env(
        &["plugin", "check", wasm, "--config", bad.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2, "an invalid configuration: {stderr}");
    assert!(stderr.contains("plugin.fuel_base"), "{stderr}");
}

/// Runs `pipeline ARGS` with `env` and none of the host's variables inherited from the test
/// environment; returns (exit code, stdout, stderr).
fn pipeline_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(pipeline_binary());
    cmd.args(args);
    for (var, _) in std::env::vars() {
        if var.starts_with("PIPELINE_") || var == "DATABASE_URL" || var.ends_with("_WSS") {
            cmd.env_remove(var);
        }
    }
    let out = cmd
        .envs(env.iter().copied())
        .output()
        .expect("run pipeline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each bad file makes `pipeline --config FILE` (serve) exit with status 2 before anything
/// starts, with a message naming the setting; `config check` says the same.
#[test]
fn an_invalid_configuration_exits_with_status_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[delivery]\nworkers = 0\n", "delivery.workers"),
        ("[delivery]\nworkerz = 4\n", "delivery.workerz"),
        ("[batch]\nmax_events = \"many\"\n", "batch.max_events"),
        ("[retention]\ndead = \"forever\"\n", "retention.dead"),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (
            "[[chains]]\nname = \"x\"\nchain_id = 1\nws_urls = [\"https://node.example/KEY\"]\n",
            "ws_urls",
        ),
    ];
    for (i, (text, setting)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        for args in [
            vec!["--config", path],
            vec!["config", "check", "--config", path],
        ] {
            let (code, stdout, stderr) = pipeline_with_env(&args, &[]);
            assert_eq!(code, 2, "{args:?} on {text:?}: {stdout}{stderr}");
            assert!(stderr.contains(setting), "{setting} not named: {stderr}");
            assert!(!stderr.contains("KEY"), "node URL secret in: {stderr}");
        }
    }
    let missing = dir.path().join("missing.toml");
    let (code, _, stderr) = pipeline_with_env(&["--config", missing.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) =
        pipeline_with_env(&["config", "check"], &[("PIPELINE_DELIVERY_WORKERS", "0")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("PIPELINE_DELIVERY_WORKERS"), "{stderr}");
}

/// A bad `PIPELINE_SECRET_KEY` (or `secret_key`) stops `serve` and `config check` with status 2,
/// naming the setting and never quoting the key; `config check` redacts a good one.
#[test]
fn a_bad_secret_key_exits_with_status_2_without_quoting_it() {
    let good = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let short = "c2hvcnRTRUNSRVRrZXk=";
    for args in [vec!["serve"], vec!["config", "check"]] {
        let value = format!("{good},{short}");
        let (code, stdout, stderr) = pipeline_with_env(&args, &[("PIPELINE_SECRET_KEY", &value)]);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("PIPELINE_SECRET_KEY"), "{stderr}");
        assert!(
            !stderr.contains(short) && !stderr.contains(good),
            "{stderr}"
        );
    }
    let (code, stdout, stderr) =
        pipeline_with_env(&["config", "check"], &[("PIPELINE_SECRET_KEY", good)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(good), "{stdout}");
}

/// `config check` prints what `serve` would run with — file and environment merged — with the
/// admin token, the database password and node URL keys replaced, in TOML that loads again and
/// in JSON.
#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        "admin_token = \"tok-ADMINSECRET\"\n[batch]\nmax_events = 42\nmax_wait_ms = 7\n\
         [[chains]]\nname = \"main\"\nchain_id = 1\nws_urls = [\"wss://node.example/v3/NODEKEY1\", \"wss://bob:NODEPW2@b.example\"]\n",
    )
    .unwrap();
    let env = [
        (
            "DATABASE_URL",
            "postgres://app:DBPASSWORD@db.example:5432/pipeline?sslmode=require",
        ),
        ("PIPELINE_DELIVERY_WORKERS", "12"),
    ];
    let secrets = ["tok-ADMINSECRET", "NODEKEY1", "NODEPW2", "DBPASSWORD"];
    let file_arg = file.to_str().unwrap();
    let (code, json, stderr) = pipeline_with_env(
        &["config", "check", "--config", file_arg, "--format", "json"],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, toml, stderr) = pipeline_with_env(&["config", "check", "--config", file_arg], &env);
    assert_eq!(code, 0, "{stderr}");
    for secret in secrets {
        assert!(!json.contains(secret), "{secret} in:\n{json}");
        assert!(!toml.contains(secret), "{secret} in:\n{toml}");
    }
    let value: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["batch"]["max_events"], 42, "from the file: {json}");
    assert_eq!(
        value["delivery"]["workers"], 12,
        "from the environment: {json}"
    );
    assert_eq!(
        value["database_url"],
        "postgres://app:REDACTED@db.example:5432/pipeline?sslmode=require"
    );
    assert_eq!(value["chains"][0]["ws_urls"][0], "wss://node.example/…");
    assert_eq!(value["admin_token"], "[redacted]");

    // The TOML is a loadable config file: checking it again gives the same JSON.
    let printed = dir.path().join("effective.toml");
    std::fs::write(&printed, &toml).unwrap();
    let (code, again, stderr) = pipeline_with_env(
        &[
            "config",
            "check",
            "--config",
            printed.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}\n{toml}");
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), value);
}
