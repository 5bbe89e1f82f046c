//! `pipeline plugin new|check|test`: the plugin developer's commands. `check` and `test` run
//! under the `[plugin]` limits of the host's configuration (the file given with `--config` or
//! `PIPELINE_CONFIG`, then the environment), so a module is judged as the host that will run it
//! would judge it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pipeline_host::config::Config;
use pipeline_host::dev;
use pipeline_host::event::ChainLog;
use pipeline_host::fixtures::{self, read_events_file};
use pipeline_host::plugin::{PluginRuntime, dry_run, plugin_id};

use super::progress::Progress;

/// `plugin test`'s options beside the module and the host configuration.
pub(crate) struct TestOptions {
    pub events: Option<PathBuf>,
    /// The subscription's plugin config (JSON).
    pub plugin_config: String,
    pub batch_size: usize,
    pub only_kept: bool,
    pub limit: Option<usize>,
}

pub(crate) fn new(name: &str, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<ExitCode> {
    let root = dev::scaffold::new_plugin(name, dir, sdk)?;
    let wasm = format!(
        "target/wasm32-unknown-unknown/release/{}.wasm",
        name.replace('-', "_")
    );
    println!("created {}", root.display());
    println!(
        "next:\n  cd {}\n  cargo test\n  cargo build --release --target wasm32-unknown-unknown",
        root.display()
    );
    println!("  pipeline plugin test {wasm} --config '{{\"min_value\": 0}}' --only-kept");
    Ok(ExitCode::SUCCESS)
}

/// The sandbox with the configuration's `[plugin]` limits; an invalid configuration exits 2.
fn runtime(host_config: Option<&Path>) -> anyhow::Result<PluginRuntime> {
    let limits = Config::load(host_config)?.plugin;
    PluginRuntime::new(limits)
}

pub(crate) fn check(file: &Path, host_config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = runtime(host_config.as_deref())?;
    let report = match runtime.compile(&bytes) {
        Ok(_) => serde_json::json!({"ok": true, "id": plugin_id(&bytes), "size": bytes.len()}),
        Err(error) => {
            serde_json::json!({"ok": false, "code": error.code(), "message": error.to_string()})
        }
    };
    println!("{report}");
    Ok(if report["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn test(
    file: &Path,
    host_config: Option<PathBuf>,
    options: TestOptions,
) -> anyhow::Result<ExitCode> {
    let config = options.plugin_config.as_str();
    serde_json::from_str::<serde_json::Value>(config).context("--config is not valid JSON")?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let logs = read_logs(options.events.as_deref(), options.limit)?;
    let runtime = runtime(host_config.as_deref())?;
    let plugin = runtime
        .compile(&bytes)
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
    let mut progress = Progress::new("plugin test", "events");
    let report = dry_run::dry_run_with_progress(
        &runtime,
        plugin,
        config,
        &logs,
        options.batch_size,
        &mut |done, total| progress.update(done, total),
    );
    progress.finish();
    print_report(&report, &logs, options.only_kept)?;
    Ok(if report.error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The events file's logs (or the recorded mainnet logs), at most `limit`.
fn read_logs(events: Option<&Path>, limit: Option<usize>) -> anyhow::Result<Vec<ChainLog>> {
    let (text, source) = match events {
        Some(path) => (read_events_file(path)?, path.display().to_string()),
        None => (
            fixtures::mainnet_logs()?,
            "recorded mainnet logs".to_string(),
        ),
    };
    let mut logs = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if limit.is_some_and(|n| logs.len() >= n) {
            break;
        }
        logs.push(ChainLog::from_json(line).with_context(|| format!("{source}:{}", number + 1))?);
    }
    Ok(logs)
}

/// One JSON line per event (only kept ones with `only_kept`), then the summary line.
fn print_report(
    report: &dry_run::DryRunReport,
    logs: &[ChainLog],
    only_kept: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for result in &report.results {
        if only_kept && result.decision != "keep" {
            continue;
        }
        let log = &logs[result.index];
        let line = serde_json::json!({
            "index": result.index, "decision": result.decision, "data": result.data,
            "block": log.block_number, "log_index": log.log_index, "address": format!("{:#x}", log.address),
        });
        writeln!(out, "{line}")?;
    }
    let summary = serde_json::json!({"summary": {
        "events": report.events, "kept": report.kept, "dropped": report.dropped, "calls": report.calls,
        "fuel_used": report.fuel_used, "duration_us": report.duration_us, "logs": report.logs,
        "logs_dropped": report.logs_dropped, "error": report.error,
    }});
    writeln!(out, "{summary}")?;
    Ok(())
}
