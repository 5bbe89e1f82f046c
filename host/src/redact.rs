//! Node URLs often carry credentials: `wss://x.example/v3/KEY`, `wss://user:pass@host`,
//! `wss://host/ws?apikey=KEY`. Wherever a node URL can show — `/readyz` (unauthenticated), logs,
//! error messages, config errors — it goes through [`url`] first, which keeps only the scheme, host
//! and port. Nothing else in the host formats a node URL.

/// `scheme://host[:port]`, with `/…` when anything else (user, password, path, query, fragment)
/// was left out. An unparseable URL shows only its scheme, since where its secret sits is unknown.
pub fn url(raw: &str) -> String {
    let Ok(parsed) = url::Url::parse(raw) else {
        return match raw.split_once("://") {
            Some((scheme, _)) if is_scheme(scheme) => format!("{scheme}://…"),
            _ => "(unparseable URL)".to_string(),
        };
    };
    let scheme = parsed.scheme();
    let Some(host) = parsed.host_str() else {
        return format!("{scheme}:…");
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = !parsed.username().is_empty()
        || parsed.password().is_some()
        || !matches!(parsed.path(), "" | "/")
        || parsed.query().is_some()
        || parsed.fragment().is_some();
    let tail = if hidden { "/…" } else { "" };
    format!("{scheme}://{host}{port}{tail}")
}

/// `text` (an error from a library that was handed `raw`) with `raw` and its secret parts replaced,
/// in case the library quoted the URL or its path.
pub fn scrub(text: &str, raw: &str) -> String {
    let mut out = text.replace(raw, &url(raw));
    if let Ok(parsed) = url::Url::parse(raw) {
        let path = parsed.path().trim_start_matches('/');
        let parts = [
            parsed.password().unwrap_or_default(),
            parsed.username(),
            path,
            parsed.query().unwrap_or_default(),
        ];
        // Very short parts would mangle ordinary words and are no secret worth the noise.
        for part in parts.into_iter().filter(|p| p.len() >= 4) {
            out = out.replace(part, "…");
        }
    }
    out
}

fn is_scheme(s: &str) -> bool {
    !s.is_empty() && s.len() <= 10 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scheme_host_and_port_only() {
        let cases = [
            ("wss://x.example/v3/KEY123", "wss://x.example/…"),
            ("wss://user:pass@host.example", "wss://host.example/…"),
            ("wss://user@host.example:8546/", "wss://host.example:8546/…"),
            (
                "wss://host.example/ws?apikey=KEY123",
                "wss://host.example/…",
            ),
            ("wss://host.example?apikey=KEY123", "wss://host.example/…"),
            ("wss://host.example/#KEY123", "wss://host.example/…"),
            ("ws://127.0.0.1:8545", "ws://127.0.0.1:8545"),
            ("ws://127.0.0.1:8545/", "ws://127.0.0.1:8545"),
            ("ws://[::1]:8545/KEY123", "ws://[::1]:8545/…"),
            ("wss://user:pa ss@ho st/KEY123", "wss://…"),
            ("KEY123", "(unparseable URL)"),
        ];
        for (raw, shown) in cases {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn scrub_removes_the_url_and_its_secret_parts_from_text() {
        let raw = "wss://alice:s3cret@x.example/v3/KEY123?apikey=QQQQ";
        let text = format!(
            "connect {raw} failed: HTTP 401 for /v3/KEY123 (user alice, s3cret, apikey=QQQQ)"
        );
        let scrubbed = scrub(&text, raw);
        for secret in ["KEY123", "s3cret", "alice", "QQQQ"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert!(scrubbed.contains("wss://x.example/…"), "{scrubbed}");
    }
}
