//! OAuth 2.0 client credentials: fetches an access token from the token endpoint, caches it
//! until shortly before it expires, and drops it when the API refuses it (401), so that the next
//! request fetches a fresh one. Tokens and client secrets never appear in errors or logs.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{error_chain, HttpClient, USER_AGENT};
use crate::config::{ClientAuth, OAuth2};
use crate::encode::query_escape;

/// A token response larger than this is refused.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// A token is renewed this long before it expires (or at half its lifetime, if shorter).
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Connecting to the token endpoint failed or timed out: worth another try.
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    /// The token endpoint answered with an error status (with the OAuth `error` code when given).
    #[error("token endpoint answered {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_client`...).
        code: Option<String>,
    },
    /// The answer is not a usable token response.
    #[error("token endpoint answered without a usable access_token: {0}")]
    Malformed(String),
}

impl TokenError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            TokenError::Unreachable(_) => true,
            TokenError::Status { status, .. } => *status == 429 || *status >= 500,
            TokenError::Malformed(_) => false,
        }
    }
}

struct Cached {
    header: HeaderValue,
    renew_at: Option<Instant>,
}

/// One channel's token: fetched on first use, shared by every request of the channel.
pub struct TokenSource {
    cfg: OAuth2,
    client: HttpClient,
    timeout: Duration,
    // Held across the fetch, so that concurrent requests wait for one fetch.
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &crate::config::mask_url(&self.cfg.token_url))
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `cfg`, fetching through `client` within `timeout`.
    pub fn new(cfg: OAuth2, client: HttpClient, timeout: Duration) -> Self {
        Self {
            cfg,
            client,
            timeout,
            cached: Mutex::new(None),
        }
    }

    /// The `Authorization` value to send (`Bearer ...`, marked sensitive).
    ///
    /// # Errors
    /// See [`TokenError`].
    pub async fn authorization(&self) -> Result<HeaderValue, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if c.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(c.header.clone());
            }
        }
        let fresh = self.fetch().await?;
        let header = fresh.header.clone();
        *cached = Some(fresh);
        Ok(header)
    }

    /// Forgets `used` if it is still the cached token (the API refused it), so that the next
    /// call fetches a new one; a token already replaced by another request is left alone.
    pub async fn refused(&self, used: &HeaderValue) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.header == *used) {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, TokenError> {
        let c = &self.cfg;
        let mut form = String::from("grant_type=client_credentials");
        let mut add = |k: &str, v: &str| {
            form.push('&');
            form.push_str(k);
            form.push('=');
            form.push_str(&query_escape(v));
        };
        if !c.scopes.is_empty() {
            add("scope", &c.scopes.join(" "));
        }
        if let Some(a) = &c.audience {
            add("audience", a);
        }
        let mut req = hyper::Request::post(c.token_url.as_str())
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        match c.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 section 2.3.1: both parts form-encoded before Basic encoding.
                let pair = format!(
                    "{}:{}",
                    query_escape(&c.client_id),
                    query_escape(c.client_secret.expose())
                );
                let mut v = HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
                .map_err(|_| TokenError::Malformed("client credentials".into()))?;
                v.set_sensitive(true);
                req = req.header(header::AUTHORIZATION, v);
            }
            ClientAuth::Body => {
                add("client_id", &c.client_id);
                add("client_secret", c.client_secret.expose());
            }
        }
        let req = req
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| TokenError::Malformed(format!("token_url: {e}")))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| TokenError::Unreachable(error_chain(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_TOKEN_RESPONSE)
                .collect()
                .await
                .map_err(|_| TokenError::Malformed("response too large or broken".into()))?
                .to_bytes();
            Ok::<_, TokenError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                TokenError::Unreachable(format!("no answer within {:?}", self.timeout))
            })??;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !status.is_success() {
            return Err(TokenError::Status {
                status: status.as_u16(),
                code: json["error"]
                    .as_str()
                    .filter(|c| c.len() < 64 && c.bytes().all(|b| b.is_ascii_graphic()))
                    .map(str::to_owned),
            });
        }
        let token = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::Malformed("no access_token".into()))?;
        if let Some(kind) = json["token_type"].as_str() {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(TokenError::Malformed(format!(
                    "token_type {kind:?} is not bearer"
                )));
            }
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| TokenError::Malformed("the token is not a valid header value".into()))?;
        header.set_sensitive(true);
        let renew_at = json["expires_in"]
            .as_f64()
            .or_else(|| json["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|secs| {
                let life = Duration::from_secs_f64(secs.min(1e9));
                Instant::now() + life - RENEW_BEFORE.min(life / 2)
            });
        Ok(Cached { header, renew_at })
    }
}
