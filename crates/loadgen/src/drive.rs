//! Driving a fixed number of jobs at a fixed concurrency, and the ceiling to compare a delivery
//! path with: a bare hyper client posting pre-rendered payloads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
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

/// The raw figures of runs, kept so that several runs (rounds) add up to one [`RunStats`].
#[derive(Debug, Clone, Default)]
pub struct Run {
    latencies_us: Vec<u32>,
    failed: u64,
    elapsed: Duration,
}

impl Run {
    /// This run's figures.
    pub fn stats(&self) -> RunStats {
        stats(self.latencies_us.clone(), self.failed, self.elapsed)
    }

    /// Adds `other`'s jobs and time to this one.
    pub fn merge(&mut self, other: Run) {
        self.latencies_us.extend(other.latencies_us);
        self.failed += other.failed;
        self.elapsed += other.elapsed;
    }
}

/// How many completed jobs a task counts before adding them to the shared progress counter:
/// one shared atomic per job would bounce its cache line between the cores on every job.
const PROGRESS_BATCH: u64 = 64;

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
    drive_run(total, concurrency, progress, job).await.stats()
}

/// [`drive`], returning the raw figures (to [`Run::merge`] rounds).
pub async fn drive_run<F, Fut>(
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
    job: F,
) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    drive_run_with(
        total,
        concurrency,
        progress,
        || (),
        move |(), i| {
            let done = job(i);
            async move { ((), done.await) }
        },
    )
    .await
}

/// [`drive_run`] where each of the `concurrency` tasks has a state of its own, made by `init`,
/// that its jobs take and hand back: `job(state, i)` returns the state and whether job `i`
/// succeeded. A load generator keeps buffers there that it would otherwise allocate per job.
pub async fn drive_run_with<S, I, F, Fut>(
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
    init: I,
    job: F,
) -> Run
where
    S: Send + 'static,
    I: Fn() -> S,
    F: Fn(S, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (S, bool)> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let tasks_n = concurrency.max(1);
    let per_task = (total as usize).div_ceil(tasks_n) + 1;
    // The states are made inside the measured time: they are the load generator's work.
    let started = Instant::now();
    let states: Vec<S> = (0..tasks_n).map(|_| init()).collect();
    let mut tasks = Vec::with_capacity(tasks_n);
    for mut state in states {
        let (job, next, failed, progress) =
            (job.clone(), next.clone(), failed.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            let mut unreported = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    progress.fetch_add(unreported, Ordering::Relaxed);
                    break lat;
                }
                let t = Instant::now();
                let (back, ok) = job(state, i).await;
                state = back;
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                unreported += 1;
                if unreported == PROGRESS_BATCH {
                    progress.fetch_add(unreported, Ordering::Relaxed);
                    unreported = 0;
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(total as usize);
    for t in tasks {
        if let Ok(lat) = t.await {
            all.extend(lat);
        }
    }
    Run {
        latencies_us: all,
        failed: failed.load(Ordering::Relaxed) as u64,
        elapsed: started.elapsed(),
    }
}

/// The ceiling: a bare pooled hyper client posting pre-rendered payloads to one URL. Its pool
/// lives as long as it does, so rounds after the first reuse their connections, as a courier's
/// client does.
#[derive(Clone)]
pub struct Ceiling {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
    payloads: Arc<Vec<Bytes>>,
}

impl Ceiling {
    /// A client for `url`; job `i` posts `payloads[i % len]` (an empty list posts empty bodies).
    ///
    /// # Errors
    /// `url` is not a valid URI.
    pub fn new(url: &str, payloads: Vec<Bytes>) -> Result<Ceiling, hyper::http::uri::InvalidUri> {
        // Same socket options as our client (TCP_NODELAY), so the comparison is like for like.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let payloads = if payloads.is_empty() {
            vec![Bytes::new()]
        } else {
            payloads
        };
        Ok(Ceiling {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri: url.parse()?,
            payloads: Arc::new(payloads),
        })
    }

    /// Posts `total` payloads with `concurrency` in flight.
    pub async fn run(&self, total: u64, concurrency: usize, progress: Arc<AtomicU64>) -> Run {
        let this = self.clone();
        drive_run(total, concurrency, progress, move |i| {
            let this = this.clone();
            async move { this.post(i).await }
        })
        .await
    }

    async fn post(&self, i: u64) -> bool {
        let payload = self.payloads[(i as usize) % self.payloads.len()].clone();
        let req = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload));
        let Ok(req) = req else { return false };
        match self.client.request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                ok
            }
            Err(_) => false,
        }
    }
}

/// The ceiling once: a fresh bare pooled hyper client posting `payload` to `url` `total` times
/// with `concurrency` in flight.
pub async fn run_ceiling(
    url: &str,
    payload: Bytes,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    match Ceiling::new(url, vec![payload]) {
        Ok(c) => c.run(total, concurrency, progress).await.stats(),
        Err(_) => stats(Vec::new(), total, Duration::ZERO),
    }
}
