//! Test support: the scriptable loopback sink (from `courier-loadgen`) as the tests start it, a
//! small HTTP client for the service API, and bounded waiting.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;

pub use courier_loadgen::{Recorded, Reply, Sink as Server};

/// The scripted sink as the tests start it: on an ephemeral loopback port, recording.
pub trait Start: Sized {
    /// Answers the n-th request (0-based) with `respond(n, request)`.
    fn start(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> impl std::future::Future<Output = Self>;
    /// Answers every request with `status`.
    fn status(status: u16) -> impl std::future::Future<Output = Self>;
    /// The n-th request received.
    fn request(&self, n: usize) -> Recorded;
}

impl Start for Server {
    async fn start(respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Server::scripted(respond)
            .await
            .expect("bind a loopback port")
    }
    async fn status(status: u16) -> Self {
        Server::scripted(move |_, _| Reply::status(status))
            .await
            .expect("bind a loopback port")
    }
    fn request(&self, n: usize) -> Recorded {
        self.get(n).unwrap_or_else(|| panic!("no request #{n}"))
    }
}

// ---------------------------------------------------------------------------------------------
// A small HTTP client for talking to `courier serve`, and bounded waiting.

/// A response as a client saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[allow(dead_code)]
impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON; panics (showing the body) when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on a fresh connection to `addr` (127.0.0.1); at most 30 s. `body` is sent with
/// a Content-Length unless `chunked`, then in 1 KiB chunks without one. Panics on any failure.
#[allow(dead_code)]
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    chunked: bool,
) -> HttpReply {
    try_http_request(addr, method, path, headers, body, chunked)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`http_request`], but a connection failure, a broken connection or no answer within
/// 30 s is an error, not a panic.
#[allow(dead_code)]
pub async fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    chunked: bool,
) -> Result<HttpReply, String> {
    use http_body_util::Either;
    let body: Bytes = body.into();
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string());
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req_body = if chunked {
            let chunks: Vec<Bytes> = body.chunks(1024).map(Bytes::copy_from_slice).collect();
            Either::Right(Chunks(chunks.into_iter()))
        } else {
            Either::Left(Full::new(body))
        };
        let resp = sender
            .send_request(builder.body(req_body).unwrap())
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
        Ok(HttpReply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .map_err(|_| format!("{method} {path}: no answer within 30 s"))?
}

/// A body of ready chunks with no known length: sent chunked.
pub struct Chunks(std::vec::IntoIter<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.next().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// `GET path` with optional extra headers.
#[allow(dead_code)]
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpReply {
    http_request(addr, "GET", path, headers, Bytes::new(), false).await
}

/// `POST path` with a JSON body.
#[allow(dead_code)]
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> HttpReply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    http_request(addr, "POST", path, &all, body, false).await
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`; panics naming `what`
/// otherwise.
#[allow(dead_code)]
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `f` to completion, catching a panic in it (for clean-up before passing the panic on);
/// unlike `tokio::spawn`, `f` need not be `Send`.
#[allow(dead_code)]
pub async fn catch_unwind<F: std::future::Future>(
    f: F,
) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    })
    .await
}
