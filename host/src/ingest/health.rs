//! What readiness and metrics know about one chain. Everything here can reach the unauthenticated
//! `/readyz`, so URLs are stored redacted (scheme and host only) and errors are built from them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::config::ChainConfig;
use crate::store::now_ms;

#[derive(Debug, Default)]
pub struct ChainHealth {
    pub chain_id: u64,
    pub name: String,
    pub connected: AtomicBool,
    /// Another replica owns the chain; this one is ready to take over.
    pub standby: AtomicBool,
    /// When the last *new* head (a higher block number than any before) arrived; 0: none yet.
    pub last_head_at_ms: AtomicI64,
    /// No new head within `stale_after_ms`: ingest is reconnecting or failing over.
    pub stale: AtomicBool,
    pub stale_after_ms: u64,
    /// The node followed now (redacted); set through [`ChainHealth::set_connected`].
    pub url: Mutex<Option<String>>,
    /// Set through [`ChainHealth::set_error`].
    pub last_error: Mutex<Option<LastError>>,
    /// The last reorg deeper than the window (what could not be withdrawn), and when.
    pub deep_reorg: Mutex<Option<(String, i64)>>,
}

#[derive(Debug, Clone)]
pub struct LastError {
    /// Redacted.
    pub url: String,
    pub message: String,
    pub at_ms: i64,
}

impl ChainHealth {
    pub fn new(chain: &ChainConfig) -> Arc<ChainHealth> {
        Arc::new(ChainHealth {
            chain_id: chain.chain_id,
            name: chain.name.clone(),
            stale_after_ms: u64::try_from(chain.stale_after().as_millis()).unwrap_or(u64::MAX),
            ..ChainHealth::default()
        })
    }

    /// Following `url` (already redacted) now.
    pub(super) fn set_connected(&self, url: &str) {
        if let Ok(mut slot) = self.url.lock() {
            *slot = Some(url.to_string());
        }
        self.connected.store(true, Ordering::Relaxed);
    }

    /// Why the connection to `url` (already redacted) ended; `message` must not quote the raw URL
    /// (the ingest errors carry only redacted ones).
    pub(super) fn set_error(&self, url: &str, message: &str) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(LastError {
                url: url.to_string(),
                message: message.to_string(),
                at_ms: now_ms(),
            });
        }
    }

    pub(super) fn set_deep_reorg(&self, what: String) {
        if let Ok(mut slot) = self.deep_reorg.lock() {
            *slot = Some((what, now_ms()));
        }
    }

    /// The last reorg deeper than the window, as `/readyz` shows it (it stays: what it did not
    /// withdraw was delivered).
    fn deep_reorg(&self) -> Option<String> {
        let (what, at_ms) = self.deep_reorg.lock().ok()?.clone()?;
        let age_s = now_ms().saturating_sub(at_ms) / 1000;
        Some(format!("{what} ({age_s} s ago)"))
    }

    /// The last error, as `/readyz` shows it: which node (redacted), what, how long ago.
    pub fn last_error(&self) -> Option<String> {
        let last = self.last_error.lock().ok()?.clone()?;
        let age_s = now_ms().saturating_sub(last.at_ms) / 1000;
        Some(format!("{}: {} ({age_s} s ago)", last.url, last.message))
    }

    /// Why a stale chain is not ready: how long without a new head, against what limit.
    fn stale_reason(&self, last_error: Option<String>) -> String {
        let last = self.last_head_at_ms.load(Ordering::Relaxed);
        let since = if last > 0 {
            format!("for {} s", now_ms().saturating_sub(last) / 1000)
        } else {
            "yet".to_string()
        };
        let mut why = format!(
            "chain {} stale: no new head {since} (stale after {} s); reconnecting or failing over",
            self.chain_id,
            self.stale_after_ms / 1000
        );
        if let Some(error) = last_error {
            why.push_str(&format!("; last error {error}"));
        }
        why
    }

    /// `Ok(detail)` when ready (connected with fresh heads, or on standby), `Err(why)` otherwise. A chain that has
    /// never connected is not ready either. A recovered error still shows, so an operator can see
    /// why the chain failed over.
    pub fn readiness(&self) -> Result<Option<String>, String> {
        let Some(deep) = self.deep_reorg() else {
            return self.connection_readiness();
        };
        let with_deep = |detail: Option<String>| match detail {
            Some(detail) => format!("{detail}; deep reorg: {deep}"),
            None => format!("deep reorg: {deep}"),
        };
        match self.connection_readiness() {
            Ok(detail) => Ok(Some(with_deep(detail))),
            Err(why) => Err(with_deep(Some(why))),
        }
    }

    fn connection_readiness(&self) -> Result<Option<String>, String> {
        let last_error = self.last_error();
        if self.standby.load(Ordering::Relaxed) {
            return Ok(Some("standby: another replica ingests this chain".into()));
        }
        if self.stale.load(Ordering::Relaxed) {
            return Err(self.stale_reason(last_error));
        }
        if self.connected.load(Ordering::Relaxed) {
            let url = self.url.lock().ok().and_then(|u| u.clone());
            return Ok(match (url, last_error) {
                (Some(url), Some(error)) => Some(format!("following {url}; last error {error}")),
                (Some(url), None) => Some(format!("following {url}")),
                (None, error) => error.map(|e| format!("last error {e}")),
            });
        }
        Err(match last_error {
            Some(error) => format!("chain {} not connected: {error}", self.chain_id),
            None => format!("chain {} not connected", self.chain_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_says_why_with_the_redacted_url_only() {
        let health = ChainHealth::default();
        assert_eq!(health.readiness(), Err("chain 0 not connected".to_string()));
        let raw = "wss://x.example/v3/KEY123";
        health.set_error(&crate::redact::url(raw), "connection closed by the node");
        let why = health.readiness().unwrap_err();
        assert!(
            why.starts_with(
                "chain 0 not connected: wss://x.example/…: connection closed by the node ("
            ),
            "{why}"
        );
        assert!(!why.contains("KEY123"), "{why}");
        health.set_connected("ws://b.example");
        let detail = health.readiness().unwrap().unwrap_or_default();
        assert!(
            detail.starts_with("following ws://b.example; last error wss://x.example/…"),
            "{detail}"
        );
    }
}
