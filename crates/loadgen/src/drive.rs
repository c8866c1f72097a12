//! Driving a fixed number of jobs at a fixed concurrency, and the ceiling to compare a delivery
//! path with: a bare hyper client posting one payload.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunStats {
    /// Jobs completed.
    pub count: u64,
    /// Of which failed.
    pub failed: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
    /// Median latency per job, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

pub(crate) fn stats(mut latencies_us: Vec<u32>, failed: u64, elapsed: Duration) -> RunStats {
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
pub async fn drive<F, Fut>(
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
    job: F,
) -> RunStats
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
