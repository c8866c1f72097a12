//! The API's connections under abuse limits: at most `max_connections` open at once (past it a
//! new connection is answered 503 and closed, the open ones carry on), and a request head within
//! `header_read_timeout`. HTTP/1 heads and idle keep-alive connections are hyper's timer; the
//! first request is also timed here, because the HTTP/2 detection reads before that timer starts;
//! an HTTP/2 connection with no request in flight for that long is closed here (hyper has no such
//! timer for HTTP/2). The body deadline is the handlers' ([`super::api::body`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::settings::ServeSettings;
use crate::metrics::Metrics;

/// Refused connections drained at once (so their clients read the 503 rather than a reset);
/// past it a refused connection is closed straight away.
const LINGERING: usize = 64;
/// How long a refused connection is drained before it is closed.
const LINGER: Duration = Duration::from_secs(1);

/// Admits, serves and refuses API connections.
pub(crate) struct Connections {
    slots: Arc<Semaphore>,
    lingering: Arc<Semaphore>,
    header_read_timeout: Duration,
    metrics: Arc<Metrics>,
    builder: auto::Builder<TokioExecutor>,
    /// The whole answer to a connection over the cap.
    refusal: Bytes,
}

impl Connections {
    /// The limits of `settings`, counted in `metrics`.
    pub(crate) fn new(settings: &ServeSettings, metrics: Arc<Metrics>) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout);
        Self {
            slots: Arc::new(Semaphore::new(settings.max_connections)),
            lingering: Arc::new(Semaphore::new(LINGERING)),
            header_read_timeout: settings.header_read_timeout,
            metrics,
            builder,
            refusal: refusal(settings.max_connections),
        }
    }

    /// Serves `stream` with `handle` if a slot is free (watched by `graceful`), else refuses it.
    pub(crate) fn admit<H, F>(&self, stream: TcpStream, graceful: &GracefulShutdown, handle: H)
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.metrics.api_connection_refused();
            self.refuse(stream);
            return;
        };
        let slot = Slot::new(permit, Arc::clone(&self.metrics));
        let _ = stream.set_nodelay(true);
        let first_request = Arc::new(Notify::new());
        let activity = Arc::new(Activity::new());
        let (seen, active) = (Arc::clone(&first_request), Arc::clone(&activity));
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            seen.notify_one();
            let request = active.begin(req.version() == hyper::Version::HTTP_2);
            let answer = handle(req);
            async move {
                let answer = answer.await;
                drop(request);
                Ok::<_, Infallible>(answer)
            }
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        let deadline = self.header_read_timeout;
        tokio::spawn(async move {
            let mut watched = std::pin::pin!(watched);
            let ended = tokio::select! {
                ended = &mut watched => Some(ended),
                () = first_request.notified() => None,
                () = tokio::time::sleep(deadline) => {
                    slot.metrics.api_timeout(true);
                    return;
                }
            };
            let ended = match ended {
                Some(ended) => ended,
                None if activity.http2.load(Ordering::Relaxed) => {
                    // Checked a few times per period: closed between 1 and 1.25 periods idle.
                    let mut every =
                        tokio::time::interval((deadline / 4).max(Duration::from_millis(1)));
                    loop {
                        tokio::select! {
                            ended = &mut watched => break ended,
                            _ = every.tick() => if activity.idle_for() >= deadline {
                                slot.metrics.api_timeout(true);
                                return;
                            },
                        }
                    }
                }
                None => watched.await,
            };
            if let Err(e) = ended {
                if e.downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout)
                {
                    slot.metrics.api_timeout(true);
                }
            }
        });
    }

    /// Writes the 503 and closes `stream`, draining what the client sends for a moment first
    /// when few refusals are in progress (closing on unread data would reset the connection
    /// and could lose the answer).
    fn refuse(&self, stream: TcpStream) {
        // A fresh socket's send buffer takes the whole answer without waiting.
        let _ = stream.try_write(&self.refusal);
        let Ok(permit) = Arc::clone(&self.lingering).try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            let _ = stream.shutdown().await;
            let mut buf = [0u8; 4096];
            let drain = async {
                let mut total = 0usize;
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    total += n;
                    if total > 64 * 1024 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }
}

/// Requests in flight on a connection and when the last one ended, for the HTTP/2 idle check.
struct Activity {
    base: Instant,
    http2: AtomicBool,
    in_flight: AtomicUsize,
    /// Nanoseconds from `base` to the end of the last request.
    last_end: AtomicU64,
}

/// A request in flight on a connection (ends when dropped).
struct InFlight(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            http2: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>, http2: bool) -> InFlight {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// How long no request has been in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_nanos(self.last_end.load(Ordering::Acquire));
        self.base.elapsed().saturating_sub(last)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last_end.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open connection's place under the cap, counted in the connections gauge while it lives.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics.api_connections(1);
        Self {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.api_connections(-1);
    }
}

/// The 503 answer to a connection over the cap, with the API's JSON error body.
fn refusal(max_connections: usize) -> Bytes {
    let body = serde_json::json!({"error": {
        "code": 503,
        "status": "Service Unavailable",
        "reason": format!("too many connections (max_connections is {max_connections}); retry shortly"),
    }})
    .to_string();
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
}
