//! The subcommands' handlers: `serve`, `migrate`, `config check` and the developer tools here,
//! the plugin commands in `plugin.rs`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pipeline_host::config::{Config, LogFormat, OutputFormat};
use pipeline_host::dev::{self, DevOptions};
use pipeline_host::devnode::{self, NodeOptions};
use pipeline_host::{app, store::Store};
use tokio_util::sync::CancellationToken;

pub(crate) mod plugin;
mod progress;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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

pub(crate) fn serve(config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
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

pub(crate) fn dev(options: DevOptions) -> anyhow::Result<ExitCode> {
    until_signal(|shutdown| dev::run(options, shutdown))
}

pub(crate) fn dev_node(options: NodeOptions) -> anyhow::Result<ExitCode> {
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

pub(crate) fn listen(
    port: u16,
    secrets: Vec<String>,
    forward: Option<url::Url>,
) -> anyhow::Result<ExitCode> {
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
pub(crate) fn quiet_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub(crate) fn migrate(config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
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

pub(crate) fn config_check(
    config_file: Option<PathBuf>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_file.as_deref())?;
    let text = config.render_redacted(format)?;
    writeln!(std::io::stdout().lock(), "{}", text.trim_end())?;
    eprintln!("configuration is valid");
    Ok(ExitCode::SUCCESS)
}
