//! The delivery policy, the one place that decides what an attempt's result means: the class of
//! a response status, a send error or a render error, and after each attempt a [`Decision`]
//! (delivered, retry after a delay, give up, cancelled) that `Courier::deliver` and the service
//! worker both act on.
//!
//! Backoff is exponential with full jitter: before retry `n` (1 for the first retry) the delay is
//! drawn uniformly from `[0, min(max_backoff, initial_backoff × multiplierⁿ⁻¹)]`, so retries of many
//! messages failing together spread out instead of arriving in waves. A server's Retry-After
//! (delta seconds or an HTTP date) replaces the drawn delay, clamped to the configured bounds.

use std::time::{Duration, SystemTime};

use crate::config::settings::RetrySettings;
use crate::template::RenderErrorKind;

use super::{Attempt, AttemptClass, ErrorKind, Outcome};

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// The endpoint accepted the message.
    Delivered,
    /// Try again after `after`; `reason` is why this attempt failed.
    Retry {
        /// The delay before the next attempt (jittered backoff, or the server's Retry-After).
        after: Duration,
        /// Why the attempt failed.
        reason: ErrorKind,
    },
    /// Stop trying: the message failed.
    GiveUp {
        /// Why the last attempt failed.
        reason: ErrorKind,
        /// Whether retrying could not help, or the attempts ran out.
        why: GiveUp,
    },
    /// The template cancelled the send.
    Cancelled,
}

/// Why a delivery gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The failure will not change by retrying (a non-retryable status, a template error).
    Permanent,
    /// Every allowed attempt failed with a retryable error.
    Exhausted,
}

impl Decision {
    /// The delivery's end state, `None` while a retry is due.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Decision::Delivered => Some(Outcome::Delivered),
            Decision::Cancelled => Some(Outcome::Cancelled),
            Decision::GiveUp {
                why: GiveUp::Permanent,
                ..
            } => Some(Outcome::Failed),
            Decision::GiveUp {
                why: GiveUp::Exhausted,
                ..
            } => Some(Outcome::Abandoned),
            Decision::Retry { .. } => None,
        }
    }
}

/// When to try again, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per message (message_retries + 1).
    pub max_attempts: u32,
    settings: RetrySettings,
}

impl RetryPolicy {
    /// A policy allowing `message_retries + 1` attempts with `settings`.
    pub fn new(message_retries: u32, settings: RetrySettings) -> Self {
        Self {
            max_attempts: message_retries.saturating_add(1),
            settings,
        }
    }

    /// Decides what follows `attempt`: the single rule for `Courier::deliver` and the worker.
    pub fn decide(&self, attempt: &Attempt) -> Decision {
        // A failed attempt always names its kind; Status is the kind of a bare failing answer.
        let reason = attempt.error_kind.unwrap_or(ErrorKind::Status);
        match attempt.class {
            AttemptClass::Delivered => Decision::Delivered,
            AttemptClass::Cancelled => Decision::Cancelled,
            AttemptClass::Permanent => Decision::GiveUp {
                reason,
                why: GiveUp::Permanent,
            },
            AttemptClass::Retryable if attempt.number >= self.max_attempts => Decision::GiveUp {
                reason,
                why: GiveUp::Exhausted,
            },
            AttemptClass::Retryable => Decision::Retry {
                after: self.delay(attempt.number, attempt.retry_after()),
                reason,
            },
        }
    }

    /// Classes a response status.
    pub fn classify_status(&self, status: u16) -> AttemptClass {
        let s = &self.settings;
        if s.success_statuses.iter().any(|p| p.matches(status)) {
            AttemptClass::Delivered
        } else if s.retryable_statuses.iter().any(|p| p.matches(status)) {
            AttemptClass::Retryable
        } else {
            AttemptClass::Permanent
        }
    }

    /// Classes a failure that produced no response.
    pub fn classify_error(kind: ErrorKind) -> AttemptClass {
        match kind {
            ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Transport => {
                AttemptClass::Retryable
            }
            ErrorKind::Cancelled => AttemptClass::Cancelled,
            ErrorKind::Status
            | ErrorKind::Redirect
            | ErrorKind::Render
            | ErrorKind::Encode
            | ErrorKind::Channel
            | ErrorKind::Refused
            | ErrorKind::Auth => AttemptClass::Permanent,
        }
    }

    /// Classes a failed render: load on the pool is worth another try, the template is not.
    pub fn classify_render(kind: RenderErrorKind) -> (ErrorKind, AttemptClass) {
        match kind {
            RenderErrorKind::Cancelled => (ErrorKind::Cancelled, AttemptClass::Cancelled),
            RenderErrorKind::Timeout | RenderErrorKind::PoolClosed | RenderErrorKind::Refused => {
                (ErrorKind::Render, AttemptClass::Retryable)
            }
            _ => (ErrorKind::Render, AttemptClass::Permanent),
        }
    }

    /// The delay before retry number `retry` (1 for the first), honouring `retry_after` when the
    /// server sent one.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let s = &self.settings;
        if let Some(ra) = retry_after {
            return ra.clamp(s.retry_after_min, s.retry_after_max);
        }
        let bound = self.bound(retry);
        bound.mul_f64(fastrand::f64())
    }

    /// The upper bound of the jittered delay before retry `retry`.
    pub fn bound(&self, retry: u32) -> Duration {
        let s = &self.settings;
        let exp = s.multiplier.powi(retry.saturating_sub(1).min(64) as i32);
        let secs = (s.initial_backoff.as_secs_f64() * exp).min(s.max_backoff.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Parses a Retry-After value: delta seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StatusPattern;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(5, RetrySettings::default())
    }

    #[test]
    fn default_status_classes() {
        let p = policy();
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(p.classify_status(s), AttemptClass::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 599] {
            assert_eq!(p.classify_status(s), AttemptClass::Retryable, "{s}");
        }
        for s in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert_eq!(p.classify_status(s), AttemptClass::Permanent, "{s}");
        }
        assert_eq!(p.max_attempts, 6);
    }

    #[test]
    fn configured_classes_replace_the_defaults() {
        let settings = RetrySettings {
            retryable_statuses: vec![StatusPattern::Code(409), StatusPattern::Class(5)],
            success_statuses: vec![StatusPattern::Code(200)],
            ..RetrySettings::default()
        };
        let p = RetryPolicy::new(0, settings);
        assert_eq!(p.classify_status(409), AttemptClass::Retryable);
        assert_eq!(p.classify_status(429), AttemptClass::Permanent);
        assert_eq!(p.classify_status(202), AttemptClass::Permanent);
        assert_eq!(p.max_attempts, 1);
    }

    #[test]
    fn decisions_end_in_one_vocabulary() {
        let p = RetryPolicy::new(1, RetrySettings::default());
        let attempt = |number, class, kind| Attempt {
            error_kind: kind,
            class,
            ..Attempt::start(number)
        };
        let delivered = p.decide(&attempt(1, AttemptClass::Delivered, None));
        assert_eq!(delivered, Decision::Delivered);
        assert_eq!(delivered.outcome(), Some(Outcome::Delivered));
        let d = p.decide(&attempt(
            1,
            AttemptClass::Retryable,
            Some(ErrorKind::Timeout),
        ));
        assert!(
            matches!(d, Decision::Retry { reason: ErrorKind::Timeout, after } if after <= Duration::from_secs(1)),
            "{d:?}"
        );
        assert_eq!(d.outcome(), None);
        let d = p.decide(&attempt(
            2,
            AttemptClass::Retryable,
            Some(ErrorKind::Connect),
        ));
        assert_eq!(
            d,
            Decision::GiveUp {
                reason: ErrorKind::Connect,
                why: GiveUp::Exhausted
            }
        );
        assert_eq!(d.outcome(), Some(Outcome::Abandoned));
        let d = p.decide(&attempt(
            1,
            AttemptClass::Permanent,
            Some(ErrorKind::Render),
        ));
        assert_eq!(d.outcome(), Some(Outcome::Failed));
        let d = p.decide(&attempt(
            1,
            AttemptClass::Cancelled,
            Some(ErrorKind::Cancelled),
        ));
        assert_eq!(d, Decision::Cancelled);
        assert_eq!(d.outcome(), Some(Outcome::Cancelled));
    }

    #[test]
    fn render_load_is_retried_and_template_errors_are_not() {
        assert_eq!(
            RetryPolicy::classify_render(RenderErrorKind::Timeout),
            (ErrorKind::Render, AttemptClass::Retryable)
        );
        assert_eq!(
            RetryPolicy::classify_render(RenderErrorKind::Runtime),
            (ErrorKind::Render, AttemptClass::Permanent)
        );
        assert_eq!(
            RetryPolicy::classify_render(RenderErrorKind::Cancelled),
            (ErrorKind::Cancelled, AttemptClass::Cancelled)
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_full_jitter() {
        let p = policy();
        assert_eq!(p.bound(1), Duration::from_secs(1));
        assert_eq!(p.bound(2), Duration::from_secs(2));
        assert_eq!(p.bound(5), Duration::from_secs(16));
        assert_eq!(p.bound(11), Duration::from_secs(600));
        assert_eq!(p.bound(1000), Duration::from_secs(600));
        let draws: Vec<Duration> = (0..2000).map(|_| p.delay(3, None)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(4)));
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
        assert!(
            (1.6..2.4).contains(&mean),
            "uniform over [0, 4 s] has mean 2 s, got {mean}"
        );
        assert!(draws.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(3500)));
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let settings = RetrySettings {
            retry_after_min: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(60),
            ..RetrySettings::default()
        };
        let p = RetryPolicy::new(5, settings);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert_eq!(p.delay(1, Some(Duration::ZERO)), Duration::from_secs(1));
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
