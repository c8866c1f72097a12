//! Remote templates kept fresh: how an `http(s)://` template is fetched, with which validators,
//! and for how long the copy is good.
//!
//! A copy is good for the server's `Cache-Control: max-age` (else `Expires`), clamped to
//! [`MIN_REFRESH`]..=[`MAX_REFRESH`]; for [`DEFAULT_REFRESH`] when the server says nothing or
//! says `no-cache` / `no-store` / `max-age=0` (a template cannot be revalidated on every render).
//! Fetching again sends the copy's `ETag` as `If-None-Match` and its `Last-Modified` as
//! `If-Modified-Since`, so an unchanged template costs a `304 Not Modified`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap};
use hyper::StatusCode;

use crate::http::{self, FetchError, HttpClient};

/// How long a copy is good when the server gives no freshness.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The shortest refresh interval honoured, whatever the server says.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest refresh interval honoured, whatever the server says.
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// What identifies the copy held, for a conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// The `ETag` the server sent with the copy.
    pub etag: Option<String>,
    /// The `Last-Modified` the server sent with the copy.
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            etag: text(header::ETAG),
            last_modified: text(header::LAST_MODIFIED),
        }
    }

    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A fetch's result.
#[derive(Debug)]
pub enum Fetched {
    /// A 200: the template's text as served.
    Modified {
        /// The body.
        body: Bytes,
        /// Its validators.
        validators: Validators,
        /// How long it is good.
        fresh_for: Duration,
    },
    /// A 304: the copy held is still the server's.
    NotModified {
        /// The validators to send next time (the server's, else those sent).
        validators: Validators,
        /// How long the copy is good from now.
        fresh_for: Duration,
    },
}

/// GETs `url`, conditionally when `known` has validators, reading at most `max_bytes`.
///
/// # Errors
/// A transport failure, a timeout, a status other than 200 and 304, an oversized body.
pub async fn fetch(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
    max_bytes: usize,
    known: Option<&Validators>,
) -> Result<Fetched, FetchError> {
    let uri: hyper::Uri = url.parse().map_err(|e| FetchError::Url(format!("{e}")))?;
    let mut req = hyper::Request::get(uri).header(header::USER_AGENT, http::USER_AGENT);
    if let Some(v) = known {
        if let Some(etag) = &v.etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = &v.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, date);
        }
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| FetchError::Url(e.to_string()))?;
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| FetchError::Transport(http::error_chain(&e)))?;
        let fresh_for = freshness(resp.headers(), SystemTime::now());
        let validators = Validators::from_headers(resp.headers());
        match resp.status() {
            StatusCode::OK => {
                let body = Limited::new(resp.into_body(), max_bytes)
                    .collect()
                    .await
                    .map_err(|_| FetchError::TooLarge(max_bytes))?
                    .to_bytes();
                Ok(Fetched::Modified {
                    body,
                    validators,
                    fresh_for,
                })
            }
            StatusCode::NOT_MODIFIED if known.is_some() => Ok(Fetched::NotModified {
                validators: if validators.is_empty() {
                    known.cloned().unwrap_or_default()
                } else {
                    validators
                },
                fresh_for,
            }),
            status => Err(FetchError::Status(status)),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

/// How long a response with `headers`, received at `now`, stays good (see the module doc).
pub fn freshness(headers: &HeaderMap, now: SystemTime) -> Duration {
    let mut max_age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-cache" || directive == "no-store" {
                return DEFAULT_REFRESH;
            }
            if let Some(secs) = directive
                .strip_prefix("max-age=")
                .and_then(|s| s.trim_matches('"').parse::<u64>().ok())
            {
                max_age = Some(Duration::from_secs(secs));
            }
        }
    }
    let expires = || {
        let expires = httpdate::parse_http_date(headers.get(header::EXPIRES)?.to_str().ok()?);
        // An unparseable Expires means "already expired": as max-age=0.
        let Ok(expires) = expires else {
            return Some(Duration::ZERO);
        };
        let date = headers
            .get(header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .unwrap_or(now);
        Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
    };
    match max_age.or_else(expires) {
        None => DEFAULT_REFRESH,
        Some(d) if d.is_zero() => DEFAULT_REFRESH,
        Some(d) => d.clamp(MIN_REFRESH, MAX_REFRESH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn freshness_follows_cache_control_then_expires_within_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let f = |pairs: &[(&str, &str)]| freshness(&headers(pairs), now);
        assert_eq!(f(&[]), DEFAULT_REFRESH);
        assert_eq!(
            f(&[("cache-control", "public, max-age=60")]),
            Duration::from_secs(60)
        );
        assert_eq!(f(&[("cache-control", "max-age=0")]), DEFAULT_REFRESH);
        assert_eq!(f(&[("cache-control", "no-cache")]), DEFAULT_REFRESH);
        assert_eq!(
            f(&[("cache-control", "max-age=60, no-store")]),
            DEFAULT_REFRESH
        );
        assert_eq!(
            f(&[("cache-control", "max-age=99999999")]),
            MAX_REFRESH,
            "capped"
        );
        let date = httpdate::fmt_http_date(now);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            f(&[("date", &date), ("expires", &later)]),
            Duration::from_secs(120)
        );
        assert_eq!(
            f(&[("cache-control", "max-age=30"), ("expires", &later)]),
            Duration::from_secs(30),
            "max-age wins over Expires"
        );
        assert_eq!(f(&[("expires", "0")]), DEFAULT_REFRESH);
        assert_eq!(
            f(&[("cache-control", "garbage=,,max-age=x")]),
            DEFAULT_REFRESH
        );
    }
}
