//! What delivering a message produced: one [`Attempt`] record per try and the final [`Outcome`].
//! These records are what `courier send` prints and what the service stores and serves; the
//! store's final statuses are the outcomes under their column names (see `Status::from`).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Why an attempt did not deliver, when there was no HTTP status to say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP or TLS connection could not be made.
    Connect,
    /// No complete response within the attempt timeout.
    Timeout,
    /// The connection broke while sending or receiving.
    Transport,
    /// The endpoint answered with a status outside the success classes (see `status`).
    Status,
    /// The endpoint answered 3xx; redirects are not followed.
    Redirect,
    /// The template failed to render (see `error`).
    Render,
    /// The template asked not to send (`error "cancel"`).
    Cancelled,
    /// The payload could not be encoded for the channel's Content-Type.
    Encode,
    /// The message names a channel that is not configured.
    Channel,
    /// The SSRF guard refused the address the URL leads to.
    Refused,
    /// The channel's credentials could not be obtained (the token endpoint refused them).
    Auth,
}

/// How one attempt ended, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptClass {
    /// The endpoint accepted the message.
    Delivered,
    /// A failure worth trying again (408, 429, 5xx, timeouts, connection errors by default).
    Retryable,
    /// A failure that will not change by retrying (other 4xx, template errors).
    Permanent,
    /// The template cancelled the send.
    Cancelled,
}

/// The record of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When the attempt started (RFC 3339 in JSON).
    #[serde(with = "rfc3339")]
    pub started_at: SystemTime,
    /// From sending the request to the end of reading the response (or the failure), in
    /// milliseconds.
    pub latency_ms: f64,
    /// Time spent rendering the payload, in milliseconds (absent when nothing was rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_ms: Option<f64>,
    /// How the retry policy classed it.
    pub class: AttemptClass,
    /// The response status, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// A readable description of the failure (never contains credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the response body, up to the configured cap (lossy UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// The wait the server asked for with Retry-After, in seconds, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<f64>,
    /// Things worth knowing about a delivered attempt: a custom message template that failed
    /// and was replaced by the built-in one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Attempt {
    /// Attempt `number`, starting now; [`AttemptClass::Permanent`] until a phase says otherwise.
    pub(crate) fn start(number: u32) -> Self {
        Attempt {
            number,
            started_at: SystemTime::now(),
            latency_ms: 0.0,
            render_ms: None,
            class: AttemptClass::Permanent,
            status: None,
            error_kind: None,
            error: None,
            response_body: None,
            retry_after_s: None,
            notes: Vec::new(),
        }
    }

    /// Records a failure without an answer.
    pub(crate) fn fail(&mut self, kind: ErrorKind, class: AttemptClass, error: String) {
        self.error_kind = Some(kind);
        self.class = class;
        self.error = Some(error);
    }

    /// The server's Retry-After as a duration.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_s
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An attempt was accepted.
    Delivered,
    /// Every allowed attempt failed with a retryable error.
    Abandoned,
    /// The template cancelled the send.
    Cancelled,
    /// An attempt failed permanently (a non-retryable status or a template error).
    Failed,
}

/// Every attempt of one delivery and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// The message's id, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The channel that delivered (or tried to).
    pub channel: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

/// Serde for `SystemTime` as RFC 3339 with millisecond precision, in UTC.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `t` as `2026-11-21T06:27:01.123Z`.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    /// Reads an RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }
}
