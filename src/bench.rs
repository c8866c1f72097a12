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
        Self::serve(SocketAddr::from(([127, 0, 0, 1], 0)), |_| {}).await
    }

    /// Starts a sink on `addr` that hands every request body to `on_body` before answering.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn serve(
        addr: SocketAddr,
        on_body: impl Fn(Bytes) + Send + Sync + 'static,
    ) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let on_body = Arc::new(on_body);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (counter, on_body) = (Arc::clone(&counter), Arc::clone(&on_body));
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let (counter, on_body) = (Arc::clone(&counter), Arc::clone(&on_body));
                            async move {
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                on_body(body.unwrap_or_default());
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
pub(crate) async fn drive<F, Fut>(
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

/// A sink that also notes when each recipient's payload arrived, for enqueue-to-delivered
/// latency. The recipient is found in the payload's `"recipient":"..."` field (the default
/// template writes it).
pub struct RecordingSink {
    /// The sink.
    pub sink: Sink,
    /// Arrival times by recipient (first arrival kept; later ones count as duplicates).
    pub arrivals: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
    /// Payloads whose recipient had already arrived.
    pub duplicates: Arc<AtomicU64>,
}

impl RecordingSink {
    /// Starts one on `addr` (`127.0.0.1:0` for an ephemeral port).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(addr: SocketAddr) -> std::io::Result<RecordingSink> {
        let arrivals: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
            Arc::default();
        let duplicates = Arc::new(AtomicU64::new(0));
        let (arr, dups) = (arrivals.clone(), duplicates.clone());
        let sink = Sink::serve(addr, move |body| {
            let now = Instant::now();
            let Some(r) = recipient_of(&body) else { return };
            if let Ok(mut map) = arr.lock() {
                match map.entry(r) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        dups.fetch_add(1, Ordering::Relaxed);
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(now);
                    }
                }
            }
        })
        .await?;
        Ok(RecordingSink {
            sink,
            arrivals,
            duplicates,
        })
    }

    /// Distinct recipients seen.
    pub fn distinct(&self) -> usize {
        self.arrivals.lock().map_or(0, |m| m.len())
    }
}

fn recipient_of(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("\"recipient\":\"")? + "\"recipient\":\"".len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_owned())
}

/// Results of driving a service through its API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceStats {
    /// Messages posted.
    pub messages: u64,
    /// Messages per second acknowledged (202) by the API.
    pub accepted_per_second: f64,
    /// Messages per second delivered, from the first post to the last arrival.
    pub delivered_per_second: f64,
    /// Payloads that arrived more than once.
    pub duplicates: u64,
    /// Messages not delivered within the wait.
    pub missing: u64,
}

/// Latency at a fixed offered rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyStats {
    /// Offered messages per second.
    pub rate: u64,
    /// Messages offered.
    pub messages: u64,
    /// Median enqueue (request sent) to delivered (sink received), milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Worst case.
    pub max_ms: f64,
    /// Messages not delivered within the wait.
    pub missing: u64,
}

/// A message for recipient `to`, as JSON text, based on the `recovery_code_valid` sample.
///
/// Built by splicing `to` into text prepared once: the load generator shares the machine with the
/// service it measures, so it should cost next to nothing.
pub fn bench_message(to: &str) -> String {
    const MARK: &str = "\u{1}RECIPIENT\u{1}";
    static PARTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let parts = PARTS.get_or_init(|| {
        let mut m = crate::message::samples::message(
            crate::message::TemplateType::RecoveryCodeValid,
            crate::message::MessageType::Email,
        )
        .map(|m| serde_json::to_value(m).unwrap_or_default())
        .unwrap_or_default();
        m["recipient"] = serde_json::Value::String(MARK.to_owned());
        m["template_data"]["to"] = serde_json::Value::String(MARK.to_owned());
        if let Some(obj) = m.as_object_mut() {
            obj.remove("id");
        }
        let text = m.to_string();
        let escaped = serde_json::Value::String(MARK.to_owned()).to_string();
        let escaped = &escaped[1..escaped.len() - 1];
        text.split(escaped).map(str::to_owned).collect()
    });
    // Recipients are plain ASCII addresses here, so they need no JSON escaping.
    parts.join(to)
}

type PostClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn post_client() -> PostClient {
    let mut c = hyper_util::client::legacy::connect::HttpConnector::new();
    c.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(c)
}

async fn post(client: &PostClient, url: &str, token: Option<&str>, body: Bytes) -> bool {
    let mut req = hyper::Request::post(url).header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let Ok(req) = req.body(Full::new(body)) else {
        return false;
    };
    match client.request(req).await {
        Ok(resp) => {
            let ok = resp.status() == hyper::StatusCode::ACCEPTED;
            let _ = resp.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

/// A service under test: its API base URL, an optional bearer token, and a recipient prefix that
/// keeps this run's messages apart from any others in the store.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`.
    pub api: String,
    /// Bearer token, when the API needs one.
    pub token: Option<String>,
    /// Prefix of generated recipients (`{prefix}{i}@example.com`).
    pub prefix: String,
}

impl Target {
    /// `{api}/messages`.
    pub fn messages_url(&self) -> String {
        format!("{}/messages", self.api.trim_end_matches('/'))
    }
}

/// Posts `total` messages to the target in arrays of `batch` with `posters` in parallel, then
/// waits (at most `wait`) until `sink` has received all of them.
pub async fn run_service_throughput(
    target: &Target,
    sink: &RecordingSink,
    total: u64,
    batch: usize,
    posters: usize,
    wait: Duration,
) -> ServiceStats {
    let (token, prefix) = (target.token.as_deref(), target.prefix.as_str());
    let client = post_client();
    let url = target.messages_url();
    let before = sink.distinct() as u64;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let batch = batch.max(1) as u64;
    let mut tasks = Vec::new();
    for _ in 0..posters.max(1) {
        let (client, url, next, token, prefix) = (
            client.clone(),
            url.clone(),
            next.clone(),
            token.map(str::to_owned),
            prefix.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= total {
                    break;
                }
                let to = (from + batch).min(total);
                let msgs: Vec<String> = (from..to)
                    .map(|i| bench_message(&format!("{prefix}{i}@example.com")))
                    .collect();
                let body = Bytes::from(format!("[{}]", msgs.join(",")));
                // A refused batch (overload) is retried: the figure counts accepted messages.
                for _ in 0..100 {
                    if post(&client, &url, token.as_deref(), body.clone()).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let accepted = started.elapsed();
    let deadline = Instant::now() + wait;
    while (sink.distinct() as u64) < before + total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = (sink.distinct() as u64).saturating_sub(before);
    let last = sink
        .arrivals
        .lock()
        .map(|m| m.values().max().copied())
        .ok()
        .flatten()
        .unwrap_or_else(Instant::now);
    ServiceStats {
        messages: total,
        accepted_per_second: total as f64 / accepted.as_secs_f64().max(1e-9),
        delivered_per_second: delivered as f64
            / last.duration_since(started).as_secs_f64().max(1e-9),
        duplicates: sink.duplicates.load(Ordering::Relaxed),
        missing: total.saturating_sub(delivered),
    }
}

/// Posts single messages at `rate` per second for `seconds`, then waits (at most `wait`) for
/// them, and reports enqueue-to-delivered latency.
pub async fn run_service_latency(
    target: &Target,
    sink: &RecordingSink,
    rate: u64,
    seconds: u64,
    wait: Duration,
) -> LatencyStats {
    let (token, prefix) = (target.token.as_deref(), target.prefix.as_str());
    let client = post_client();
    let url = target.messages_url();
    let total = rate * seconds;
    let sent: Arc<std::sync::Mutex<Vec<(String, Instant)>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        // Offer message i at its scheduled time, whatever happened to earlier ones.
        let due = started + Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
        let to = format!("{prefix}{i}@example.com");
        let body = Bytes::from(bench_message(&to));
        let (client, url, token, sent) = (
            client.clone(),
            url.clone(),
            token.map(str::to_owned),
            sent.clone(),
        );
        tasks.spawn(async move {
            let t = Instant::now();
            if post(&client, &url, token.as_deref(), body).await {
                if let Ok(mut s) = sent.lock() {
                    s.push((to, t));
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let deadline = Instant::now() + wait;
    let wanted: Vec<(String, Instant)> = sent.lock().map(|s| s.clone()).unwrap_or_default();
    loop {
        let done = sink
            .arrivals
            .lock()
            .map(|m| wanted.iter().all(|(r, _)| m.contains_key(r)))
            .unwrap_or(false);
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arrivals = sink.arrivals.lock().map(|m| m.clone()).unwrap_or_default();
    let mut lat: Vec<u32> = Vec::with_capacity(wanted.len());
    let mut missing = total - wanted.len() as u64;
    for (r, t) in &wanted {
        match arrivals.get(r) {
            Some(a) => lat.push(
                a.saturating_duration_since(*t)
                    .as_micros()
                    .min(u128::from(u32::MAX)) as u32,
            ),
            None => missing += 1,
        }
    }
    let s = stats(lat.clone(), 0, Duration::from_secs(1));
    LatencyStats {
        rate,
        messages: total,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        max_ms: lat.iter().max().map_or(0.0, |m| f64::from(*m) / 1000.0),
        missing,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bench_messages_are_valid_and_addressed() {
        let m =
            crate::message::Message::from_json(super::bench_message("x7@example.com").as_bytes())
                .unwrap();
        assert_eq!(m.recipient, "x7@example.com");
        assert_eq!(m.template_data.to.as_deref(), Some("x7@example.com"));
        assert_eq!(m.id, None);
        assert_eq!(
            super::recipient_of(br#"{"a":1,"recipient":"r@x.y","b":2}"#).as_deref(),
            Some("r@x.y")
        );
    }
}
