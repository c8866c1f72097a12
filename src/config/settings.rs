//! Our own settings, in the `jsonnet_courier` section beside the reference's `courier` section.
//! Every field has a default; the whole section may be left out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper::header::HeaderValue;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Secret, SecretUrl};
use crate::http::guard::{Cidr, Guard};
use crate::message::CtxStyle;

/// The `jsonnet_courier` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Key style of the ctx handed to every template: `pascal` or `snake`. Unset (the default),
    /// each template gets the style of the ctx names it reads, and snake if it reads none.
    pub ctx_style: Option<CtxStyle>,
    /// Per-channel settings, by channel id (`email`, `sms`...).
    pub channels: BTreeMap<String, ChannelSettings>,
    /// Template sandbox.
    pub template: TemplateSettings,
    /// The HTTP client.
    pub http: HttpSettings,
    /// Retry policy.
    pub retry: RetrySettings,
    /// `courier serve`.
    pub serve: ServeSettings,
}

/// `jsonnet_courier.channels.<id>`: settings of one channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    /// Key style of this channel's ctx; wins over the global `ctx_style`.
    pub ctx_style: Option<CtxStyle>,
}

impl Settings {
    /// The explicit ctx style for `channel` and the key that set it: the channel's own, else
    /// the global one, else `None` (decided by the template).
    pub fn ctx_style_for(&self, channel: &str) -> Option<(CtxStyle, String)> {
        if let Some(style) = self.channels.get(channel).and_then(|c| c.ctx_style) {
            return Some((
                style,
                format!("jsonnet_courier.channels.{channel}.ctx_style"),
            ));
        }
        self.ctx_style
            .map(|style| (style, "jsonnet_courier.ctx_style".to_owned()))
    }

    /// Checks values serde accepts but the courier cannot use, reporting each by key path, and
    /// resolves a relative `template.import_dir` against `base_dir` (the config file's folder).
    pub(crate) fn validate(
        &mut self,
        base_dir: Option<&Path>,
        issue: &mut dyn FnMut(&str, String),
    ) {
        if self.retry.multiplier < 1.0 || !self.retry.multiplier.is_finite() {
            issue(
                "jsonnet_courier.retry.multiplier",
                "must be at least 1".into(),
            );
        }
        if self.retry.retry_after_min > self.retry.retry_after_max {
            issue(
                "jsonnet_courier.retry.retry_after_min",
                "is larger than retry_after_max".into(),
            );
        }
        if self.http.timeout.is_zero() {
            issue("jsonnet_courier.http.timeout", "must be more than 0".into());
        }
        if self.template.timeout.is_zero() {
            issue(
                "jsonnet_courier.template.timeout",
                "must be more than 0".into(),
            );
        }
        if self.template.max_written_off == 0 {
            issue(
                "jsonnet_courier.template.max_written_off",
                "must be at least 1".into(),
            );
        }
        if self.serve.concurrency == 0 {
            issue(
                "jsonnet_courier.serve.concurrency",
                "must be at least 1".into(),
            );
        }
        self.serve.validate(issue);
        if let Some(dir) = &self.template.import_dir {
            let dir = match base_dir {
                Some(base) if dir.is_relative() => base.join(dir),
                _ => dir.clone(),
            };
            if !dir.is_dir() {
                issue(
                    "jsonnet_courier.template.import_dir",
                    format!("{} is not a directory", dir.display()),
                );
            }
            self.template.import_dir = Some(dir);
        }
        let http = HeaderValue::from_str(&self.http.user_agent);
        if http.is_err() {
            issue(
                "jsonnet_courier.http.user_agent",
                "not a valid header value".into(),
            );
        }
    }
}

/// `jsonnet_courier.template`: what templates may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateSettings {
    /// Allow imports from this directory only (relative to the config file); denied when unset.
    pub import_dir: Option<PathBuf>,
    /// Maximum Jsonnet stack depth (default 500, as go-jsonnet).
    pub max_stack: usize,
    /// Maximum payload size in bytes (default 262144).
    pub max_output_bytes: usize,
    /// Maximum evaluation time per render (default 1s).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Evaluator threads (or processes with `isolation: process`); 0 means one per core
    /// (default 0).
    pub threads: usize,
    /// Where templates are evaluated: `thread` (default; in this process) or `process` (child
    /// processes with a memory cap, killed and replaced at the timeout).
    pub isolation: IsolationMode,
    /// With `isolation: process`, each evaluator process's address-space cap in bytes (default
    /// 2 GiB, as the reference); 0 for none.
    pub max_memory_bytes: u64,
    /// With `isolation: thread`, written-off evaluator threads (renders past the timeout, still
    /// running) at which renders of the templates responsible are refused (default 4).
    pub max_written_off: usize,
}

/// `jsonnet_courier.template.isolation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationMode {
    /// Evaluator threads in the courier's process.
    #[default]
    Thread,
    /// Evaluator processes (`courier template-worker`).
    Process,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        let l = crate::template::Limits::default();
        Self {
            import_dir: None,
            max_stack: l.max_stack,
            max_output_bytes: l.max_output_bytes,
            timeout: l.timeout,
            threads: 0,
            isolation: IsolationMode::Thread,
            max_memory_bytes: crate::template::DEFAULT_MAX_MEMORY_BYTES,
            max_written_off: crate::template::DEFAULT_MAX_WRITTEN_OFF,
        }
    }
}

/// `jsonnet_courier.http`: the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// TCP (and TLS) connect timeout (default 5s).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Total time for one attempt, from connect to the end of the response body (default 10s).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// How much of a response body is kept in the attempt record (default 16384 bytes).
    pub max_response_body_bytes: usize,
    /// User-Agent sent unless a channel's headers set one (default `jsonnet-courier/<version>`).
    pub user_agent: String,
    /// The SSRF guard.
    pub guard: GuardSettings,
}

/// `jsonnet_courier.http.guard`: where requests may connect. The reference's
/// `clients.http.disallow_private_ip_ranges` turns `config_urls` on, and its
/// `clients.http.private_ip_exception_urls` add to `exception_urls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardSettings {
    /// Guard requests to URLs written in the configuration (default false, as the reference).
    pub config_urls: bool,
    /// Guard requests to URLs a template returns (default true).
    pub template_urls: bool,
    /// Networks allowed despite the guard, e.g. `10.20.0.0/16` or one address.
    pub allow_cidrs: Vec<Cidr>,
    /// Host names allowed whatever they resolve to: exact, or `*.example.internal`.
    pub allow_hosts: Vec<String>,
    /// URLs never guarded: exact (the query ignored), or a prefix ending in `*`.
    pub exception_urls: Vec<String>,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            config_urls: false,
            template_urls: true,
            allow_cidrs: Vec::new(),
            allow_hosts: Vec::new(),
            exception_urls: Vec::new(),
        }
    }
}

impl GuardSettings {
    /// The guard with these allowances, on or off.
    pub fn guard(&self, enabled: bool) -> Guard {
        Guard {
            enabled,
            allow_cidrs: self.allow_cidrs.clone(),
            allow_hosts: self.allow_hosts.clone(),
        }
    }

    /// Whether `url` is one of the exception URLs.
    pub fn is_exception(&self, url: &str) -> bool {
        let bare = url.split(['?', '#']).next().unwrap_or(url);
        self.exception_urls
            .iter()
            .any(|e| match e.strip_suffix('*') {
                Some(prefix) => url.starts_with(prefix),
                None => {
                    let e = e.split(['?', '#']).next().unwrap_or(e);
                    e == bare
                }
            })
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_response_body_bytes: 16 * 1024,
            user_agent: crate::http::USER_AGENT.to_owned(),
            guard: GuardSettings::default(),
        }
    }
}

/// `jsonnet_courier.retry`: when and how often to try again. The number of attempts is
/// `courier.message_retries + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// Upper bound of the first retry's delay (default 1s); full jitter picks a delay below it.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    /// Growth of the bound per retry (default 2).
    pub multiplier: f64,
    /// Cap of the bound (default 10m).
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// A server's Retry-After is honoured, clamped to this range (default 0s to 10m).
    #[serde(with = "duration")]
    pub retry_after_min: Duration,
    /// See `retry_after_min`.
    #[serde(with = "duration")]
    pub retry_after_max: Duration,
    /// Statuses that mean delivered (default `["2xx"]`).
    pub success_statuses: Vec<StatusPattern>,
    /// Statuses worth retrying (default `[408, 429, "5xx"]`); any other status is permanent.
    pub retryable_statuses: Vec<StatusPattern>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(600),
            retry_after_min: Duration::ZERO,
            retry_after_max: Duration::from_secs(600),
            success_statuses: vec![StatusPattern::Class(2)],
            retryable_statuses: vec![
                StatusPattern::Code(408),
                StatusPattern::Code(429),
                StatusPattern::Class(5),
            ],
        }
    }
}

/// A status code (`429`) or a class (`"5xx"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    /// Exactly this code.
    Code(u16),
    /// Every code of this hundred (`5` for `5xx`).
    Class(u16),
}

impl StatusPattern {
    /// Whether `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Code(c) => c == status,
            Self::Class(c) => status / 100 == c,
        }
    }
}

impl Serialize for StatusPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Code(c) => s.serialize_u16(*c),
            Self::Class(c) => s.collect_str(&format_args!("{c}xx")),
        }
    }
}

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "{v} is not a status: use a code from 100 to 599 or a class such as \"5xx\""
            ))
        };
        match &v {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(c @ 100..=599) => Ok(Self::Code(c as u16)),
                _ => Err(bad()),
            },
            serde_json::Value::String(s) => {
                let s = s.trim().to_ascii_lowercase();
                if let Some(class) = s.strip_suffix("xx") {
                    match class.parse::<u16>() {
                        Ok(c @ 1..=5) => Ok(Self::Class(c)),
                        _ => Err(bad()),
                    }
                } else {
                    match s.parse::<u16>() {
                        Ok(c @ 100..=599) => Ok(Self::Code(c)),
                        _ => Err(bad()),
                    }
                }
            }
            _ => Err(bad()),
        }
    }
}

/// `jsonnet_courier.serve`: the delivery service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeSettings {
    /// Address of the HTTP API (default 127.0.0.1:4480).
    pub listen: SocketAddr,
    /// `sqlite://PATH` (default `sqlite://courier.db`, relative to the working directory) or
    /// `postgres://...` (shown with its password masked).
    pub database: SecretUrl,
    /// Bearer tokens accepted by the API; required when `listen` is not a loopback address.
    pub tokens: Vec<Secret>,
    /// Largest accepted request body (default 1 MiB).
    pub max_body_bytes: usize,
    /// Deliveries in flight per process (default 64).
    pub concurrency: usize,
    /// How long a claim lasts before another process may take the message over (default 60s).
    #[serde(with = "duration")]
    pub lease: Duration,
    /// How often the worker looks for due messages when idle (default 100ms).
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Time given to in-flight deliveries at shutdown (default 10s).
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Sent and cancelled messages are deleted after this long (default 7 days).
    #[serde(with = "duration")]
    pub retention: Duration,
    /// Time a client has to send a request head, from connecting or from its previous answer;
    /// past it the connection is closed (default 10s). Also how long an idle keep-alive
    /// connection stays open.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request body once its head is in; past it the answer is 408
    /// and the connection is closed (default 30s).
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// Open API connections at most (default 1024); past it a new connection is answered 503
    /// and closed at once.
    pub max_connections: usize,
    /// Requests per API token, as a token bucket (off by default).
    pub rate_limit: Option<RateLimitSettings>,
}

/// `jsonnet_courier.serve.rate_limit`: a token bucket per API token (one shared bucket when the
/// API has no tokens). Health probes and the dashboard are not counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per second refilled (may be fractional: `0.5` is one every 2 s).
    pub rate: f64,
    /// Requests allowed at once when the bucket is full (default: one second's worth, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateLimitSettings {
    /// The bucket's size.
    pub fn capacity(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
    }
}

impl ServeSettings {
    /// The API's abuse limits: values serde accepts that would switch a protection off.
    fn validate(&self, issue: &mut dyn FnMut(&str, String)) {
        let key = |k: &str| format!("jsonnet_courier.serve.{k}");
        for (name, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ] {
            if value.is_zero() {
                issue(&key(name), "must be more than 0".into());
            }
        }
        if self.max_connections == 0 {
            issue(&key("max_connections"), "must be at least 1".into());
        }
        if let Some(limit) = &self.rate_limit {
            if !(limit.rate.is_finite() && limit.rate > 0.0) {
                issue(
                    &key("rate_limit.rate"),
                    format!(
                        "{} is not a rate: use requests per second, more than 0",
                        limit.rate
                    ),
                );
            }
            if limit.burst == Some(0) {
                issue(&key("rate_limit.burst"), "must be at least 1".into());
            }
        }
    }
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4480)),
            database: SecretUrl::new("sqlite://courier.db"),
            tokens: Vec::new(),
            max_body_bytes: 1024 * 1024,
            concurrency: 64,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            rate_limit: None,
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Durations as `"1s"`, `"250ms"`, `"10m"`, `"1h 30m"` (humantime), or a number of seconds.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `"1s"`, `"10m"`...
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Reads a humantime string or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::Number(n) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a duration"))),
            serde_json::Value::String(s) => humantime::parse_duration(s.trim()).map_err(|e| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a duration ({e}); write e.g. \"500ms\", \"10s\", \"5m\""
                ))
            }),
            _ => Err(serde::de::Error::custom(format!(
                "{v} is not a duration; write e.g. \"500ms\", \"10s\", \"5m\""
            ))),
        }
    }
}
