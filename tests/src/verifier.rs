//! Standard Webhooks signatures: a Rust signer (for self-tests) and the independent Python verifier
//! (`scripts/verify_webhooks.py`, the `standardwebhooks` package from PyPI) run as a separate process.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::receiver::Received;
use crate::{tools_dir, workspace_root};

/// One webhook as the verifier wants it.
#[derive(Clone, Debug, Serialize)]
pub struct SignedWebhook {
    pub secret: String,
    pub headers: BTreeMap<String, String>,
    /// The raw body, exactly as received.
    pub body: String,
}

impl SignedWebhook {
    pub fn from_received(secret: &str, received: &Received) -> SignedWebhook {
        SignedWebhook {
            secret: secret.to_string(),
            headers: received.headers.clone(),
            body: received.body_str().to_string(),
        }
    }
}

/// The Python interpreter with `standardwebhooks`: `$PIPELINE_TEST_PYTHON` or `.tools/venv/bin/python`.
pub fn python() -> PathBuf {
    let path = match std::env::var_os("PIPELINE_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => tools_dir().join("venv/bin/python"),
    };
    let path = if path.is_absolute() {
        path
    } else {
        workspace_root().join(path)
    };
    if !path.exists() {
        panic!(
            "python with standardwebhooks not found at {}: run scripts/test.sh (it creates .tools/venv) \
             or set PIPELINE_TEST_PYTHON",
            path.display()
        );
    }
    path
}

pub fn script() -> PathBuf {
    workspace_root().join("scripts/verify_webhooks.py")
}

/// Runs the Python verifier on `items`. `Ok(stdout)` when it accepted all of them, `Err(report)`
/// (exit status, stdout, stderr) otherwise.
pub fn run_python_verifier(items: &[SignedWebhook]) -> Result<String, String> {
    let input = serde_json::to_vec(items).expect("serialize webhooks");
    let out_dir = tempfile::tempdir().expect("temp dir");
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let mut child = Command::new(python())
        .arg(script())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&stdout_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} {}: {e}",
                python().display(),
                script().display()
            )
        });
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(&input)
            .expect("write webhooks to the verifier's stdin");
    }
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the verifier") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the Python verifier did not finish within 60 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "verifier exited with {status}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
        ))
    }
}

/// Asserts the Python verifier accepts every webhook received, signed with `secret`.
pub fn assert_verified(secret: &str, received: &[Received]) {
    let items: Vec<SignedWebhook> = received
        .iter()
        .map(|r| SignedWebhook::from_received(secret, r))
        .collect();
    match run_python_verifier(&items) {
        Ok(out) => assert!(
            out.contains(&format!("verified {}", items.len())),
            "the Python verifier accepted the webhooks but printed {out:?}, expected \"verified {}\"",
            items.len()
        ),
        Err(report) => {
            panic!("the Python Standard Webhooks verifier rejected the webhooks: {report}")
        }
    }
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Vec<u8> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(b64)
        .unwrap_or_else(|e| panic!("secret {secret:?} is not whsec_<base64>: {e}"))
}

/// A fresh random `whsec_…` secret (24 key bytes).
pub fn generate_secret() -> String {
    let key: [u8; 24] = rand::random();
    format!("whsec_{}", B64.encode(key))
}

/// `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>` per the Standard Webhooks spec.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret_key(secret)).expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Whether any `v1,` signature in a `webhook-signature` header matches (Rust-side check).
pub fn signature_matches(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &str,
    header: &str,
) -> bool {
    let expected = sign(secret, msg_id, timestamp, body);
    header.split(' ').any(|sig| sig == expected)
}

/// Headers for a payload signed now, as a sender would send them.
pub fn signed_headers(secret: &str, msg_id: &str, body: &str) -> BTreeMap<String, String> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    BTreeMap::from([
        ("webhook-id".to_string(), msg_id.to_string()),
        ("webhook-timestamp".to_string(), timestamp.to_string()),
        (
            "webhook-signature".to_string(),
            sign(secret, msg_id, timestamp, body),
        ),
        ("content-type".to_string(), "application/json".to_string()),
    ])
}
