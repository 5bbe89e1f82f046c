//! The `pipeline` binary: CLI → config → tracing → app.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipeline_host::config::{Config, InvalidConfig, LogFormat, OutputFormat};
use pipeline_host::dev::{self, DevOptions};
use pipeline_host::devnode::{self, NodeOptions};
use pipeline_host::event::ChainLog;
use pipeline_host::fixtures::{self, read_events_file};
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
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Watch the product work: a replay node of recorded mainnet blocks, the host on SQLite, the
    /// example plugins and a subscription delivering to a local verifying receiver, all in one.
    Dev(DevOptions),
    /// A local JSON-RPC node that replays recorded mainnet logs over WebSocket (`newHeads`,
    /// `eth_getLogs`, …) at a chosen rate: for experiments and load tests.
    DevNode(NodeOptions),
    /// A local webhook receiver: verifies Standard Webhooks signatures, prints each event, answers
    /// 2xx (401 with the reason when a signature fails), optionally forwards what it verified.
    Listen {
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// The endpoint's secret (repeat during a rotation).
        #[arg(long, env = "PIPELINE_LISTEN_SECRET", required = true)]
        secret: Vec<String>,
        /// Re-POST each verified webhook here.
        #[arg(long)]
        forward: Option<url::Url>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration (file, then environment) as `serve` would, and print
    /// the effective configuration with secrets redacted. Exit status 2 when it is invalid.
    Check {
        #[arg(long, env = "PIPELINE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Toml)]
        format: OutputFormat,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a module as the upload endpoint would; prints a JSON report.
    Check { file: PathBuf },
    /// Scaffold a plugin crate in ./NAME (typed config, a `sol!` event, native tests on recorded
    /// logs) that builds and passes `pipeline plugin test` as generated.
    New {
        name: String,
        /// Folder to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Pipeline's guest-sdk/ (found from the current folder or this binary when omitted).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run a module on sample events with production limits: one JSON line per event, then a summary.
    Test {
        file: PathBuf,
        /// JSON-RPC log objects, one per line (`.zst` files are unpacked); default: the recorded
        /// mainnet logs carried in the binary (fixtures/mainnet-logs.jsonl.zst).
        #[arg(long)]
        events: Option<PathBuf>,
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
        Some(Command::Config(ConfigCommand::Check { config, format })) => {
            config_check(config.or(cli.config), format)
        }
        Some(Command::Plugin(PluginCommand::Check { file })) => plugin_check(&file),
        Some(Command::Plugin(PluginCommand::New { name, dir, sdk })) => {
            plugin_new(&name, &dir, sdk.as_deref())
        }
        Some(Command::Plugin(PluginCommand::Test {
            file,
            events,
            config,
            batch_size,
            only_kept,
            limit,
        })) => plugin_test(
            &file,
            events.as_deref(),
            &config,
            batch_size,
            only_kept,
            limit,
        ),
        Some(Command::Dev(options)) => dev(options),
        Some(Command::DevNode(options)) => dev_node(options),
        Some(Command::Listen {
            port,
            secret,
            forward,
        }) => listen(port, secret, forward),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            // 2, like a usage error: the operator's input is wrong, not the host or its environment.
            if error.downcast_ref::<InvalidConfig>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
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

fn dev(options: DevOptions) -> anyhow::Result<ExitCode> {
    until_signal(|shutdown| dev::run(options, shutdown))
}

fn dev_node(options: NodeOptions) -> anyhow::Result<ExitCode> {
    until_signal(|shutdown| devnode::run_standalone(options, shutdown))
}

/// Runs a developer tool with quiet logging until it ends or SIGTERM/Ctrl-C cancels it.
fn until_signal<F>(work: impl FnOnce(CancellationToken) -> F) -> anyhow::Result<ExitCode>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    quiet_tracing();
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        work(shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn listen(port: u16, secrets: Vec<String>, forward: Option<url::Url>) -> anyhow::Result<ExitCode> {
    let router = dev::listen::receiver(dev::listen::ListenOptions { secrets, forward })?;
    until_signal(|shutdown| async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        println!(
            "listening on http://127.0.0.1:{port}/ (any path); verified webhooks are printed here"
        );
        dev::listen::serve(listener, router, shutdown).await
    })
}

/// Developer commands print their own output on stdout; only warnings go to stderr.
fn quiet_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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

fn config_check(config_file: Option<PathBuf>, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_file.as_deref())?;
    let text = config.render_redacted(format)?;
    writeln!(std::io::stdout().lock(), "{}", text.trim_end())?;
    eprintln!("configuration is valid");
    Ok(ExitCode::SUCCESS)
}

fn plugin_new(name: &str, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<ExitCode> {
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
    events: Option<&Path>,
    config: &str,
    batch_size: usize,
    only_kept: bool,
    limit: Option<usize>,
) -> anyhow::Result<ExitCode> {
    serde_json::from_str::<serde_json::Value>(config).context("--config is not valid JSON")?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
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
    let runtime = PluginRuntime::new(Config::load(None)?.plugin)?;
    let plugin = runtime
        .compile(&bytes)
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
    let mut progress = Progress::new("plugin test", "events");
    let report = dry_run::dry_run_with_progress(
        &runtime,
        plugin,
        config,
        &logs,
        batch_size,
        &mut |done, total| progress.update(done, total),
    );
    progress.finish();
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

/// Progress of long work on stderr: a bar on a terminal, a line every few seconds otherwise (logs
/// and CI), so stdout stays clean JSON.
struct Progress {
    what: &'static str,
    unit: &'static str,
    terminal: bool,
    started: std::time::Instant,
    shown_at: Option<std::time::Instant>,
    drew_bar: bool,
}

impl Progress {
    fn new(what: &'static str, unit: &'static str) -> Progress {
        use std::io::IsTerminal;
        Progress {
            what,
            unit,
            terminal: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            shown_at: None,
            drew_bar: false,
        }
    }

    fn update(&mut self, done: usize, total: usize) {
        let every = if self.terminal {
            std::time::Duration::from_millis(100)
        } else {
            std::time::Duration::from_secs(2)
        };
        let due = self
            .shown_at
            .map_or(self.started.elapsed() >= every, |at| at.elapsed() >= every);
        if !due || total == 0 {
            return;
        }
        self.shown_at = Some(std::time::Instant::now());
        let percent = done * 100 / total;
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let filled = percent / 4;
            let bar = format!("{}{}", "#".repeat(filled), " ".repeat(25 - filled.min(25)));
            let _ = write!(
                err,
                "\r{} [{bar}] {done}/{total} {} ({percent}%)",
                self.what, self.unit
            );
            self.drew_bar = true;
        } else {
            let seconds = self.started.elapsed().as_secs_f64();
            let _ = writeln!(
                err,
                "{}: {done}/{total} {} ({percent}%) after {seconds:.1} s",
                self.what, self.unit
            );
        }
    }

    fn finish(&mut self) {
        if self.drew_bar {
            let _ = writeln!(std::io::stderr());
        }
    }
}
