//! The `pipeline` binary: CLI → config → tracing → app.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipeline_host::config::{Config, LogFormat};
use pipeline_host::event::ChainLog;
use pipeline_host::plugin::{PluginRuntime, dry_run, plugin_id};
use pipeline_host::{app, store::Store};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Ethereum-family chain events to signed webhooks, filtered by WebAssembly plugins"
)]
struct Cli {
    /// TOML config file (every value can be overridden by environment variables).
    #[arg(long, env = "PIPELINE_CONFIG", global = false)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host (the default).
    Serve {
        #[arg(long, env = "PIPELINE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "PIPELINE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Work with plugin modules locally.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a module as the upload endpoint would; prints a JSON report.
    Check { file: PathBuf },
    /// Run a module on sample events with production limits: one JSON line per event, then a summary.
    Test {
        file: PathBuf,
        /// JSON-RPC log objects, one per line.
        #[arg(long)]
        events: PathBuf,
        /// The subscription's plugin config (JSON).
        #[arg(long, default_value = "null")]
        config: String,
        /// Events per plugin call, as in the pipeline.
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Print only kept events.
        #[arg(long)]
        only_kept: bool,
        /// Read at most this many events.
        #[arg(long)]
        limit: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.config),
        Some(Command::Serve { config }) => serve(config.or(cli.config)),
        Some(Command::Migrate { config }) => migrate(config.or(cli.config)),
        Some(Command::Plugin(PluginCommand::Check { file })) => plugin_check(&file),
        Some(Command::Plugin(PluginCommand::Test {
            file,
            events,
            config,
            batch_size,
            only_kept,
            limit,
        })) => plugin_test(&file, &events, &config, batch_size, only_kept, limit),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_file.as_deref())?;
    init_tracing(config.log_format);
    runtime()?.block_on(async {
        let app = app::build(config).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        app::run(app, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C starts a graceful shutdown.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the host");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}

fn migrate(config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_file.as_deref())?;
    init_tracing(config.log_format);
    runtime()?.block_on(async {
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        store.close().await;
        anyhow::Ok(())
    })?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

fn plugin_check(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = PluginRuntime::new(Config::load(None)?.plugin)?;
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

fn plugin_test(
    file: &Path,
    events: &Path,
    config: &str,
    batch_size: usize,
    only_kept: bool,
    limit: Option<usize>,
) -> anyhow::Result<ExitCode> {
    serde_json::from_str::<serde_json::Value>(config).context("--config is not valid JSON")?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = std::fs::read_to_string(events)
        .with_context(|| format!("cannot read {}", events.display()))?;
    let mut logs = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if limit.is_some_and(|n| logs.len() >= n) {
            break;
        }
        logs.push(
            ChainLog::from_json(line)
                .with_context(|| format!("{}:{}", events.display(), number + 1))?,
        );
    }
    let runtime = PluginRuntime::new(Config::load(None)?.plugin)?;
    let plugin = runtime
        .compile(&bytes)
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
    let report = dry_run::dry_run(&runtime, plugin, config, &logs, batch_size);
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
    Ok(if report.error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
