//! [`Sink`]: an HTTP/1.1 and HTTP/2 server on a loopback port that answers each request with a
//! scripted [`Reply`] and, when asked, records it.

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

/// A request as the sink saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Every header as received.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Recorded {
    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the sink does with a request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The status (an invalid one answers 500).
    pub status: u16,
    /// Headers to send (invalid ones are left out).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Close the connection without answering.
    pub drop: bool,
}

impl Reply {
    /// An empty answer with `status`.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::default()
        }
    }

    /// With `body`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// With header `k: v`.
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Answered after `d`.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    /// No answer: the connection is closed.
    pub fn dropped() -> Reply {
        Reply {
            drop: true,
            ..Reply::default()
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(self.body)));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                v.parse(),
            ) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

/// Whether a sink keeps the requests it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Keep every request in [`Sink::requests`] (tests).
    All,
    /// Only count them (load runs: memory stays flat).
    Count,
}

type Responder = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

/// The running sink. Dropping it stops accepting connections.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The requests received, in order (with [`Record::All`]).
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// A recording sink on an ephemeral loopback port answering the n-th request (0-based) with
    /// `respond(n, request)`.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn scripted(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Sink> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Record::All, respond).await
    }

    /// A counting sink on an ephemeral loopback port answering `200` with no body.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn ok() -> std::io::Result<Sink> {
        Self::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Record::Count,
            |_, _| Reply::status(200),
        )
        .await
    }

    /// A sink on `addr`, recording as `record` says, answering with `respond`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        record: Record,
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State {
            respond: Box::new(respond),
            record,
            requests: Arc::clone(&requests),
            answered: Arc::clone(&answered),
        });
        let conns = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                conns.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = Arc::clone(&state);
                        async move { state.answer(req).await }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Sink {
            addr,
            requests,
            connections,
            answered,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// The n-th recorded request (0-based), when there is one.
    pub fn get(&self, n: usize) -> Option<Recorded> {
        self.requests.lock().ok()?.get(n).cloned()
    }
}

struct State {
    respond: Box<Responder>,
    record: Record,
    requests: Arc<Mutex<Vec<Recorded>>>,
    answered: Arc<AtomicUsize>,
}

impl State {
    async fn answer(&self, req: Request<Incoming>) -> std::io::Result<Response<Full<Bytes>>> {
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
        // Numbered and recorded in one step, so request n is `requests[n]`.
        let n = match self.record {
            Record::All => {
                let mut all = self
                    .requests
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                all.push(rec.clone());
                self.answered.fetch_add(1, Ordering::SeqCst)
            }
            Record::Count => self.answered.fetch_add(1, Ordering::SeqCst),
        };
        let reply = (self.respond)(n, &rec);
        if let Some(d) = reply.delay {
            tokio::time::sleep(d).await;
        }
        if reply.drop {
            return Err(std::io::Error::other("dropped on purpose"));
        }
        Ok(reply.into_response())
    }
}
