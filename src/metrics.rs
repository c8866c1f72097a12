//! Prometheus metrics of `courier serve`: messages by status, attempts by outcome class, delivery
//! and render latency, message templates that fell back to the built-in ones, queue depth and the age of the oldest queued message.
//! Template isolation reports too: renders refused at the cap of written-off evaluator threads,
//! the written-off threads still running, and evaluator processes replaced.
//!
//! Counters and histograms are updated on the hot path; the store-derived gauges are refreshed
//! from [`crate::store::MessageStore::stats`] when `/metrics` is scraped. The render pool's
//! figures are process-wide (the pool knows no [`Metrics`]), like configuration reloads.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::dashboard::Recent;
use crate::delivery::{Attempt, AttemptClass};
use crate::store::StoreStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Configuration reloads of this process, by outcome: one family per process, shared by every
/// [`Metrics`] (a reload is not an API event).
fn reloads() -> &'static Family<OutcomeLabel, Counter> {
    static RELOADS: OnceLock<Family<OutcomeLabel, Counter>> = OnceLock::new();
    RELOADS.get_or_init(Family::default)
}

/// Counts a configuration reload (`courier serve` on SIGHUP or a changed template file).
pub fn config_reloaded(ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    reloads().get_or_create(&OutcomeLabel { outcome }).inc();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabel {
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The render pools' figures, process-wide.
struct PoolFigures {
    refused: Family<TemplateLabel, Counter>,
    written_off: Gauge,
    replaced: Family<ReasonLabel, Counter>,
}

fn pool_figures() -> &'static PoolFigures {
    static FIGURES: OnceLock<PoolFigures> = OnceLock::new();
    FIGURES.get_or_init(|| PoolFigures {
        refused: Family::default(),
        written_off: Gauge::default(),
        replaced: Family::default(),
    })
}

/// Counts a render of `template` refused because its timed-out renders fill the cap of
/// written-off evaluator threads.
pub fn render_refused(template: &str) {
    pool_figures()
        .refused
        .get_or_create(&TemplateLabel {
            template: template.to_owned(),
        })
        .inc();
}

/// Adds `delta` to the written-off evaluator threads still running.
pub fn written_off_changed(delta: i64) {
    pool_figures().written_off.inc_by(delta);
}

/// Counts an evaluator process replaced, by why: `timeout` (killed at the deadline) or
/// `crashed` (it died: memory limit, signal, crash).
pub fn evaluator_process_replaced(reason: &'static str) {
    pool_figures()
        .replaced
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// Remote template refreshes of this process, by outcome (`unchanged`, `updated`, `failed`,
/// `rejected`): shared like [`reloads`].
fn refreshes() -> &'static Family<OutcomeLabel, Counter> {
    static REFRESHES: OnceLock<Family<OutcomeLabel, Counter>> = OnceLock::new();
    REFRESHES.get_or_init(Family::default)
}

/// Counts a remote template refresh.
pub fn template_refreshed(outcome: &'static str) {
    refreshes().get_or_create(&OutcomeLabel { outcome }).inc();
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    messages: Family<StatusLabel, Gauge>,
    queue_depth: Gauge,
    oldest_queued_age: Gauge<f64, AtomicU64>,
    accepted: Counter,
    attempts: Family<ClassLabel, Counter>,
    delivery_latency: Histogram,
    render_latency: Histogram,
    template_fallbacks: Counter,
    recent: Recent,
    api: ApiLimits,
}

/// What the API's abuse limits did.
#[derive(Default)]
struct ApiLimits {
    connections: Gauge,
    refused: Counter,
    timeouts: Family<PhaseLabel, Counter>,
    rate_limited: Counter,
}

impl ApiLimits {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_connections",
            "Open API connections",
            self.connections.clone(),
        );
        registry.register(
            "api_connections_refused",
            "API connections answered 503 and closed because max_connections were open",
            self.refused.clone(),
        );
        registry.register(
            "api_timeouts",
            "API connections cut for sending a request too slowly, by phase (header: the request head, or an idle keep-alive connection; body)",
            self.timeouts.clone(),
        );
        registry.register(
            "api_rate_limited",
            "API requests answered 429 by the per-token rate limit",
            self.rate_limited.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("courier");
        let messages = Family::<StatusLabel, Gauge>::default();
        registry.register("messages", "Stored messages by status", messages.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Messages queued for delivery (due or not)",
            queue_depth.clone(),
        );
        let oldest_queued_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_queued_age_seconds",
            "Age of the oldest queued message",
            oldest_queued_age.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by outcome (a failed one keeps the running configuration)",
            reloads().clone(),
        );
        let pool = pool_figures();
        registry.register(
            "template_renders_refused",
            "Renders refused because earlier timed-out renders of the template fill the cap of written-off evaluator threads",
            pool.refused.clone(),
        );
        registry.register(
            "template_written_off_threads",
            "Evaluator threads written off at a render timeout and still running",
            pool.written_off.clone(),
        );
        registry.register(
            "template_processes_replaced",
            "Evaluator processes (template isolation) replaced, by reason",
            pool.replaced.clone(),
        );
        registry.register(
            "template_refreshes",
            "Remote template refreshes by outcome (failed and rejected keep the last good copy)",
            refreshes().clone(),
        );
        let accepted = Counter::default();
        registry.register(
            "messages_accepted",
            "Messages accepted by the API",
            accepted.clone(),
        );
        let attempts = Family::<ClassLabel, Counter>::default();
        registry.register(
            "attempts",
            "Delivery attempts by outcome class",
            attempts.clone(),
        );
        // 0.5 ms to ~16 s.
        let delivery_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "delivery_latency_seconds",
            "HTTP time of delivery attempts",
            delivery_latency.clone(),
        );
        // 10 µs to ~0.3 s.
        let render_latency = Histogram::new(exponential_buckets(0.00001, 2.0, 16));
        registry.register(
            "render_latency_seconds",
            "Template render time of delivery attempts",
            render_latency.clone(),
        );
        let template_fallbacks = Counter::default();
        registry.register(
            "template_fallbacks",
            "Custom message templates that failed and were replaced by the built-in ones",
            template_fallbacks.clone(),
        );
        let api = ApiLimits::default();
        api.register(&mut registry);
        Self {
            registry,
            messages,
            queue_depth,
            oldest_queued_age,
            accepted,
            attempts,
            delivery_latency,
            render_latency,
            template_fallbacks,
            recent: Recent::default(),
            api,
        }
    }

    /// Counts an API connection opened (`+1`) or closed (`-1`).
    pub fn api_connections(&self, delta: i64) {
        self.api.connections.inc_by(delta);
    }

    /// Counts a connection refused at the connection cap.
    pub fn api_connection_refused(&self) {
        self.api.refused.inc();
    }

    /// Counts a connection cut for a slow request `head` (or idle keep-alive) or body.
    pub fn api_timeout(&self, head: bool) {
        let phase = if head { "header" } else { "body" };
        self.api.timeouts.get_or_create(&PhaseLabel { phase }).inc();
    }

    /// Counts a request refused by the rate limit.
    pub fn api_rate_limited(&self) {
        self.api.rate_limited.inc();
    }

    /// Counts messages accepted by the API.
    pub fn accepted(&self, n: usize) {
        self.accepted.inc_by(n as u64);
    }

    /// The last hour, minute by minute (the dashboard's overview).
    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// Records one attempt.
    pub fn attempt(&self, a: &Attempt) {
        self.recent.attempt(a);
        let class = match a.class {
            AttemptClass::Delivered => "delivered",
            AttemptClass::Retryable => "retryable",
            AttemptClass::Permanent => "permanent",
            AttemptClass::Cancelled => "cancelled",
        };
        self.attempts.get_or_create(&ClassLabel { class }).inc();
        if a.status.is_some()
            || a.error_kind
                .is_some_and(|k| k != crate::delivery::ErrorKind::Render)
        {
            self.delivery_latency.observe(a.latency_ms / 1e3);
        }
        if let Some(r) = a.render_ms {
            self.render_latency.observe(r / 1e3);
        }
        self.template_fallbacks.inc_by(a.notes.len() as u64);
    }

    /// The Prometheus text exposition, with the store-derived gauges set from `stats`.
    pub fn render(&self, stats: &StoreStats) -> String {
        for (status, n) in &stats.by_status {
            self.messages
                .get_or_create(&StatusLabel {
                    status: status.as_str(),
                })
                .set(*n as i64);
            if *status == crate::store::Status::Queued {
                self.queue_depth.set(*n as i64);
            }
        }
        let age = stats
            .oldest_queued_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        self.oldest_queued_age.set(age);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
