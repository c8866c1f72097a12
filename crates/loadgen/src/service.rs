//! Driving a running `courier serve` through its API: throughput (arrays posted as fast as the
//! API takes them) and latency at a fixed offered rate, both measured at a [`RecordingSink`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

use crate::drive::stats;
use crate::sink::{Record, Reply, Sink};

/// A sink that also notes when each recipient's payload arrived, for enqueue-to-delivered
/// latency. The recipient is found in the payload's `"recipient":"..."` field (the default
/// template writes it).
pub struct RecordingSink {
    /// The sink the service delivers to.
    pub sink: Sink,
    /// Arrival times by recipient (first arrival kept; later ones count as duplicates).
    pub arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    /// Payloads whose recipient had already arrived.
    pub duplicates: Arc<AtomicU64>,
    /// Requests that carried a `webhook-signature` header (a signed channel's).
    pub signed: Arc<AtomicU64>,
}

impl RecordingSink {
    /// Starts one on `addr` (`127.0.0.1:0` for an ephemeral port).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(addr: SocketAddr) -> std::io::Result<RecordingSink> {
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (duplicates, signed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (arr, dups, sig) = (arrivals.clone(), duplicates.clone(), signed.clone());
        let sink = Sink::bind(addr, Record::Count, move |_, req| {
            let now = Instant::now();
            if req.headers.contains_key("webhook-signature") {
                sig.fetch_add(1, Ordering::Relaxed);
            }
            let Some(r) = recipient_of(&req.body) else {
                return Reply::status(200);
            };
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
            Reply::status(200)
        })
        .await?;
        Ok(RecordingSink {
            sink,
            arrivals,
            duplicates,
            signed,
        })
    }

    /// Distinct recipients seen.
    pub fn distinct(&self) -> usize {
        self.arrivals.lock().map_or(0, |m| m.len())
    }
}

pub(crate) fn recipient_of(body: &[u8]) -> Option<String> {
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

/// Distinct messages for generated recipients, made by splicing the address (and a code) into a
/// sample message's JSON text prepared once: the load generator shares the machine with the
/// service it measures, so it should cost next to nothing.
#[derive(Debug, Clone)]
pub struct MessageMaker {
    pieces: Arc<Vec<Piece>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Recipient,
    Code,
}

const MARK_TO: &str = "\u{1}RECIPIENT\u{1}";
const MARK_CODE: &str = "\u{1}CODE\u{1}";

impl MessageMaker {
    /// From `sample`, a message whose `recipient` and `template_data.to` are replaced by each
    /// generated address, and every `template_data` string field named `*code` by a generated
    /// code (its `id` is dropped, so the service assigns one).
    pub fn new(mut sample: serde_json::Value) -> Self {
        sample["recipient"] = serde_json::Value::String(MARK_TO.to_owned());
        sample["template_data"]["to"] = serde_json::Value::String(MARK_TO.to_owned());
        if let Some(data) = sample["template_data"].as_object_mut() {
            for (k, v) in data.iter_mut() {
                if k.ends_with("code") && v.is_string() {
                    *v = serde_json::Value::String(MARK_CODE.to_owned());
                }
            }
        }
        if let Some(obj) = sample.as_object_mut() {
            obj.remove("id");
        }
        let text = sample.to_string();
        let escaped = |mark: &str| {
            let e = serde_json::Value::String(mark.to_owned()).to_string();
            e[1..e.len() - 1].to_owned()
        };
        let (to, code) = (escaped(MARK_TO), escaped(MARK_CODE));
        let mut pieces = Vec::new();
        for (i, part) in text.split(to.as_str()).enumerate() {
            if i > 0 {
                pieces.push(Piece::Recipient);
            }
            for (j, lit) in part.split(code.as_str()).enumerate() {
                if j > 0 {
                    pieces.push(Piece::Code);
                }
                pieces.push(Piece::Text(lit.to_owned()));
            }
        }
        Self {
            pieces: Arc::new(pieces),
        }
    }

    /// The message for `to` with `code`, as JSON text. Both are plain ASCII here (addresses and
    /// digits), so they need no JSON escaping.
    pub fn message(&self, to: &str, code: &str) -> String {
        let mut out = String::with_capacity(
            self.pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => t.len(),
                    Piece::Recipient => to.len(),
                    Piece::Code => code.len(),
                })
                .sum(),
        );
        for p in self.pieces.iter() {
            out.push_str(match p {
                Piece::Text(t) => t,
                Piece::Recipient => to,
                Piece::Code => code,
            });
        }
        out
    }

    /// Message `i` of a run: recipient `{prefix}{i}@example.com`, code `i` in eight digits.
    pub fn nth(&self, prefix: &str, i: u64) -> String {
        self.message(&recipient(prefix, i), &format!("{:08}", i % 100_000_000))
    }
}

/// The recipient of message `i` of a run.
pub fn recipient(prefix: &str, i: u64) -> String {
    format!("{prefix}{i}@example.com")
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
    /// Makes the posted messages.
    pub messages: MessageMaker,
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
    let maker = &target.messages;
    let client = post_client();
    let url = target.messages_url();
    let before = sink.distinct() as u64;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let batch = batch.max(1) as u64;
    let mut tasks = Vec::new();
    for _ in 0..posters.max(1) {
        let (client, url, next, token, prefix, maker) = (
            client.clone(),
            url.clone(),
            next.clone(),
            token.map(str::to_owned),
            prefix.to_owned(),
            maker.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= total {
                    break;
                }
                let to = (from + batch).min(total);
                let msgs: Vec<String> = (from..to).map(|i| maker.nth(&prefix, i)).collect();
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
    let maker = &target.messages;
    let client = post_client();
    let url = target.messages_url();
    let total = rate * seconds;
    let sent: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        // Offer message i at its scheduled time, whatever happened to earlier ones.
        let due = started + Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
        let to = recipient(prefix, i);
        let body = Bytes::from(maker.nth(prefix, i));
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
    use super::*;

    #[test]
    fn messages_are_addressed_and_recipients_found() {
        let maker = MessageMaker::new(serde_json::json!({
            "id": "x", "recipient": "a@b.c",
            "template_data": {"to": "a@b.c", "n": 1, "recovery_code": "123"}
        }));
        let m: serde_json::Value = serde_json::from_str(&maker.nth("x", 7)).unwrap();
        assert_eq!(m["template_data"]["recovery_code"], "00000007");
        assert_eq!(m["recipient"], "x7@example.com");
        assert_eq!(m["template_data"]["to"], "x7@example.com");
        assert_eq!(m["template_data"]["n"], 1);
        assert!(m.get("id").is_none());
        assert_eq!(
            recipient_of(br#"{"a":1,"recipient":"r@x.y","b":2}"#).as_deref(),
            Some("r@x.y")
        );
    }
}
