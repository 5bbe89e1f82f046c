//! The `pipeline` binary: the command line (clap) and the exit status. The subcommands'
//! handlers are in `cli/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipeline_host::config::{InvalidConfig, OutputFormat};
use pipeline_host::dev::DevOptions;
use pipeline_host::devnode::NodeOptions;
use pipeline_host::plugin::compiler;

mod cli;
use cli::plugin;

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
    /// Validate a module as the upload endpoint would, under the `[plugin]` limits of the
    /// configuration (`--config`, `PIPELINE_CONFIG`); prints a JSON report.
    Check {
        file: PathBuf,
        #[arg(long, env = "PIPELINE_CONFIG")]
        config: Option<PathBuf>,
    },
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
    /// Run a module on sample events under the `[plugin]` limits of the host's configuration
    /// (`pipeline --config FILE plugin test …` or `PIPELINE_CONFIG`): one JSON line per event,
    /// then a summary.
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
    /// The host's compiler child (`plugin/compiler.rs`): a module on stdin, its compiled code on
    /// stdout. Not for people.
    #[command(hide = true)]
    CompileChild {
        #[arg(long)]
        stack_bytes: usize,
        #[arg(long)]
        max_module_bytes: usize,
        #[arg(long)]
        cpu_seconds: u64,
        #[arg(long)]
        unmetered: bool,
    },
}

fn main() -> ExitCode {
    // The allocator is jemalloc, configured by `malloc.rs` (read by jemalloc itself at start).
    let cli = Cli::parse();
    // The host compiles uploaded plugins by running this executable again (`plugin/compiler.rs`).
    compiler::use_child_process();
    let result = match cli.command {
        None => cli::serve(cli.config),
        Some(Command::Serve { config }) => cli::serve(config.or(cli.config)),
        Some(Command::Migrate { config }) => cli::migrate(config.or(cli.config)),
        Some(Command::Config(ConfigCommand::Check { config, format })) => {
            cli::config_check(config.or(cli.config), format)
        }
        Some(Command::Plugin(PluginCommand::Check { file, config })) => {
            plugin::check(&file, config.or(cli.config))
        }
        Some(Command::Plugin(PluginCommand::New { name, dir, sdk })) => {
            plugin::new(&name, &dir, sdk.as_deref())
        }
        Some(Command::Plugin(PluginCommand::Test {
            file,
            events,
            config,
            batch_size,
            only_kept,
            limit,
        })) => plugin::test(
            &file,
            cli.config,
            plugin::TestOptions {
                events,
                plugin_config: config,
                batch_size,
                only_kept,
                limit,
            },
        ),
        Some(Command::Plugin(PluginCommand::CompileChild {
            stack_bytes,
            max_module_bytes,
            cpu_seconds,
            unmetered,
        })) => Ok(ExitCode::from(compiler::run_child(compiler::ChildArgs {
            stack_bytes,
            metered: !unmetered,
            max_module_bytes,
            cpu_seconds,
        }))),
        Some(Command::Dev(options)) => cli::dev(options),
        Some(Command::DevNode(options)) => cli::dev_node(options),
        Some(Command::Listen {
            port,
            secret,
            forward,
        }) => cli::listen(port, secret, forward),
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
