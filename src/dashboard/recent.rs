//! The last hour of the service, minute by minute, in memory: deliveries, failures by class,
//! delivery latency percentiles, queue depth and the age of the oldest queued message. Fed by
//! [`crate::metrics::Metrics::attempt`] (every attempt) and by the dashboard's store sampler
//! (queue gauges); read by the overview charts. Nothing here survives a restart.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::delivery::{Attempt, AttemptClass, ErrorKind};

/// Minutes kept (one hour).
pub const MINUTES: usize = 60;
/// Latencies kept per minute for the percentiles; past this a minute keeps a uniform sample.
const LATENCY_SAMPLE: usize = 2048;

/// One minute of the service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Attempts that delivered.
    pub delivered: u64,
    /// Failed attempts that will be retried.
    pub retryable: u64,
    /// Failed attempts that will not be retried.
    pub permanent: u64,
    /// Attempts the template cancelled.
    pub cancelled: u64,
    /// Median delivery latency (ms), when there were deliveries.
    pub p50_ms: Option<f64>,
    /// 99th percentile delivery latency (ms).
    pub p99_ms: Option<f64>,
    /// The last queue depth seen in this minute.
    pub queue_depth: Option<u64>,
    /// The last age of the oldest queued message seen in this minute (seconds; 0 when none).
    pub oldest_queued_s: Option<f64>,
}

#[derive(Default)]
struct Current {
    sample: Sample,
    latencies: Vec<f64>,
    seen: u64,
}

impl Current {
    fn finish(&self) -> Sample {
        let mut s = self.sample.clone();
        let mut l = self.latencies.clone();
        l.sort_by(f64::total_cmp);
        s.p50_ms = percentile(&l, 0.50);
        s.p99_ms = percentile(&l, 0.99);
        s
    }
}

/// The ring of per-minute samples. All methods take `&self`; the lock is held for microseconds.
#[derive(Default)]
pub struct Recent {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    done: VecDeque<Sample>,
    current: Current,
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl Inner {
    /// Moves to `minute`, closing the current one when it is older.
    fn roll(&mut self, minute: u64) {
        if self.current.sample.minute == minute {
            return;
        }
        if self.current.sample.minute != 0 && self.current.sample.minute < minute {
            let finished = self.current.finish();
            self.done.push_back(finished);
            while self.done.len() > MINUTES {
                self.done.pop_front();
            }
        }
        if self.current.sample.minute < minute {
            self.current = Current {
                sample: Sample {
                    minute,
                    ..Sample::default()
                },
                ..Current::default()
            };
        }
    }
}

impl Recent {
    /// Counts one attempt in the minute it ended.
    pub fn attempt(&self, a: &Attempt) {
        self.attempt_at(a, SystemTime::now());
    }

    fn attempt_at(&self, a: &Attempt, now: SystemTime) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.roll(minute_of(now));
        let cur = &mut inner.current;
        match a.class {
            AttemptClass::Delivered => cur.sample.delivered += 1,
            AttemptClass::Retryable => cur.sample.retryable += 1,
            AttemptClass::Permanent => cur.sample.permanent += 1,
            AttemptClass::Cancelled => cur.sample.cancelled += 1,
        }
        // Latency of the HTTP exchange only, as the delivery latency metric counts it.
        if a.status.is_some() || a.error_kind.is_some_and(|k| k != ErrorKind::Render) {
            cur.seen += 1;
            if cur.latencies.len() < LATENCY_SAMPLE {
                cur.latencies.push(a.latency_ms);
            } else {
                // Reservoir sampling keeps every latency of the minute equally likely.
                let slot = fastrand::u64(0..cur.seen);
                if let Some(v) = usize::try_from(slot)
                    .ok()
                    .and_then(|i| cur.latencies.get_mut(i))
                {
                    *v = a.latency_ms;
                }
            }
        }
    }

    /// Records the queue gauges read from the store.
    pub fn queue(&self, depth: u64, oldest_queued_age: Option<Duration>) {
        self.queue_at(depth, oldest_queued_age, SystemTime::now());
    }

    fn queue_at(&self, depth: u64, oldest: Option<Duration>, now: SystemTime) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.roll(minute_of(now));
        inner.current.sample.queue_depth = Some(depth);
        inner.current.sample.oldest_queued_s = Some(oldest.map_or(0.0, |d| d.as_secs_f64()));
    }

    /// The last [`MINUTES`] minutes up to `now`, oldest first, one sample per minute (an empty
    /// one for a minute with nothing recorded); the last is the minute in progress.
    pub fn hour(&self, now: SystemTime) -> Vec<Sample> {
        let end = minute_of(now);
        let start = end.saturating_sub(MINUTES as u64 - 1);
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let current = (inner.current.sample.minute != 0).then(|| inner.current.finish());
        (start..=end)
            .map(|minute| {
                inner
                    .done
                    .iter()
                    .chain(current.iter())
                    .find(|s| s.minute == minute)
                    .cloned()
                    .unwrap_or(Sample {
                        minute,
                        ..Sample::default()
                    })
            })
            .collect()
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(class: AttemptClass, status: Option<u16>, latency_ms: f64) -> Attempt {
        Attempt {
            number: 1,
            started_at: SystemTime::UNIX_EPOCH,
            latency_ms,
            render_ms: None,
            class,
            status,
            error_kind: if class == AttemptClass::Delivered {
                None
            } else if status.is_some() {
                Some(ErrorKind::Status)
            } else {
                Some(ErrorKind::Render)
            },
            error: None,
            response_body: None,
            retry_after_s: None,
            notes: Vec::new(),
        }
    }

    fn at(minute: u64, second: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(minute * 60 + second)
    }

    #[test]
    fn minutes_roll_and_percentiles_are_per_minute() {
        let r = Recent::default();
        let base = 29_000_000;
        for ms in 1..=100 {
            r.attempt_at(
                &attempt(AttemptClass::Delivered, Some(200), f64::from(ms)),
                at(base, 5),
            );
        }
        r.attempt_at(
            &attempt(AttemptClass::Retryable, Some(503), 7.0),
            at(base, 6),
        );
        // A render failure counts as permanent but has no delivery latency.
        r.attempt_at(&attempt(AttemptClass::Permanent, None, 900.0), at(base, 7));
        r.queue_at(4, Some(Duration::from_secs(90)), at(base, 30));
        r.attempt_at(
            &attempt(AttemptClass::Delivered, Some(200), 3.0),
            at(base + 2, 1),
        );

        let hour = r.hour(at(base + 2, 59));
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(hour[MINUTES - 1].minute, base + 2);
        let first = &hour[MINUTES - 3];
        assert_eq!(first.minute, base);
        assert_eq!(
            (
                first.delivered,
                first.retryable,
                first.permanent,
                first.cancelled
            ),
            (100, 1, 1, 0)
        );
        // 101 latencies: 1..=100 and 7.
        assert_eq!(first.p50_ms, Some(50.0));
        assert_eq!(first.p99_ms, Some(99.0));
        assert_eq!(first.queue_depth, Some(4));
        assert_eq!(first.oldest_queued_s, Some(90.0));
        assert_eq!(
            hour[MINUTES - 2],
            Sample {
                minute: base + 1,
                ..Sample::default()
            }
        );
        let last = &hour[MINUTES - 1];
        assert_eq!(
            (last.delivered, last.p50_ms, last.queue_depth),
            (1, Some(3.0), None)
        );
        // An hour later the old minutes are gone.
        assert!(r.hour(at(base + 200, 0)).iter().all(|s| s.delivered == 0));
    }

    #[test]
    fn a_busy_minute_keeps_a_bounded_sample() {
        let r = Recent::default();
        for i in 0..(LATENCY_SAMPLE as u32 * 3) {
            r.attempt_at(
                &attempt(AttemptClass::Delivered, Some(200), f64::from(i % 10)),
                at(10, 0),
            );
        }
        let inner = r.inner.lock().unwrap();
        assert_eq!(inner.current.latencies.len(), LATENCY_SAMPLE);
        assert_eq!(inner.current.sample.delivered, LATENCY_SAMPLE as u64 * 3);
    }
}
