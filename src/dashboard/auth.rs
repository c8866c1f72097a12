//! Who may see the dashboard: everyone when the service has no API tokens (it then listens on
//! loopback only), else a request with a valid `Authorization: Bearer` token or a session cookie
//! from the login form. Sessions are random ids held in memory; the cookie never carries a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::{self, HeaderMap};

use crate::config::Secret;

/// The session cookie's name.
const COOKIE: &str = "courier_session";
/// The `Set-Cookie` value that ends a session in the browser.
pub const CLEAR_COOKIE: &str = "courier_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";
/// A session unused this long is forgotten.
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Most sessions kept; the least recently used goes first.
const MAX_SESSIONS: usize = 1024;

/// The outcome of [`Auth::check`].
pub enum Check {
    /// Allowed; `true` when through a login session (the page then offers to log out).
    Allowed(bool),
    /// No valid token or session.
    Denied,
}

/// Tokens and sessions.
pub struct Auth {
    tokens: Vec<Secret>,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Auth {
    pub fn new(tokens: Vec<Secret>) -> Self {
        Self {
            tokens,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn token_ok(&self, given: &str) -> bool {
        // Compare against every token without stopping early, each in constant time.
        let mut ok = false;
        for t in &self.tokens {
            ok |= constant_time_eq(given.as_bytes(), t.expose().as_bytes());
        }
        ok
    }

    pub fn check(&self, headers: &HeaderMap) -> Check {
        if self.tokens.is_empty() {
            return Check::Allowed(false);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.token_ok(t.trim())) {
            return Check::Allowed(false);
        }
        let Some(id) = session_id(headers) else {
            return Check::Denied;
        };
        let Ok(mut sessions) = self.sessions.lock() else {
            return Check::Denied;
        };
        let now = Instant::now();
        match sessions.get_mut(&id) {
            Some(last) if now.duration_since(*last) < IDLE => {
                *last = now;
                Check::Allowed(true)
            }
            Some(_) => {
                sessions.remove(&id);
                Check::Denied
            }
            None => Check::Denied,
        }
    }

    /// A new session's `Set-Cookie` value when `token` is valid. The cookie has no expiry: it
    /// ends with the browser session (or at logout, or after [`IDLE`]).
    pub fn login(&self, token: &str) -> Option<String> {
        if self.tokens.is_empty() || token.is_empty() || !self.token_ok(token) {
            return None;
        }
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, last| now.duration_since(*last) < IDLE);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now);
        Some(format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"))
    }

    /// Forgets the request's session.
    pub fn logout(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut sessions)) = (session_id(headers), self.sessions.lock()) {
            sessions.remove(&id);
        }
    }
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_sessions_and_logout() {
        let open = Auth::new(Vec::new());
        assert!(matches!(
            open.check(&HeaderMap::new()),
            Check::Allowed(false)
        ));
        assert!(
            open.login("anything").is_none(),
            "no sessions without tokens"
        );

        let auth = Auth::new(vec![Secret::new("t0k3n")]);
        assert!(matches!(auth.check(&HeaderMap::new()), Check::Denied));
        let bearer = headers(&[(header::AUTHORIZATION, "Bearer t0k3n")]);
        assert!(matches!(auth.check(&bearer), Check::Allowed(false)));
        let wrong = headers(&[(header::AUTHORIZATION, "Bearer t0k3m")]);
        assert!(matches!(auth.check(&wrong), Check::Denied));
        assert!(auth.login("t0k3m").is_none());

        let cookie = auth.login("t0k3n").unwrap();
        assert!(
            !cookie.contains("t0k3n"),
            "the cookie never carries the token"
        );
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let pair = cookie.split(';').next().unwrap().to_owned();
        let with_cookie = headers(&[(header::COOKIE, &format!("theme=dark; {pair}"))]);
        assert!(matches!(auth.check(&with_cookie), Check::Allowed(true)));
        let forged = headers(&[(header::COOKIE, "courier_session=0000")]);
        assert!(matches!(auth.check(&forged), Check::Denied));
        auth.logout(&with_cookie);
        assert!(matches!(auth.check(&with_cookie), Check::Denied));
    }
}
