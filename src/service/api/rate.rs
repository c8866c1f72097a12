//! The per-token rate limit of the API: one token bucket per API token (by its position in the
//! configured list, so no token is kept twice), or one shared bucket when the API has none.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::settings::RateLimitSettings;

/// Token buckets, one per API token.
pub(crate) struct RateLimiter {
    rate: f64,
    capacity: f64,
    buckets: Vec<Mutex<Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Full buckets for `tokens` API tokens (one bucket when there are none).
    pub(crate) fn new(settings: &RateLimitSettings, tokens: usize) -> Self {
        let capacity = f64::from(settings.capacity());
        let now = Instant::now();
        Self {
            rate: settings.rate,
            capacity,
            buckets: (0..tokens.max(1))
                .map(|_| {
                    Mutex::new(Bucket {
                        tokens: capacity,
                        at: now,
                    })
                })
                .collect(),
        }
    }

    /// Takes one request from the bucket of token `index` at `now`; `Err` is how long until the
    /// bucket holds one again.
    pub(crate) fn take(&self, index: usize, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = self.buckets.get(index) else {
            return Ok(());
        };
        let mut b = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// The limit in words, for the 429 answer.
    pub(crate) fn describe(&self) -> String {
        format!("{}/s per API token, bursts of {}", self.rate, self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(
            &RateLimitSettings {
                rate: 2.0,
                burst: Some(3),
            },
            2,
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(0, t0), Ok(()));
        }
        assert_eq!(limiter.take(0, t0), Err(Duration::from_millis(500)));
        // Another token has its own bucket.
        assert_eq!(limiter.take(1, t0), Ok(()));
        // Half a second refills one request, not more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take(0, t1), Ok(()));
        assert!(limiter.take(0, t1).is_err());
        // A long pause refills to the burst only.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take(0, t2), Ok(()));
        }
        assert!(limiter.take(0, t2).is_err());
    }

    #[test]
    fn the_burst_defaults_to_one_second_of_rate() {
        let at = |rate| RateLimitSettings { rate, burst: None }.capacity();
        assert_eq!((at(0.5), at(1.0), at(2.5), at(100.0)), (1, 1, 3, 100));
    }
}
