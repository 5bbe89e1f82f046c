//! `pipeline dev`: everything a newcomer needs to watch the product work, in one process — a replay
//! node serving recorded mainnet blocks over WebSocket (so the host's real ingest path runs), the
//! host on embedded SQLite, the example plugins uploaded, and a subscription with `erc20-transfers`
//! delivering to a local receiver that verifies every signature and prints the webhooks.

pub mod listen;
mod plugins;
pub mod scaffold;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ChainConfig, Config};
use crate::devnode::{self, Chain, ChainSpec, DevNode, LogSource};
use crate::{app, devnode::chain::TRANSFER_TOPIC0};

/// The replayed chain's id: the logs are mainnet's.
const DEV_CHAIN_ID: u64 = 1;
/// How long the host gets to answer its first health check.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `pipeline dev` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    /// Admin API port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub admin_port: u16,
    /// Events per second the replay node publishes.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 1000)]
    pub block_ms: u64,
    /// Keep the database and token here (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// erc20-transfers' `min_value`: smallest transfer delivered (token base units).
    #[arg(long, default_value = "1000000000000000000")]
    pub min_value: String,
}

/// Runs the node, the receiver and the host until `shutdown`.
pub async fn run(options: DevOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data_dir = match &options.data_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("pipeline-dev-{}", std::process::id())),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let node_url = start_node(&options, shutdown.clone()).await?;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>())
    );
    let hook_url = start_receiver(&secret, shutdown.clone()).await?;
    let token = format!("dev_{}", hex::encode(rand::random::<[u8; 12]>()));
    let config = dev_config(&options, &data_dir, &node_url, &token)?;
    let app = app::build(config).await?;
    let admin = format!("http://{}", app.admin_addr()?);
    let metrics = format!("http://{}/metrics", app.metrics_addr()?);
    let host = tokio::spawn(app::run(app, shutdown.clone()));
    let client = Admin::new(&admin, &token)?;
    client.wait_healthy().await?;
    let subscription = set_up(&client, &hook_url, &secret, &options.min_value).await?;
    print_banner(
        &admin,
        &metrics,
        &token,
        &node_url,
        &data_dir,
        &subscription,
    );
    let result = host.await.context("the host task");
    if options.data_dir.is_none() {
        // The temporary directory was ours: a later `pipeline dev` starts fresh anyway.
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result?
}

async fn start_node(options: &DevOptions, shutdown: CancellationToken) -> anyhow::Result<String> {
    let spec = ChainSpec::paced(
        DEV_CHAIN_ID,
        LogSource::Recorded,
        0,
        options.rate,
        options.block_ms,
        rand::random(),
    )?;
    let node = DevNode::new(Chain::starting_now(spec)?);
    let (listener, url) = devnode::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    tokio::spawn(node.clone().serve(listener, shutdown.clone()));
    let interval = Duration::from_millis(options.block_ms);
    tokio::spawn(async move { node.run_chain(interval, None, shutdown, |_| {}).await });
    Ok(url)
}

async fn start_receiver(secret: &str, shutdown: CancellationToken) -> anyhow::Result<String> {
    let router = listen::receiver(listen::ListenOptions {
        secrets: vec![secret.to_string()],
        forward: None,
    })?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = listen::serve(listener, router, shutdown).await {
            tracing::error!(%error, "dev receiver stopped");
        }
    });
    Ok(url)
}

fn dev_config(
    options: &DevOptions,
    data_dir: &std::path::Path,
    node_url: &str,
    token: &str,
) -> anyhow::Result<Config> {
    let mut config = Config {
        database_url: format!("sqlite://{}/pipeline.db", data_dir.display()),
        data_dir: data_dir.to_path_buf(),
        admin_addr: SocketAddr::from(([127, 0, 0, 1], options.admin_port)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: Some(token.to_string()),
        chains: vec![ChainConfig {
            name: "mainnet-replay".into(),
            chain_id: DEV_CHAIN_ID,
            ws_urls: vec![node_url.to_string()],
            confirmations: 0,
            start_block: None,
            stale_after_ms: None,
        }],
        ..Config::default()
    };
    config.delivery.allowed_cidrs = vec!["127.0.0.0/8".parse()?];
    config.validate()?;
    Ok(config)
}

/// Uploads the example plugins, creates the endpoint and the subscription; returns the
/// subscription's id.
async fn set_up(
    client: &Admin,
    hook_url: &str,
    secret: &str,
    min_value: &str,
) -> anyhow::Result<String> {
    let mut erc20 = None;
    for (name, wasm) in plugins::example_plugins()? {
        let uploaded = client
            .post_bytes(&format!("/v1/plugins?name={name}"), wasm)
            .await?;
        println!(
            "uploaded plugin {name}: {}",
            uploaded["id"].as_str().unwrap_or("?")
        );
        if name == "erc20-transfers" {
            erc20 = uploaded["id"].as_str().map(str::to_string);
        }
    }
    let endpoint = client
        .post_json(
            "/v1/endpoints",
            json!({"url": hook_url, "secret": secret, "description": "pipeline dev receiver"}),
        )
        .await?;
    let mut subscription = json!({
        "endpoint_id": endpoint["id"], "chain_id": DEV_CHAIN_ID, "topics": [[TRANSFER_TOPIC0]],
    });
    match erc20 {
        Some(plugin) => {
            subscription["plugin_id"] = json!(plugin);
            subscription["plugin_config"] = json!({"min_value": min_value});
        }
        None => println!(
            "erc20-transfers was not found: subscribing to every Transfer log without a plugin"
        ),
    }
    let created = client.post_json("/v1/subscriptions", subscription).await?;
    created["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the subscription was not created: {created}"))
}

fn print_banner(
    admin: &str,
    metrics: &str,
    token: &str,
    node: &str,
    data: &std::path::Path,
    sub: &str,
) {
    println!(
        r#"
pipeline dev is running: recorded mainnet blocks replayed by {node}, the host on SQLite in {data},
subscription {sub} (erc20-transfers) delivering to a local receiver that verifies every signature.

  admin API  {admin}    token  {token}
  metrics    {metrics}

Next, in another terminal:
  export TOKEN={token} API={admin}
  curl -sS -H "Authorization: Bearer $TOKEN" $API/v1/subscriptions/{sub}
  curl -sS -H "Authorization: Bearer $TOKEN" "$API/v1/deliveries?subscription_id={sub}"
  curl -sS -H "Authorization: Bearer $TOKEN" $API/v1/plugins
  curl -sS {metrics} | grep ^pipeline_

Verified webhooks follow (Ctrl-C stops everything):"#,
        data = data.display()
    );
}

/// A small admin API client for the set-up calls.
struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    fn new(base: &str, token: &str) -> anyhow::Result<Admin> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Admin {
            base: base.into(),
            token: token.into(),
            http,
        })
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let answer = self.http.get(format!("{}/healthz", self.base)).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "the host did not answer {}/healthz within {STARTUP_TIMEOUT:?}",
            self.base
        )
    }

    async fn post_json(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let request = self.http.post(format!("{}{path}", self.base));
        let request = request
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(request, path).await
    }

    async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).body(body),
            path,
        )
        .await
    }

    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let response = request.bearer_auth(&self.token).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {path} answered {status}: {body}");
        Ok(body)
    }
}
