//! The common set-up of the scenarios: anvil with TestToken deployed, a host on a fresh store
//! following the anvil chain from the block after the deployment, and a webhook receiver.

use serde_json::{Value, json};

use crate::TRANSFER_TOPIC0;
use crate::admin::Admin;
use crate::anvil::Anvil;
use crate::host::{DbKind, Host, HostOptions};
use crate::receiver::Receiver;

pub struct Fixture {
    // Fields drop in this order: the host goes first, then the chain, then the receiver.
    pub host: Host,
    pub anvil: Anvil,
    /// TestToken's address (lowercase); account 0 holds the supply.
    pub token: String,
    pub receiver: Receiver,
}

impl Fixture {
    pub async fn start(db: DbKind) -> Fixture {
        Self::start_with_env(db, Vec::new()).await
    }

    /// As `start`, with extra host environment.
    pub async fn start_with_env(db: DbKind, env: Vec<(String, String)>) -> Fixture {
        Self::start_with_anvil(db, env, Anvil::start().await).await
    }

    /// As `start_with_env`, on a given anvil.
    pub async fn start_with_anvil(db: DbKind, env: Vec<(String, String)>, anvil: Anvil) -> Fixture {
        Self::start_with(db, env, String::new(), anvil).await
    }

    /// As `start`, with TOML appended to the host's config (settings without a variable, e.g.
    /// `"[delivery]\nlease_ms = 5000\n"`).
    pub async fn start_with_config(db: DbKind, config_extra: &str) -> Fixture {
        Self::start_with(
            db,
            Vec::new(),
            config_extra.to_string(),
            Anvil::start().await,
        )
        .await
    }

    async fn start_with(
        db: DbKind,
        env: Vec<(String, String)>,
        config_extra: String,
        anvil: Anvil,
    ) -> Fixture {
        let token = anvil.deploy_token().await;
        // The host follows the chain from the first block after the deployment, whenever its
        // ingestion connects; so nothing sent after this point can be missed, and the mint is not seen.
        let start_block = anvil.block_number().await + 1;
        let receiver = Receiver::start().await;
        let host = Host::start(HostOptions {
            start_block: Some(start_block),
            env,
            config_extra,
            ..HostOptions::new(db, &anvil.ws_url())
        })
        .await;
        Fixture {
            host,
            anvil,
            token,
            receiver,
        }
    }

    pub fn admin(&self) -> &Admin {
        self.host.admin()
    }

    /// An endpoint pointing at `receiver`: `(id, secret)`.
    pub async fn endpoint_for(&self, receiver: &Receiver) -> (String, String) {
        self.admin().create_endpoint(&receiver.url()).await
    }

    /// A subscription to TestToken's Transfer events through `plugin_id` with `config`.
    pub async fn subscribe_transfers(
        &self,
        endpoint_id: &str,
        plugin_id: &str,
        config: Value,
    ) -> String {
        self.admin()
            .create_subscription(transfer_subscription(
                endpoint_id,
                &self.token,
                plugin_id,
                config,
            ))
            .await
    }
}

/// The body of `POST /v1/subscriptions` for `token`'s Transfer events.
pub fn transfer_subscription(
    endpoint_id: &str,
    token: &str,
    plugin_id: &str,
    config: Value,
) -> Value {
    json!({
        "endpoint_id": endpoint_id,
        "chain_id": 31337,
        "addresses": [token],
        "topics": [[TRANSFER_TOPIC0]],
        "plugin_id": plugin_id,
        "plugin_config": config,
    })
}

impl Fixture {
    /// Waits until exactly `n` webhooks reached the fixture's receiver, checks each as a Transfer
    /// webhook of `sub_id` to `to` against the chain's own logs, and returns them with their
    /// values, sorted.
    pub async fn transfer_webhooks(
        &self,
        n: usize,
        sub_id: &str,
        to: &str,
    ) -> (Vec<crate::receiver::Received>, Vec<u128>) {
        self.receiver
            .wait_for(n, std::time::Duration::from_secs(30))
            .await;
        let got = self
            .receiver
            .expect_exactly(n, std::time::Duration::from_secs(2))
            .await;
        let chain_logs = self.anvil.logs(&self.token).await;
        let expect = crate::checks::Expect {
            sub_id,
            token: &self.token,
            from: &self.anvil.account(0),
            to,
        };
        let values = got
            .iter()
            .map(|r| crate::checks::check_transfer_webhook(r, &expect, &chain_logs))
            .collect();
        (got, crate::checks::sorted(values))
    }
}
