//! A real anvil node on a free port, with helpers to deploy the test ERC-20 and send transfers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, sol};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{free_port, lower, tools_dir, wait_until};

sol! {
    function transfer(address to, uint256 value) external returns (bool);
    function balanceOf(address owner) external view returns (uint256);
}

/// Where anvil is: `$PIPELINE_ANVIL`, or where `scripts/test.sh` installs it.
pub fn anvil_binary() -> PathBuf {
    let path = match std::env::var_os("PIPELINE_ANVIL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => tools_dir().join("npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
    };
    if !path.is_file() {
        panic!(
            "anvil not found at {}: run scripts/test.sh (it installs anvil into .tools/) or set PIPELINE_ANVIL",
            path.display()
        );
    }
    path
}

/// The TestToken creation bytecode (hex): `$PIPELINE_TEST_TOKEN_BIN` or `.tools/contracts/TestToken.bin`.
pub fn token_bytecode() -> String {
    let path = match std::env::var_os("PIPELINE_TEST_TOKEN_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => tools_dir().join("contracts/TestToken.bin"),
    };
    let hex = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the TestToken bytecode at {} ({e}): run scripts/test.sh (it compiles \
             tests/contracts/TestToken.sol) or set PIPELINE_TEST_TOKEN_BIN",
            path.display()
        )
    });
    let hex = hex.trim().trim_start_matches("0x").to_string();
    assert!(
        !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{} does not hold hex bytecode",
        path.display()
    );
    format!("0x{hex}")
}

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    port: u16,
    dir: TempDir,
    http: reqwest::Client,
    accounts: Vec<String>,
}

impl Anvil {
    /// Starts anvil (chain id 31337, automine) on a free port and waits until JSON-RPC answers.
    pub async fn start() -> Anvil {
        Anvil::start_with_args(&[]).await
    }

    /// As `start`, with extra anvil arguments (`--prune-history` for a long chain: anvil otherwise
    /// writes old states to ~/.foundry/anvil/tmp, gigabytes for 20,000 blocks, and a killed anvil
    /// leaves them there).
    pub async fn start_with_args(extra: &[&str]) -> Anvil {
        let bin = anvil_binary();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("build reqwest client");
        let mut last_error = String::new();
        for attempt in 1..=3 {
            let dir = tempfile::Builder::new()
                .prefix("pipeline-anvil-")
                .tempdir()
                .expect("create temp dir");
            let port = free_port();
            let log =
                std::fs::File::create(dir.path().join("anvil.log")).expect("create anvil.log");
            let child = Command::new(&bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--chain-id",
                    "31337",
                ])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start anvil {}: {e}", bin.display()));
            let mut anvil = Anvil {
                child,
                port,
                dir,
                http: http.clone(),
                accounts: Vec::new(),
            };
            match anvil.wait_ready(Duration::from_secs(30)).await {
                Ok(()) => {
                    let accounts = anvil.rpc("eth_accounts", json!([])).await;
                    anvil.accounts = accounts
                        .as_array()
                        .expect("eth_accounts returns an array")
                        .iter()
                        .map(|a| lower(a.as_str().expect("account is a string")))
                        .collect();
                    assert!(!anvil.accounts.is_empty(), "anvil has no unlocked accounts");
                    return anvil;
                }
                // Dropping `anvil` kills the process; try again on another port.
                Err(e) => {
                    last_error = format!(
                        "attempt {attempt} on port {port}: {e}\n--- anvil.log ---\n{}",
                        anvil.log()
                    )
                }
            }
        }
        panic!("anvil did not start: {last_error}");
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("anvil exited early with {status}"));
            }
            if let Ok(v) = self.try_rpc("eth_chainId", json!([])).await {
                return if v == json!("0x7a69") {
                    Ok(())
                } else {
                    Err(format!("unexpected chain id {v}"))
                };
            }
            if start.elapsed() > timeout {
                return Err(format!("JSON-RPC did not answer within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// anvil's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("anvil.log")).unwrap_or_default()
    }

    /// Unlocked dev account `i` (lowercase hex).
    pub fn account(&self, i: usize) -> String {
        self.accounts
            .get(i)
            .cloned()
            .unwrap_or_else(|| panic!("anvil has no account {i}"))
    }

    /// A JSON-RPC call; `Err` carries a transport or JSON-RPC error.
    pub async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = self
            .http
            .post(self.http_url())
            .json(&req)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if let Some(err) = body.get("error") {
            return Err(format!("{method} failed: {err}"));
        }
        body.get("result")
            .cloned()
            .ok_or_else(|| format!("{method}: no result in {body}"))
    }

    /// A JSON-RPC call that must succeed.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params.clone())
            .await
            .unwrap_or_else(|e| panic!("anvil JSON-RPC {method}({params}) failed: {e}"))
    }

    pub async fn block_number(&self) -> u64 {
        crate::parse_quantity(
            self.rpc("eth_blockNumber", json!([]))
                .await
                .as_str()
                .expect("quantity"),
        )
    }

    /// Mines one (empty) block.
    pub async fn mine(&self) {
        self.rpc("evm_mine", json!([])).await;
    }

    /// Sends a transaction from account 0 and waits for a successful receipt.
    pub async fn send(&self, to: Option<&str>, data: &str) -> Value {
        let mut tx = json!({"from": self.account(0), "data": data});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx])).await;
        let hash = hash.as_str().expect("tx hash is a string").to_string();
        let receipt = self.wait_receipt(&hash).await;
        assert_eq!(
            receipt["status"],
            json!("0x1"),
            "transaction {hash} reverted: {receipt}"
        );
        receipt
    }

    pub async fn wait_receipt(&self, hash: &str) -> Value {
        wait_until(
            &format!("the receipt of {hash}"),
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async move {
                match self
                    .try_rpc("eth_getTransactionReceipt", json!([hash]))
                    .await
                {
                    Ok(Value::Null) => Err("no receipt yet".to_string()),
                    Ok(r) => Ok(r),
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    /// Deploys TestToken from account 0 (which gets the whole supply); returns its address (lowercase).
    pub async fn deploy_token(&self) -> String {
        let receipt = self.send(None, &token_bytecode()).await;
        let address = receipt["contractAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("deployment receipt has no contractAddress: {receipt}"));
        lower(address)
    }

    /// `token.transfer(to, amount)` from account 0; returns the receipt.
    pub async fn transfer(&self, token: &str, to: &str, amount: u128) -> Value {
        let call = transferCall {
            to: parse_address(to),
            value: U256::from(amount),
        };
        let data = format!("0x{}", hex::encode(call.abi_encode()));
        self.send(Some(token), &data).await
    }

    pub async fn balance_of(&self, token: &str, owner: &str) -> U256 {
        let call = balanceOfCall {
            owner: parse_address(owner),
        };
        let data = format!("0x{}", hex::encode(call.abi_encode()));
        let out = self
            .rpc("eth_call", json!([{"to": token, "data": data}, "latest"]))
            .await;
        let bytes = hex::decode(
            out.as_str()
                .expect("eth_call result")
                .trim_start_matches("0x"),
        )
        .expect("hex");
        U256::from_be_slice(&bytes)
    }

    /// All logs of `address` from block 0 to latest.
    pub async fn logs(&self, address: &str) -> Vec<Value> {
        let filter = json!({"address": address, "fromBlock": "0x0", "toBlock": "latest"});
        let logs = self.rpc("eth_getLogs", json!([filter])).await;
        logs.as_array()
            .expect("eth_getLogs returns an array")
            .clone()
    }
}

pub fn parse_address(s: &str) -> Address {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not an address: {e}"))
}

/// A 32-byte topic holding `address` (lowercase hex), as in an indexed event argument.
pub fn address_topic(address: &str) -> String {
    format!("0x{:0>64}", lower(address.trim_start_matches("0x")))
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!(
                "--- anvil log (last 60 lines, port {}) ---\n{tail}\n--- end of anvil log ---",
                self.port
            );
        }
    }
}
