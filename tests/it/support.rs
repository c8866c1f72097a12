//! A scriptable HTTP server on 127.0.0.1 that records every request it receives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A request as the server saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[allow(dead_code)]
impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the server does with a request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Close the connection without answering.
    pub drop: bool,
}

#[allow(dead_code)]
impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::default()
        }
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }
    pub fn dropped() -> Reply {
        Reply {
            drop: true,
            ..Reply::default()
        }
    }
}

type Responder = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

/// The running server. Dropping it stops accepting connections.
pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[allow(dead_code)]
impl Server {
    /// Starts a server answering the n-th request (0-based) with `respond(n, request)`.
    pub async fn start(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let respond: Arc<Responder> = Arc::new(respond);
        let (recorded, conns) = (Arc::clone(&requests), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let recorded = Arc::clone(&recorded);
                let respond = Arc::clone(&respond);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        let respond = Arc::clone(&respond);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let rec = Recorded {
                                method: parts.method,
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map_or("/".into(), |p| p.to_string()),
                                headers: parts.headers,
                                body,
                            };
                            let n = {
                                let mut all = recorded.lock().unwrap();
                                all.push(rec.clone());
                                all.len() - 1
                            };
                            let reply = respond(n, &rec);
                            if let Some(d) = reply.delay {
                                tokio::time::sleep(d).await;
                            }
                            if reply.drop {
                                return Err(std::io::Error::other("dropped on purpose"));
                            }
                            let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
                            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                            for (k, v) in reply.headers {
                                resp.headers_mut().insert(
                                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, std::io::Error>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            requests,
            connections,
            task,
        }
    }

    /// A server that answers every request with `status`.
    pub async fn status(status: u16) -> Server {
        Server::start(move |_, _| Reply::status(status)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn request(&self, n: usize) -> Recorded {
        self.requests.lock().unwrap()[n].clone()
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
