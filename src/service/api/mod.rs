//! The HTTP API of `courier serve`: accept messages (stored before they are acknowledged), look
//! them up, requeue them, health and metrics. Errors are JSON: `{"error": {"code", "status",
//! "reason"}}`.
//!
//! Inserts from concurrent requests are committed together (group commit): one transaction, and
//! with SQLite one fsync, for every request waiting at that moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize as _;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::settings::ServeSettings;
use crate::config::Secret;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::store::{self, ListFilter, MessageStore, Requeue, Status};

pub(crate) mod body;
mod error;
mod group;
mod rate;

use error::{json_response as reply, ApiError};

/// Shared state of the API handlers.
pub struct Api {
    store: Arc<dyn MessageStore>,
    metrics: Arc<Metrics>,
    /// Accepted bearer tokens; empty means no authentication (loopback only).
    tokens: Vec<Secret>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    /// Per-token rate limit, when configured.
    limiter: Option<rate::RateLimiter>,
    /// Wakes the local worker after an insert.
    wake: Arc<Notify>,
    /// Whether the worker's claim loop runs (for readiness).
    worker_running: Arc<AtomicBool>,
    inserts: mpsc::Sender<group::Pending>,
}

impl Api {
    /// The API state under `settings` (tokens, body limits, rate limit); starts the group-commit
    /// task on the current runtime.
    pub fn new(
        store: Arc<dyn MessageStore>,
        metrics: Arc<Metrics>,
        settings: &ServeSettings,
        wake: Arc<Notify>,
        worker_running: Arc<AtomicBool>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let writers = store.concurrent_writes();
        tokio::spawn(group::run(Arc::clone(&store), rx, writers));
        let tokens = settings.tokens.clone();
        Self {
            store,
            metrics,
            limiter: settings
                .rate_limit
                .as_ref()
                .map(|limit| rate::RateLimiter::new(limit, tokens.len())),
            tokens,
            max_body_bytes: settings.max_body_bytes,
            body_read_timeout: settings.body_read_timeout,
            wake,
            worker_running,
            inserts: tx,
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = req.method().clone();
        // Health probes stay open so orchestrators need no token.
        match (&method, segments.as_slice()) {
            (&Method::GET, ["health", "alive"]) => {
                return reply(StatusCode::OK, &json!({"status": "ok"}))
            }
            (&Method::GET, ["health", "ready"]) => return self.ready().await,
            _ => {}
        }
        if let Err(rejection) = self.authorize(&req).and_then(|token| self.limit(token)) {
            return rejection.into_response();
        }
        let result = match (&method, segments.as_slice()) {
            (&Method::POST, ["messages"]) => {
                let channel = form_pairs(req.uri().query().unwrap_or(""))
                    .into_iter()
                    .find(|(k, _)| k == "channel")
                    .map(|(_, v)| v)
                    .filter(|v| !v.is_empty());
                match self.idempotency_key(&req) {
                    Ok(key) => self.accept(req, channel, key).await,
                    Err(rejection) => Err(rejection),
                }
            }
            (&Method::GET, ["messages"]) => self.list(req.uri().query().unwrap_or("")).await,
            (&Method::GET, ["messages", id]) => self.get(id).await,
            (&Method::POST, ["messages", id, "retry"]) => self.retry(id).await,
            (&Method::GET, ["metrics"]) => self.metrics().await,
            (_, ["messages"]) => Err(ApiError::not_allowed("GET, POST")),
            (_, ["messages", _]) => Err(ApiError::not_allowed("GET")),
            (_, ["messages", _, "retry"]) => Err(ApiError::not_allowed("POST")),
            (_, ["metrics"]) => Err(ApiError::not_allowed("GET")),
            _ => Err(ApiError::not_found(format!("no route {method} {path}"))),
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// The `Idempotency-Key` of a request, if it has one, with the scope of its API token: a hash
    /// of the token (never the token), or `""` without authentication. The body hash is filled in
    /// once the body is read.
    fn idempotency_key(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Option<store::IdempotencyKey>, ApiError> {
        let Some(value) = req.headers().get("idempotency-key") else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| (1..=255).contains(&k.len()))
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key: must be 1 to 255 visible ASCII characters")
            })?;
        let scope = if self.tokens.is_empty() {
            String::new()
        } else {
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| sha256_hex(t.trim().as_bytes()))
                .unwrap_or_default()
        };
        Ok(Some(store::IdempotencyKey {
            scope,
            key: key.to_owned(),
            body_hash: String::new(),
        }))
    }

    /// A 429 when the rate limit is on and the bucket of API token `token` is empty.
    fn limit(&self, token: usize) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.take(token, Instant::now()).map_err(|wait| {
            self.metrics.api_rate_limited();
            ApiError::rate_limited(&limiter.describe(), wait)
        })
    }

    /// The position of the request's API token in the configured list (0 when the API has no
    /// tokens); a 401 when tokens are required and the request has no valid one.
    fn authorize(&self, req: &Request<Incoming>) -> Result<usize, ApiError> {
        if self.tokens.is_empty() {
            return Ok(0);
        }
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(given) = given else {
            return Err(ApiError::unauthorized(
                "missing bearer token: send Authorization: Bearer <token>",
                "Bearer",
            ));
        };
        // Compare against every token without stopping early, each in constant time.
        let mut matched = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if constant_time_eq(given.as_bytes(), t.expose().as_bytes()) {
                matched = Some(i);
            }
        }
        matched.ok_or_else(|| {
            ApiError::unauthorized("invalid bearer token", "Bearer error=\"invalid_token\"")
        })
    }

    async fn ready(&self) -> Response<Full<Bytes>> {
        let store = self.store.ping().await;
        let worker = self.worker_running.load(Ordering::Acquire);
        match (store, worker) {
            (Ok(()), true) => reply(StatusCode::OK, &json!({"status": "ok"})),
            (Err(e), _) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "reason": e.to_string()}),
            ),
            (Ok(()), false) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "reason": "the delivery worker is not running"}),
            ),
        }
    }

    /// `channel` (from `?channel=`) routes messages that name none, e.g. everything a reference
    /// courier's `sms` channel posts.
    async fn accept(
        &self,
        req: Request<Incoming>,
        channel: Option<String>,
        idempotency: Option<store::IdempotencyKey>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", self.max_body_bytes),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes) {
            return Err(too_large());
        }
        let body = body::read(req.into_body(), self.max_body_bytes, self.body_read_timeout)
            .await
            .map_err(|e| match e {
                body::BodyError::TooLarge(_) => too_large(),
                body::BodyError::TimedOut(limit) => {
                    self.metrics.api_timeout(false);
                    ApiError::body_timeout(limit)
                }
                body::BodyError::Broken(e) => {
                    ApiError::bad_request(format!("reading the body failed: {e}"))
                }
            })?;
        let (mut messages, single) = parse_messages(&body).map_err(ApiError::bad_request)?;
        if let Some(ch) = &channel {
            for m in messages.iter_mut().filter(|m| m.channel.is_none()) {
                m.channel = Some(ch.clone());
            }
        }
        if messages.is_empty() {
            return Err(ApiError::bad_request(
                "the array is empty: send one message or an array of them",
            ));
        }
        let count = messages.len();
        if let Some(mut key) = idempotency {
            // Past the group commit: the key and the messages go in one transaction of their own.
            key.body_hash = sha256_hex(&body);
            let ids = match self.store.insert_once(&key, &messages).await? {
                store::Idempotent::Inserted(ids) => {
                    self.metrics.accepted(count);
                    self.wake.notify_one();
                    ids
                }
                store::Idempotent::Replayed(ids) => ids,
                store::Idempotent::Conflict => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "Idempotency-Key {:?} was already used with a different body; use a new key for a new request",
                            key.key
                        ),
                    ))
                }
            };
            return Ok(reply(StatusCode::ACCEPTED, &accepted_body(&ids, single)));
        }
        let (tx, rx) = oneshot::channel();
        self.inserts
            .send((messages, tx))
            .await
            .map_err(|_| ApiError::shutting_down())?;
        let ids = rx.await.map_err(|_| ApiError::shutting_down())??;
        self.metrics.accepted(count);
        self.wake.notify_one();
        Ok(reply(StatusCode::ACCEPTED, &accepted_body(&ids, single)))
    }

    async fn get(&self, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        match self.store.get(id).await? {
            Some(m) => Ok(reply(StatusCode::OK, &m)),
            None => Err(ApiError::not_found(format!("no message with id {id:?}"))),
        }
    }

    async fn list(&self, query: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        let mut filter = ListFilter::default();
        let mut token = None;
        let mut limit = 50usize;
        for (k, v) in form_pairs(query) {
            match k.as_str() {
                "status" if !v.is_empty() => {
                    filter.status = Some(v.parse::<Status>().map_err(|e| ApiError::bad_request(format!("status: {e}")))?)
                }
                "recipient" if !v.is_empty() => filter.recipient = Some(v),
                "page_token" if !v.is_empty() => {
                    if !store::is_valid_page_token(&v) {
                        return Err(ApiError::bad_request("page_token: not a token this service issued"));
                    }
                    token = Some(v);
                }
                "limit" => {
                    limit = match v.parse::<usize>() {
                        Ok(n @ 1..=500) => n,
                        _ => return Err(ApiError::bad_request("limit: expected a number from 1 to 500")),
                    }
                }
                "status" | "recipient" | "page_token" => {}
                other => return Err(ApiError::bad_request(format!("unknown query parameter {other:?}; expected status, recipient, page_token, limit"))),
            }
        }
        let page = self.store.list(&filter, token.as_deref(), limit).await?;
        Ok(reply(
            StatusCode::OK,
            &json!({"messages": page.messages, "next_page_token": page.next_page_token}),
        ))
    }

    async fn retry(&self, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        match self.store.requeue(id, SystemTime::now()).await? {
            Requeue::Requeued => {
                self.wake.notify_one();
                Ok(reply(
                    StatusCode::OK,
                    &json!({"id": id, "status": "queued"}),
                ))
            }
            Requeue::NotFound => Err(ApiError::not_found(format!("no message with id {id:?}"))),
            Requeue::NotFinal(s) => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the message is {}; only abandoned or cancelled messages can be retried",
                    s.as_str()
                ),
            )),
        }
    }

    async fn metrics(&self) -> Result<Response<Full<Bytes>>, ApiError> {
        let stats = self.store.stats().await?;
        let text = self.metrics.render(&stats);
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        Ok(r)
    }
}

/// One message or an array of them, in either key style; errors name the element and the problem.
/// The answer to an accepted POST /messages.
fn accepted_body(ids: &[String], single: bool) -> Value {
    match ids.first() {
        Some(first) if single => json!({"id": first, "ids": ids}),
        _ => json!({"ids": ids}),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn parse_messages(body: &[u8]) -> Result<(Vec<Message>, bool), String> {
    // Fast path: straight into messages. Only a failure pays for the element-by-element pass
    // that names the offending element.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let fast = match first {
        Some(b'[') => serde_json::from_slice::<Vec<Message>>(body)
            .ok()
            .map(|v| (v, false)),
        Some(b'{') => serde_json::from_slice::<Message>(body)
            .ok()
            .map(|m| (vec![m], true)),
        _ => None,
    };
    if let Some((messages, single)) = fast {
        if let Some(i) = messages.iter().position(|m| m.recipient.trim().is_empty()) {
            let at = if single {
                String::new()
            } else {
                format!("messages[{i}].")
            };
            return Err(format!("{at}recipient: must not be empty"));
        }
        return Ok((messages, single));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let check = |m: Message, at: &str| -> Result<Message, String> {
        if m.recipient.trim().is_empty() {
            return Err(format!("{at}recipient: must not be empty"));
        }
        Ok(m)
    };
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Message::deserialize(v)
                    .map_err(|e| format!("messages[{i}]: {e}"))
                    .and_then(|m| check(m, &format!("messages[{i}].")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| (v, false)),
        Value::Object(_) => Message::deserialize(value)
            .map_err(|e| format!("invalid message: {e}"))
            .and_then(|m| check(m, ""))
            .map(|m| (vec![m], true)),
        _ => Err("expected a message object or an array of messages".into()),
    }
}

/// `a=1&b=x+y` → pairs, percent-decoded.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding of a query or form component (`+` is a space); bad escapes stay as they are.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

    #[test]
    fn query_decoding() {
        assert_eq!(
            form_pairs("recipient=a%2Bb%40example.com&status=sent&x=1+2&bad=%zz"),
            vec![
                ("recipient".into(), "a+b@example.com".into()),
                ("status".into(), "sent".into()),
                ("x".into(), "1 2".into()),
                ("bad".into(), "%zz".into())
            ]
        );
    }

    #[test]
    fn tokens_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn parse_errors_name_the_element() {
        let e = parse_messages(br#"[{"recipient":"a@b.c","template_type":"stub"},{"recipient":"a@b.c","template_type":"nope"}]"#).unwrap_err();
        assert!(e.starts_with("messages[1]: unknown variant `nope`"), "{e}");
        let e = parse_messages(br#"{"template_type":"stub"}"#).unwrap_err();
        assert!(e.contains("missing field `recipient`"), "{e}");
        let e = parse_messages(br#"{"recipient":" ","template_type":"stub"}"#).unwrap_err();
        assert_eq!(e, "recipient: must not be empty");
        let e = parse_messages(b"{oops").unwrap_err();
        assert!(
            e.starts_with("malformed JSON: key must be a string at line 1 column 2"),
            "{e}"
        );
    }
}
