//! Console sessions: in memory, bounded and expiring. A session holds the sha256 of the token it
//! was opened with (never the token), its CSRF token and its times; its id travels in an
//! `HttpOnly; SameSite=Strict; Path=/console` cookie. Sessions do not survive a restart and are
//! per replica (sign in again); the policy (expiry, eviction) takes `now` and is unit-tested.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use sha2::{Digest, Sha256};

pub const COOKIE_NAME: &str = "pipeline_console";
/// A session ends this long after sign-in, used or not.
pub const MAX_AGE_MS: i64 = 12 * 60 * 60 * 1000;
/// … or after this long without a request.
pub const IDLE_MS: i64 = 60 * 60 * 1000;
/// Sessions kept at most; a new one beyond it replaces the least recently used.
pub const MAX_SESSIONS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_sha256: [u8; 32],
    /// Sent in every form and checked on every POST.
    pub csrf: String,
    pub created_ms: i64,
    pub seen_ms: i64,
}

impl Session {
    fn expired(&self, now_ms: i64) -> bool {
        now_ms - self.created_ms >= MAX_AGE_MS || now_ms - self.seen_ms >= IDLE_MS
    }

    /// Whether `presented` is this session's CSRF token (compared as digests, in constant time
    /// with respect to the secret's content).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        same_secret(&self.csrf, presented)
    }
}

/// Compares a secret through digests, so the time taken says nothing about where they differ.
pub fn same_secret(expected: &str, presented: &str) -> bool {
    Sha256::digest(presented.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// The session table. Cheap to clone.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Session>>>);

impl Sessions {
    /// Opens a session for the token with this hash; returns its id.
    pub fn open(&self, token_sha256: [u8; 32], now_ms: i64) -> Option<String> {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let session = Session {
            token_sha256,
            csrf: hex::encode(rand::random::<[u8; 24]>()),
            created_ms: now_ms,
            seen_ms: now_ms,
        };
        let mut table = self.0.lock().ok()?;
        table.retain(|_, s| !s.expired(now_ms));
        while table.len() >= MAX_SESSIONS {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.seen_ms)
                .map(|(id, _)| id.clone())?;
            table.remove(&oldest);
        }
        table.insert(id.clone(), session);
        Some(id)
    }

    /// The live session with this id (marked as used now); an expired one is removed.
    pub fn touch(&self, id: &str, now_ms: i64) -> Option<Session> {
        let mut table = self.0.lock().ok()?;
        let session = table.get_mut(id)?;
        if session.expired(now_ms) {
            table.remove(id);
            return None;
        }
        session.seen_ms = now_ms;
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut table) = self.0.lock() {
            table.remove(id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map(|t| t.len()).unwrap_or(0)
    }
}

/// The session id the browser sent, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
}

/// The `Set-Cookie` value for a new session. No `Secure` attribute: the host serves plain HTTP;
/// behind a TLS proxy the operator adds it there (README, Console).
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        MAX_AGE_MS / 1000
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_when_idle_or_old() {
        let sessions = Sessions::default();
        let id = sessions.open([1; 32], 0).unwrap();
        assert!(sessions.touch(&id, IDLE_MS - 1).is_some());
        assert!(sessions.touch(&id, 2 * IDLE_MS - 2).is_some(), "used: kept");
        assert!(sessions.touch(&id, 3 * IDLE_MS).is_none(), "idle: ended");
        assert_eq!(sessions.len(), 0);
        let id = sessions.open([1; 32], 0).unwrap();
        let mut now = 0;
        while now < MAX_AGE_MS - IDLE_MS {
            now += IDLE_MS / 2;
            assert!(sessions.touch(&id, now).is_some());
        }
        assert!(sessions.touch(&id, MAX_AGE_MS).is_none(), "too old");
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_least_recently_used() {
        let sessions = Sessions::default();
        let first = sessions.open([1; 32], 0).unwrap();
        for i in 1..MAX_SESSIONS as i64 {
            sessions.open([2; 32], i).unwrap();
        }
        let newest = sessions.open([3; 32], MAX_SESSIONS as i64).unwrap();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.touch(&first, MAX_SESSIONS as i64).is_none());
        assert!(sessions.touch(&newest, MAX_SESSIONS as i64).is_some());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_strictly() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; pipeline_console=abc; b=2".parse().unwrap());
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        let cookie = set_cookie("abc");
        for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        let session = Sessions::default();
        let id = session.open([0; 32], 0).unwrap();
        let live = session.touch(&id, 1).unwrap();
        assert!(live.csrf_matches(&live.csrf.clone()));
        assert!(!live.csrf_matches(""));
    }
}
