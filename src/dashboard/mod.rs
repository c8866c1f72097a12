//! The operator's dashboard and the template playground, served by `courier serve` under `/ui/`
//! (and `/openapi.json`), behind the API's tokens.
//!
//! - [`pages`]: the message list and detail pages, the login page, the shared layout.
//! - [`overview`] and [`charts`]: the last hour as SVG charts, from [`recent`]'s ring.
//! - [`playground`]: render a template against samples as you type, and the check table.
//! - [`openapi`]: the JSON API's OpenAPI document.
//!
//! Pages are HTML rendered on the server (maud); the small CSS and JS in `assets/` are compiled
//! in. Reading works without JavaScript. With API tokens configured, a browser logs in once per
//! session: the login form checks a token and sets an HttpOnly, SameSite=Strict session cookie
//! holding a random session id (never the token). API clients may send `Authorization: Bearer`.

mod auth;
pub mod charts;
pub mod openapi;
mod overview;
mod pages;
mod playground;
pub mod recent;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{watch, Notify};

use crate::config::settings::ServeSettings;
use crate::delivery::Courier;
use crate::metrics::Metrics;
use crate::service::api::decode;
use crate::store::{MessageStore, Status};

pub use recent::Recent;

/// Whether the dashboard answers `path` (everything else is the JSON API's).
pub fn serves(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/") || path == "/openapi.json"
}

/// The dashboard's state: what the pages read and the retry button and playground use.
pub struct Dashboard {
    store: Arc<dyn MessageStore>,
    courier: Arc<Courier>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    auth: auth::Auth,
}

/// How often the queue gauges are read from the store for the overview.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

impl Dashboard {
    /// The dashboard of a running service; starts the queue sampler, which ends at `shutdown`.
    pub fn new(
        store: Arc<dyn MessageStore>,
        courier: Arc<Courier>,
        metrics: Arc<Metrics>,
        settings: &ServeSettings,
        wake: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        tokio::spawn(sample_queue(
            Arc::clone(&store),
            Arc::clone(&metrics),
            shutdown,
        ));
        Self {
            store,
            courier,
            metrics,
            wake,
            max_body_bytes: settings.max_body_bytes,
            body_read_timeout: settings.body_read_timeout,
            auth: auth::Auth::new(settings.tokens.clone()),
        }
    }

    /// Answers one request for a path [`serves`] accepts.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let method = req.method().clone();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // Open: the login page, its assets, and the way there.
        match (&method, segments.as_slice()) {
            (&Method::GET, []) => return redirect("/ui/", None),
            (&Method::GET, ["ui", "assets", name]) => return asset(name),
            (&Method::GET, ["ui", "login"]) => {
                return html(
                    StatusCode::OK,
                    pages::login(&query_value(&query, "next"), None),
                )
            }
            (&Method::POST, ["ui", "login"]) => return self.login(req).await,
            _ => {}
        }
        if method == Method::POST && !same_origin(&req) {
            return text(StatusCode::FORBIDDEN, "cross-origin form posts are refused");
        }
        let session = match self.auth.check(req.headers()) {
            auth::Check::Allowed(session) => session,
            auth::Check::Denied if method == Method::GET && segments.first() == Some(&"ui") => {
                let back = if query.is_empty() {
                    path.clone()
                } else {
                    format!("{path}?{query}")
                };
                return redirect(&format!("/ui/login?next={}", encode(&back)), None);
            }
            auth::Check::Denied => {
                return json(
                    StatusCode::UNAUTHORIZED,
                    &serde_json::json!({"error": {"code": 401, "status": "Unauthorized",
                        "reason": "log in at /ui/login or send Authorization: Bearer <token>"}}),
                )
            }
        };
        let ctx = pages::PageCtx { logged_in: session };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["openapi.json"]) => json(StatusCode::OK, &openapi::document()),
            (&Method::GET, ["ui"]) => self.list_page(&ctx, &query).await,
            (&Method::GET, ["ui", "messages", id]) => self.detail_page(&ctx, id).await,
            (&Method::POST, ["ui", "messages", id, "retry"]) => self.retry(id).await,
            (&Method::GET, ["ui", "overview"]) => self.overview_page(&ctx).await,
            (&Method::GET, ["ui", "playground"]) => {
                html(StatusCode::OK, playground::page(&ctx, &self.courier))
            }
            (&Method::POST, ["ui", "playground", action]) => {
                let body = match self.read_body(req, self.max_body_bytes).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                playground::answer(&self.courier, action, &body).await
            }
            (&Method::POST, ["ui", "logout"]) => {
                self.auth.logout(req.headers());
                redirect("/ui/login", Some(auth::CLEAR_COOKIE))
            }
            _ => html(
                StatusCode::NOT_FOUND,
                pages::problem(&ctx, "Not found", &format!("Nothing at {method} {path}.")),
            ),
        }
    }

    /// The body of `req` under `limit` bytes and the body deadline; a JSON 413, 408 or 400 if not.
    async fn read_body(
        &self,
        req: Request<Incoming>,
        limit: usize,
    ) -> Result<Bytes, Response<Full<Bytes>>> {
        use crate::service::api::body::{self, BodyError};
        let (status, reason) =
            match body::read(req.into_body(), limit, self.body_read_timeout).await {
                Ok(b) => return Ok(b),
                Err(BodyError::TooLarge(n)) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {n} bytes"),
                ),
                Err(BodyError::TimedOut(d)) => {
                    self.metrics.api_timeout(false);
                    (
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request body did not arrive within {}",
                            humantime::format_duration(d)
                        ),
                    )
                }
                Err(BodyError::Broken(e)) => (
                    StatusCode::BAD_REQUEST,
                    format!("reading the body failed: {e}"),
                ),
            };
        Err(json(
            status,
            &serde_json::json!({"error": {"reason": reason}}),
        ))
    }

    async fn login(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match self.read_body(req, 16 * 1024).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let form = String::from_utf8_lossy(&body);
        let token = query_value(&form, "token");
        let next = safe_next(&query_value(&form, "next"));
        match self.auth.login(token.trim()) {
            Some(cookie) => redirect(&next, Some(&cookie)),
            None => html(
                StatusCode::UNAUTHORIZED,
                pages::login(
                    &next,
                    Some("That token is not one of this service's API tokens."),
                ),
            ),
        }
    }

    async fn list_page(&self, ctx: &pages::PageCtx, query: &str) -> Response<Full<Bytes>> {
        let params = pages::ListParams::parse(query);
        let filter = match params.filter() {
            Ok(f) => f,
            Err(reason) => {
                return html(
                    StatusCode::BAD_REQUEST,
                    pages::problem(ctx, "Bad filter", &reason),
                )
            }
        };
        let page = self
            .store
            .list(&filter, params.page_token.as_deref(), pages::PAGE_SIZE)
            .await;
        let stats = self.store.stats().await;
        match (page, stats) {
            (Ok(page), Ok(stats)) => {
                let channels: Vec<String> = self
                    .courier
                    .config()
                    .channels
                    .iter()
                    .map(|c| c.id.clone())
                    .collect();
                html(
                    StatusCode::OK,
                    pages::list(ctx, &params, &page, &stats, &channels),
                )
            }
            (Err(e), _) | (_, Err(e)) => self.store_problem(ctx, &e),
        }
    }

    async fn detail_page(&self, ctx: &pages::PageCtx, id: &str) -> Response<Full<Bytes>> {
        let id = decode(id);
        match self.store.get(&id).await {
            Ok(Some(m)) => {
                let preview = playground::preview(&self.courier, &m.message).await;
                html(
                    StatusCode::OK,
                    pages::detail(ctx, &m, &preview, &self.courier),
                )
            }
            Ok(None) => html(
                StatusCode::NOT_FOUND,
                pages::problem(ctx, "Not found", &format!("No message with id {id:?}.")),
            ),
            Err(e) => self.store_problem(ctx, &e),
        }
    }

    /// The retry button: the API's retry operation, then back to the detail page.
    async fn retry(&self, id: &str) -> Response<Full<Bytes>> {
        let id = decode(id);
        let back = format!("/ui/messages/{}", encode(&id));
        match self.store.requeue(&id, SystemTime::now()).await {
            Ok(crate::store::Requeue::Requeued) => {
                self.wake.notify_one();
                redirect(&format!("{back}?retried=1"), None)
            }
            Ok(crate::store::Requeue::NotFound) => {
                text(StatusCode::NOT_FOUND, &format!("no message with id {id:?}"))
            }
            Ok(crate::store::Requeue::NotFinal(s)) => text(
                StatusCode::CONFLICT,
                &format!(
                    "the message is {}; only abandoned or cancelled messages can be retried",
                    s.as_str()
                ),
            ),
            Err(e) => {
                tracing::error!("store error: {e}");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable; try again",
                )
            }
        }
    }

    async fn overview_page(&self, ctx: &pages::PageCtx) -> Response<Full<Bytes>> {
        let stats = match self.store.stats().await {
            Ok(s) => s,
            Err(e) => return self.store_problem(ctx, &e),
        };
        record_queue(&self.metrics, &stats);
        let hour = self.metrics.recent().hour(SystemTime::now());
        html(StatusCode::OK, overview::page(ctx, &stats, &hour))
    }

    fn store_problem(
        &self,
        ctx: &pages::PageCtx,
        e: &crate::store::StoreError,
    ) -> Response<Full<Bytes>> {
        tracing::error!("store error: {e}");
        html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::problem(
                ctx,
                "Store unavailable",
                "The store did not answer; reload to try again.",
            ),
        )
    }
}

async fn sample_queue(
    store: Arc<dyn MessageStore>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Ok(stats) = store.stats().await {
            record_queue(&metrics, &stats);
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn record_queue(metrics: &Metrics, stats: &crate::store::StoreStats) {
    let depth = stats
        .by_status
        .iter()
        .find(|(s, _)| *s == Status::Queued)
        .map_or(0, |(_, n)| *n);
    let age = stats
        .oldest_queued_at
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    metrics.recent().queue(depth, age);
}

/// Form posts and playground calls must come from the dashboard's own pages: a browser names
/// the page's origin in `Origin`, which must match the `Host` it talks to.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        // Not a browser (or an old one): the session cookie is SameSite=Strict anyway.
        return true;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && origin_host == host
}

/// Only local paths under `/ui/`: a login link cannot send the browser elsewhere.
fn safe_next(next: &str) -> String {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        "/ui/".to_owned()
    }
}

const CSS: &str = include_str!("assets/dash.css");
const JS: &str = include_str!("assets/dash.js");

fn asset(name: &str) -> Response<Full<Bytes>> {
    let (body, kind) = match name {
        "dash.css" => (CSS, "text/css; charset=utf-8"),
        "dash.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return text(StatusCode::NOT_FOUND, "no such asset"),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn html(status: StatusCode, page: maud::Markup) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(page.into_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Only our own compiled-in script and style; no framing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn redirect(to: &str, cookie: Option<&str>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// The first value of `key` in a query string or form body, percent-decoded ("" when absent).
fn query_value(query: &str, key: &str) -> String {
    query
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| decode(k) == key)
        .map(|(_, v)| decode(v))
        .unwrap_or_default()
}

/// Percent-encoding for a query value or path segment: everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_and_encoding() {
        for p in ["/", "/ui", "/ui/", "/ui/messages/x", "/openapi.json"] {
            assert!(serves(p), "{p}");
        }
        for p in ["/messages", "/uix", "/metrics", "/health/alive"] {
            assert!(!serves(p), "{p}");
        }
        assert_eq!(decode("a%2Fb+c%"), "a/b c%");
        assert_eq!(decode("%e2%9c%93"), "✓");
        assert_eq!(encode("/ui/?a=b&c ✓"), "%2Fui%2F%3Fa%3Db%26c%20%E2%9C%93");
        assert_eq!(query_value("x=1&next=%2Fui%2Fm&token=a+b", "token"), "a b");
        assert_eq!(query_value("x", "next"), "");
        assert_eq!(safe_next("/ui/messages/1"), "/ui/messages/1");
        for bad in [
            "https://evil.test/",
            "//evil.test",
            "/metrics",
            "/ui/\\evil",
        ] {
            assert_eq!(safe_next(bad), "/ui/", "{bad}");
        }
    }
}
