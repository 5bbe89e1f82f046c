//! `[server]`: the limits of the admin and metrics HTTP servers, which anyone who can reach the
//! ports may connect to before authenticating. Each server applies them on its own.

use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Connections served at once per server. At the limit the server stops accepting: further
    /// connections wait in the listen backlog until a served one ends (every one is bounded by
    /// the timeouts below), so a flood delays clients instead of exhausting file descriptors.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, counted from the connection's start or from the
    /// end of the previous response. It is also the idle keep-alive timeout: a connection that
    /// does not start its next request within it is closed.
    pub header_timeout_ms: u64,
    /// Longest gap between two pieces of a request body.
    pub body_timeout_ms: u64,
    /// Whole request, body and handler included (a plugin upload compiles the module within it).
    pub request_timeout_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
        }
    }
}

impl ServerLimits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `compile_timeout_ms`: a plugin upload must be able to finish compiling within a request.
    pub fn validate(&self, compile_timeout_ms: u64) -> anyhow::Result<()> {
        if !(1..=1_000_000).contains(&self.max_connections) {
            bail!(
                "server.max_connections must be between 1 and 1000000, got {}",
                self.max_connections
            );
        }
        if self.header_timeout_ms == 0 || self.body_timeout_ms == 0 {
            bail!("server.header_timeout_ms and server.body_timeout_ms must be positive");
        }
        if self.request_timeout_ms <= compile_timeout_ms {
            bail!(
                "server.request_timeout_ms ({}) must exceed plugin.compile_timeout_ms ({compile_timeout_ms}), \
                 or plugin uploads time out while compiling",
                self.request_timeout_ms
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn from_toml(text: &str) -> anyhow::Result<Config> {
        let dir = std::env::temp_dir().join(format!("pipeline-config-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("pipeline.toml");
        std::fs::write(&path, text)?;
        let config = Config::load_from(Some(&path), &[]);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(config?)
    }

    #[test]
    fn the_server_section_is_optional_partial_and_checked() {
        assert_eq!(from_toml("").unwrap().server, ServerLimits::default());
        let c = from_toml("[server]\nmax_connections = 64\nheader_timeout_ms = 2000\n").unwrap();
        assert_eq!(
            (c.server.max_connections, c.server.header_timeout_ms),
            (64, 2000)
        );
        assert_eq!(c.server.request_timeout_ms, 60_000);
        let short = from_toml("[server]\nrequest_timeout_ms = 1000\n").unwrap_err();
        assert!(
            format!("{short:#}").contains("server.request_timeout_ms"),
            "{short:#}"
        );
        let none = from_toml("[server]\nmax_connections = 0\n").unwrap_err();
        assert!(
            format!("{none:#}").contains("server.max_connections"),
            "{none:#}"
        );
        assert!(
            from_toml("[server]\nmax_conections = 5\n").is_err(),
            "unknown keys are refused"
        );
    }
}
