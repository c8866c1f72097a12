//! Watching a service drain a backlog: a sink that ticks off generated recipients in a bitset
//! (memory stays at one bit per message, so a 1M-message run measures the service, not the
//! sink), and samples of the delivered count and the process's RSS over time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::service::recipient_of;
use crate::sink::{Record, Reply, Sink};

/// A counting sink for the messages `{prefix}{i}@example.com`, `i < total`.
pub struct DrainSink {
    /// The sink the service delivers to.
    pub sink: Sink,
    seen: Arc<Mutex<Vec<u64>>>,
    distinct: Arc<AtomicU64>,
    duplicates: Arc<AtomicU64>,
    foreign: Arc<AtomicU64>,
}

impl DrainSink {
    /// Starts one on an ephemeral loopback port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(prefix: &str, total: u64) -> std::io::Result<DrainSink> {
        let words = usize::try_from(total.div_ceil(64)).unwrap_or(usize::MAX);
        let seen = Arc::new(Mutex::new(vec![0u64; words]));
        let (distinct, duplicates, foreign) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (bits, d, dup, other, prefix) = (
            Arc::clone(&seen),
            Arc::clone(&distinct),
            Arc::clone(&duplicates),
            Arc::clone(&foreign),
            prefix.to_owned(),
        );
        let sink = Sink::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Record::Count,
            move |_, req| {
                let index = recipient_of(&req.body).and_then(|r| index_of(&prefix, &r));
                match index.filter(|i| *i < total) {
                    Some(i) => {
                        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
                        if let Ok(mut bits) = bits.lock() {
                            if bits[word] & bit == 0 {
                                bits[word] |= bit;
                                d.fetch_add(1, Ordering::Relaxed);
                            } else {
                                dup.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    None => {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Reply::status(200)
            },
        )
        .await?;
        Ok(DrainSink {
            sink,
            seen,
            distinct,
            duplicates,
            foreign,
        })
    }

    /// Distinct messages of the run received.
    pub fn distinct(&self) -> u64 {
        self.distinct.load(Ordering::Relaxed)
    }

    /// Payloads of the run received more than once.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Payloads that were not messages of the run.
    pub fn foreign(&self) -> u64 {
        self.foreign.load(Ordering::Relaxed)
    }

    /// Bytes the bitset holds (what the sink adds to the process's RSS).
    pub fn footprint(&self) -> usize {
        self.seen.lock().map_or(0, |b| b.len() * 8)
    }
}

fn index_of(prefix: &str, recipient: &str) -> Option<u64> {
    recipient
        .strip_prefix(prefix)?
        .strip_suffix("@example.com")?
        .parse()
        .ok()
}

/// One sample of a drain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrainSample {
    /// Seconds since the drain started.
    pub at_s: f64,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Messages per second since the previous sample.
    pub rate: f64,
    /// Resident set size of this process, bytes (0 where /proc is missing).
    pub rss_bytes: u64,
}

/// Samples `sink` every `every` until it has `total` messages or nothing arrived for `stall`;
/// `on_sample` sees each sample as it is taken.
pub async fn watch_drain(
    sink: &DrainSink,
    total: u64,
    every: Duration,
    stall: Duration,
    mut on_sample: impl FnMut(&DrainSample),
) -> Vec<DrainSample> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let (mut last_count, mut last_at, mut last_progress) = (0u64, started, started);
    loop {
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let delivered = sink.distinct();
        if delivered > last_count {
            last_progress = now;
        }
        let s = DrainSample {
            at_s: now.duration_since(started).as_secs_f64(),
            delivered,
            rate: (delivered - last_count) as f64
                / now.duration_since(last_at).as_secs_f64().max(1e-9),
            rss_bytes: rss_bytes(),
        };
        on_sample(&s);
        samples.push(s);
        (last_count, last_at) = (delivered, now);
        if delivered >= total || now.duration_since(last_progress) > stall {
            return samples;
        }
    }
}

/// This process's resident set size, from /proc/self/status (0 where that is missing).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_come_from_the_prefix_and_address() {
        assert_eq!(index_of("b-1-", "b-1-42@example.com"), Some(42));
        assert_eq!(index_of("b-1-", "b-2-42@example.com"), None);
        assert_eq!(index_of("b-1-", "b-1-x@example.com"), None);
        assert!(rss_bytes() > 0 || !std::path::Path::new("/proc/self/status").exists());
    }
}
