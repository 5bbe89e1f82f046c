//! `secret_key` (`PIPELINE_SECRET_KEY`): the keys endpoint secrets are encrypted under at rest.
//! A comma-separated list of base64 32-byte keys: the first encrypts, every one decrypts, so a
//! key is rotated by putting the new one first and keeping the old one after it until the host
//! has started once (which re-encrypts every secret under the first key).

use anyhow::bail;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Config;

/// At most this many keys: rotation needs two, a few more cover a rotation that went wrong.
const MAX_KEYS: usize = 8;

impl Config {
    /// The secret keys, first (encrypting) key first; empty when `secret_key` is unset.
    /// Errors name the setting and the key's position, never the key.
    pub fn secret_keys(&self) -> anyhow::Result<Vec<[u8; 32]>> {
        let Some(text) = self.secret_key.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(Vec::new());
        };
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.len() > MAX_KEYS {
            bail!(
                "secret_key (PIPELINE_SECRET_KEY) holds {} keys, at most {MAX_KEYS}",
                parts.len()
            );
        }
        let mut keys = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let Ok(bytes) = STANDARD.decode(part) else {
                bail!(
                    "secret_key (PIPELINE_SECRET_KEY): key {} of {} is not base64 (make one with `openssl rand -base64 32`)",
                    i + 1,
                    parts.len()
                );
            };
            let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                bail!(
                    "secret_key (PIPELINE_SECRET_KEY): key {} of {} is {} bytes, must be 32 (make one with `openssl rand -base64 32`)",
                    i + 1,
                    parts.len(),
                    bytes.len()
                );
            };
            keys.push(key);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secret_keys_are_a_list_of_base64_32_byte_keys_and_a_bad_one_names_the_setting() {
        use base64::Engine as _;
        let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let list = format!("{}, {}", encode(&[2; 32]), encode(&[1; 32]));
        let c = Config::load_from(None, &env(&[("PIPELINE_SECRET_KEY", &list)])).unwrap();
        assert_eq!(c.secret_keys().unwrap(), vec![[2; 32], [1; 32]]);
        assert!(
            Config::load_from(None, &[])
                .unwrap()
                .secret_keys()
                .unwrap()
                .is_empty()
        );
        let short = encode(b"SHORTKEY-not-32-bytes");
        for bad in [format!("{list},{short}"), "not base64!".to_string()] {
            let error = Config::load_from(None, &env(&[("PIPELINE_SECRET_KEY", &bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("secret_key (PIPELINE_SECRET_KEY)"),
                "{error}"
            );
            assert!(
                !error.contains(&short) && !error.contains("not base64!"),
                "{error}"
            );
        }
    }
}
