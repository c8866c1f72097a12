//! The overview page: the store's counts now, and the last hour minute by minute (queue depth,
//! deliveries, failures by class, delivery latency, oldest queued age) as SVG charts. The page
//! reloads itself every [`REFRESH_S`] seconds (a meta refresh: no JavaScript needed).

use std::time::SystemTime;

use maud::{html, Markup};

use crate::store::StoreStats;

use super::charts::{line_chart, Series};
use super::pages::{layout, PageCtx};
use super::recent::Sample;

/// Seconds between reloads.
pub const REFRESH_S: u32 = 15;

pub fn page(ctx: &PageCtx, stats: &StoreStats, hour: &[Sample]) -> Markup {
    let col = |f: fn(&Sample) -> Option<f64>| hour.iter().map(f).collect::<Vec<_>>();
    let oldest = stats
        .oldest_queued_at
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or_else(
            || "none queued".to_owned(),
            |d| format!("{} s", d.as_secs()),
        );
    let total = |f: fn(&Sample) -> u64| hour.iter().map(f).sum::<u64>();
    layout(
        ctx,
        "Overview",
        "Overview",
        Some(REFRESH_S),
        html! {
            h1 { "Overview" }
            ul.stats aria-label="Messages by status now" {
            @for (s, n) in &stats.by_status {
                li { span { (s.as_str()) } strong { (n) } }
            }
            li { span { "oldest queued" } strong { (oldest) } }
        }
        p.totals id="hour-totals" {
            "Last hour: " (total(|s| s.delivered)) " delivered, "
            (total(|s| s.retryable)) " retryable failures, "
            (total(|s| s.permanent)) " permanent failures, "
            (total(|s| s.cancelled)) " cancelled."
        }
        p.note { "The last 60 minutes, one point per minute, kept in memory since this process started. Reloads every " (REFRESH_S) " s." }
            div.charts {
                (line_chart("queue", "Queue depth", "msgs", &[Series {
                    label: "queued", class: "s1", values: col(|s| s.queue_depth.map(|n| n as f64)),
                }]))
                (line_chart("delivered", "Delivered per minute", "msgs", &[Series {
                    label: "delivered", class: "s2", values: col(|s| Some(s.delivered as f64)),
                }]))
                (line_chart("failures", "Failed attempts per minute, by class", "attempts", &[
                    Series { label: "retryable", class: "s3", values: col(|s| Some(s.retryable as f64)) },
                    Series { label: "permanent", class: "s4", values: col(|s| Some(s.permanent as f64)) },
                    Series { label: "cancelled", class: "s1", values: col(|s| Some(s.cancelled as f64)) },
                ]))
                (line_chart("latency", "Delivery latency", "ms", &[
                    Series { label: "p50", class: "s2", values: col(|s| s.p50_ms) },
                    Series { label: "p99", class: "s4", values: col(|s| s.p99_ms) },
                ]))
                (line_chart("oldest", "Oldest queued message", "s", &[Series {
                    label: "age", class: "s3", values: col(|s| s.oldest_queued_s),
                }]))
            }
        },
    )
}
