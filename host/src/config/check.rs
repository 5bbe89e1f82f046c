//! What `pipeline config check` needs: the error that makes the binary exit with status 2, and
//! the effective configuration rendered with every secret replaced.
//!
//! Redaction works on the serialized form, by key, so a setting added later is covered when its
//! name says what it is (`*token*`, `*secret*`, `*password*`, `*_key(s)`); URLs keep only what
//! locates the service (see [`crate::redact`]).

use serde_json::Value;

use super::Config;

/// The configuration could not be loaded or is invalid. Its message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0:#}")]
pub struct InvalidConfig(pub anyhow::Error);

/// How `config check` prints the effective configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Toml,
    Json,
}

/// Shown instead of a secret.
pub const REDACTED: &str = "[redacted]";
/// Shown instead of a secret inside a URL, where brackets would be percent-encoded.
const URL_REDACTED: &str = "REDACTED";

impl Config {
    /// The configuration as a JSON value with secrets replaced: the admin token, the database
    /// URL's password (and password-like query parameters), node URLs beyond scheme, host and port.
    pub fn redacted(&self) -> anyhow::Result<Value> {
        let mut value = serde_json::to_value(self)?;
        redact(&mut value, None);
        Ok(value)
    }

    /// The effective configuration, redacted, as TOML (loadable with `--config`) or JSON.
    pub fn render_redacted(&self, format: OutputFormat) -> anyhow::Result<String> {
        let mut value = self.redacted()?;
        Ok(match format {
            OutputFormat::Json => serde_json::to_string_pretty(&value)?,
            OutputFormat::Toml => {
                // TOML has no null: an unset optional setting is left out, as in a config file.
                drop_nulls(&mut value);
                toml::to_string(&value)?
            }
        })
    }
}

fn redact(value: &mut Value, key: Option<&str>) {
    match value {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                redact(child, Some(k));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, key)),
        Value::String(s) => {
            if let Some(shown) = key.and_then(|k| redacted_string(k, s)) {
                *s = shown;
            }
        }
        _ => {}
    }
}

/// What replaces the string `value` of setting `key`, if anything.
fn redacted_string(key: &str, value: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    if ["token", "secret", "password"]
        .iter()
        .any(|word| key.contains(word))
        || key.ends_with("_key")
        || key.ends_with("_keys")
    {
        return Some(REDACTED.to_string());
    }
    match key.as_str() {
        "database_url" => Some(database_url(value)),
        "ws_urls" => Some(crate::redact::url(value)),
        _ => None,
    }
}

/// A database URL with its password and password-like query parameters replaced; the rest (host,
/// database, user, options) is what an operator checks. An unparseable one shows only its scheme.
pub fn database_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return match raw.split_once(':') {
            Some((scheme, _)) if is_scheme(scheme) => format!("{scheme}:{REDACTED}"),
            _ => REDACTED.to_string(),
        };
    };
    if url.password().is_some() {
        // Fails only for URLs that cannot have a password, which this one has.
        let _ = url.set_password(Some(URL_REDACTED));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = redacted_string(&k, &v).is_some() || k.contains("key");
                let v = if secret {
                    URL_REDACTED.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

fn is_scheme(s: &str) -> bool {
    !s.is_empty() && s.len() <= 10 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let env: Vec<(String, String)> = [
            (
                "DATABASE_URL",
                "postgres://app:hunter2pw@db.internal:5432/pipeline?sslmode=require&sslpassword=KEYPASS1",
            ),
            ("PIPELINE_ADMIN_TOKEN", "tok_SECRET_ADMIN"),
            ("ETHEREUM_WSS", "wss://mainnet.example/v3/APIKEY123,wss://u:pw99@b.example"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::load_from(None, &env).unwrap()
    }

    const SECRETS: [&str; 5] = [
        "hunter2pw",
        "KEYPASS1",
        "tok_SECRET_ADMIN",
        "APIKEY123",
        "pw99",
    ];

    #[test]
    fn no_secret_survives_either_format() {
        let c = config();
        for format in [OutputFormat::Toml, OutputFormat::Json] {
            let text = c.render_redacted(format).unwrap();
            for secret in SECRETS {
                assert!(!text.contains(secret), "{secret} in {format:?}:\n{text}");
            }
            for kept in [
                "db.internal:5432/pipeline",
                "sslmode=require",
                "wss://mainnet.example/…",
            ] {
                assert!(text.contains(kept), "{kept} missing in {format:?}:\n{text}");
            }
        }
    }

    #[test]
    fn the_toml_output_loads_back_as_the_same_configuration() {
        let c = Config::load_from(None, &[]).unwrap();
        let text = c.render_redacted(OutputFormat::Toml).unwrap();
        let dir = std::env::temp_dir().join(format!("pipeline-check-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("effective.toml");
        std::fs::write(&path, &text).unwrap();
        let again = Config::load_from(Some(&path), &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(again.redacted().unwrap(), c.redacted().unwrap(), "{text}");
    }

    #[test]
    fn secret_like_keys_are_redacted_by_name() {
        for key in [
            "admin_token",
            "secret_keys",
            "signing_secret",
            "password",
            "api_key",
        ] {
            assert_eq!(
                redacted_string(key, "x").as_deref(),
                Some(REDACTED),
                "{key}"
            );
        }
        for key in ["name", "log_format", "max_events"] {
            assert_eq!(redacted_string(key, "x"), None, "{key}");
        }
        assert_eq!(database_url("sqlite://./data/p.db"), "sqlite://./data/p.db");
        assert_eq!(database_url("hunter2"), REDACTED);
        assert_eq!(
            database_url("postgres://u:pw@h/db?password=pw&application_name=x"),
            "postgres://u:REDACTED@h/db?password=REDACTED&application_name=x"
        );
        assert_eq!(
            database_url("postgres://u:pw@[bad/db"),
            format!("postgres:{REDACTED}")
        );
    }
}
