//! Load generation for honest throughput figures: an in-process HTTP sink on 127.0.0.1, our full
//! render-and-deliver path driven at a fixed concurrency, and the ceiling to compare it with: a
//! bare hyper client posting one pre-rendered payload to the same sink at the same concurrency.
//! Used by `courier bench` and by `benches/deliver.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::delivery::{Courier, Outcome};
use crate::message::Message;

/// An HTTP server on 127.0.0.1 that reads each request body and answers `200` with no body.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Starts a sink on an ephemeral loopback port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let counter = Arc::clone(&counter);
                            async move {
                                let _ = req.into_body().collect().await;
                                counter.fetch_add(1, Ordering::Relaxed);
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Empty::<
                                    Bytes,
                                >::new(
                                )))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Sink {
            addr,
            requests,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunStats {
    /// Requests (or messages) completed.
    pub count: u64,
    /// Of which failed (not delivered / not 2xx).
    pub failed: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
    /// Median latency per message, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

fn stats(mut latencies_us: Vec<u32>, failed: u64, elapsed: Duration) -> RunStats {
    latencies_us.sort_unstable();
    let pct = |p: f64| {
        if latencies_us.is_empty() {
            0.0
        } else {
            let i =
                ((latencies_us.len() as f64 * p).ceil() as usize).clamp(1, latencies_us.len()) - 1;
            f64::from(latencies_us[i]) / 1000.0
        }
    };
    let count = latencies_us.len() as u64;
    RunStats {
        count,
        failed,
        seconds: elapsed.as_secs_f64(),
        per_second: count as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// Runs `total` jobs with `concurrency` tasks; `job(i)` returns whether job `i` succeeded.
/// `progress` counts completed jobs as they finish.
async fn drive<F, Fut>(total: u64, concurrency: usize, progress: Arc<AtomicU64>, job: F) -> RunStats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (job, next, failed, progress) =
            (job.clone(), next.clone(), failed.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break lat;
                }
                let t = Instant::now();
                if !job(i).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut all = Vec::with_capacity(total as usize);
    for t in tasks {
        if let Ok(lat) = t.await {
            all.extend(lat);
        }
    }
    stats(
        all,
        failed.load(Ordering::Relaxed) as u64,
        started.elapsed(),
    )
}

/// Delivers `total` messages (cycling through `messages`) through `courier` with `concurrency`
/// in flight: the whole path, ctx to rendered payload to HTTP response.
pub async fn run_courier(
    courier: Arc<Courier>,
    messages: Arc<Vec<Message>>,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    drive(total, concurrency, progress, move |i| {
        let (courier, messages) = (courier.clone(), messages.clone());
        async move {
            let msg = &messages[(i as usize) % messages.len()];
            courier.deliver(msg).await.outcome == Outcome::Delivered
        }
    })
    .await
}

/// The ceiling: a bare pooled hyper client posting `payload` to `url` `total` times with
/// `concurrency` in flight.
pub async fn run_ceiling(
    url: &str,
    payload: Bytes,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    // Same socket options as our client (TCP_NODELAY), so the comparison is like for like.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let uri: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(_) => return stats(Vec::new(), total, Duration::ZERO),
    };
    drive(total, concurrency, progress, move |_| {
        let (client, uri, payload) = (client.clone(), uri.clone(), payload.clone());
        async move {
            let req = hyper::Request::post(uri)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(payload));
            let Ok(req) = req else { return false };
            match client.request(req).await {
                Ok(resp) => {
                    let ok = resp.status().is_success();
                    let _ = resp.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            }
        }
    })
    .await
}
