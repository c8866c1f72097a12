//! The dashboard's HTML: the shared layout, the login page, the message list (filters, counts
//! per status, pages) and a message's detail page (the message, its ctx, the payload, and every
//! attempt on a timeline). maud escapes every value, so stored response bodies show as text.

use std::time::SystemTime;

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use crate::config::is_sensitive_header;
use crate::delivery::{Attempt, AttemptClass, Courier};
use crate::message::{ctx, CtxStyle, TemplateType};
use crate::store::{ListFilter, Page, Status, StoreStats, StoredMessage};

use super::encode;
use super::playground::Preview;

/// Messages per list page.
pub const PAGE_SIZE: usize = 25;

/// What every page needs to know about the request.
pub struct PageCtx {
    /// Logged in through a session (the layout offers to log out).
    pub logged_in: bool,
}

/// The page around `body`; `nav` is the current section.
pub fn layout(ctx: &PageCtx, title: &str, nav: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh {
                    meta http-equiv="refresh" content=(s);
                }
                title { (title) " · courier" }
                link rel="stylesheet" href="/ui/assets/dash.css";
                script src="/ui/assets/dash.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "courier" }
                    nav aria-label="Sections" {
                        @for (href, label) in [("/ui/", "Messages"), ("/ui/overview", "Overview"), ("/ui/playground", "Playground")] {
                            @if label == nav {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    @if ctx.logged_in {
                        form.logout method="post" action="/ui/logout" {
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// The login form.
pub fn login(next: &str, error: Option<&str>) -> Markup {
    let ctx = PageCtx { logged_in: false };
    layout(
        &ctx,
        "Log in",
        "",
        None,
        html! {
            h1 { "Log in" }
            p { "Enter one of this service's API tokens (" code { "jsonnet_courier.serve.tokens" } "). It is checked once; the browser then keeps a session cookie until it closes." }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
        },
    )
}

/// A page saying what went wrong.
pub fn problem(ctx: &PageCtx, title: &str, detail: &str) -> Markup {
    layout(
        ctx,
        title,
        "",
        None,
        html! {
            h1 { (title) }
            p.error { (detail) }
            p { a href="/ui/" { "Back to the messages" } }
        },
    )
}

/// The list's query: filters and page position.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub status: String,
    pub template_type: String,
    pub channel: String,
    pub recipient: String,
    pub page_token: Option<String>,
}

impl ListParams {
    pub fn parse(query: &str) -> Self {
        let v = |k| super::query_value(query, k).trim().to_owned();
        Self {
            status: v("status"),
            template_type: v("template_type"),
            channel: v("channel"),
            recipient: v("recipient"),
            page_token: Some(v("page_token")).filter(|t| !t.is_empty()),
        }
    }

    pub fn filter(&self) -> Result<ListFilter, String> {
        let opt = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        if let Some(t) = &self.page_token {
            if !crate::store::is_valid_page_token(t) {
                return Err("page_token: not a token this service issued".into());
            }
        }
        Ok(ListFilter {
            status: opt(&self.status)
                .map(|s| s.parse::<Status>())
                .transpose()
                .map_err(|e| format!("status: {e}"))?,
            recipient: opt(&self.recipient),
            template_type: opt(&self.template_type)
                .map(|s| s.parse::<TemplateType>())
                .transpose()
                .map_err(|e| format!("template_type: {e}"))?,
            channel: opt(&self.channel),
        })
    }

    /// The list URL with these filters, `status` replaced when given, and at `page_token`.
    fn url(&self, status: Option<&str>, page_token: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("status", status.unwrap_or(&self.status)),
            ("template_type", &self.template_type),
            ("channel", &self.channel),
            ("recipient", &self.recipient),
            ("page_token", page_token.unwrap_or("")),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", encode(v)));
            }
        }
        if parts.is_empty() {
            "/ui/".to_owned()
        } else {
            format!("/ui/?{}", parts.join("&"))
        }
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// "3 s ago" / "in 2 min".
fn relative(t: SystemTime, now: SystemTime) -> String {
    let (d, future) = match t.duration_since(now) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let s = d.as_secs();
    let amount = match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn badge(status: Status) -> Markup {
    html! { span.(format!("badge {}", status.as_str())) { (status.as_str()) } }
}

fn select(name: &str, label: &str, current: &str, options: &[String]) -> Markup {
    html! {
        label for=(name) { (label) }
        select id=(name) name=(name) {
            option value="" selected[current.is_empty()] { "any" }
            @for o in options {
                option value=(o) selected[o == current] { (o) }
            }
        }
    }
}

/// The message list.
pub fn list(
    ctx: &PageCtx,
    params: &ListParams,
    page: &Page,
    stats: &StoreStats,
    channels: &[String],
) -> Markup {
    let now = SystemTime::now();
    let total: u64 = stats.by_status.iter().map(|(_, n)| n).sum();
    let statuses: Vec<String> = Status::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    let types: Vec<String> = TemplateType::ALL
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    let mut channels = channels.to_vec();
    for c in ["email", "sms"] {
        if !channels.iter().any(|x| x == c) {
            channels.push(c.to_owned());
        }
    }
    layout(
        ctx,
        "Messages",
        "Messages",
        None,
        html! {
            h1 { "Messages" }
            nav.counts aria-label="Counts per status" {
                a href=(params.url(Some(""), None)) aria-current=[params.status.is_empty().then_some("true")] {
                    "all " span.n { (total) }
                }
                @for (s, n) in &stats.by_status {
                    a href=(params.url(Some(s.as_str()), None)) aria-current=[(params.status == s.as_str()).then_some("true")] {
                        (badge(*s)) " " span.n data-status=(s.as_str()) { (n) }
                    }
                }
            }
            form.filters method="get" action="/ui/" {
                div { (select("status", "Status", &params.status, &statuses)) }
                div { (select("template_type", "Template type", &params.template_type, &types)) }
                div { (select("channel", "Channel", &params.channel, &channels)) }
                div {
                    label for="recipient" { "Recipient" }
                    input id="recipient" name="recipient" type="search" value=(params.recipient) placeholder="exact address";
                }
                div.actions {
                    button type="submit" { "Filter" }
                    a href="/ui/" { "Clear" }
                }
            }
            @if page.messages.is_empty() {
                p.empty { "No messages match." }
            } @else {
                div.scroll {
                    table.messages {
                        thead { tr {
                            th scope="col" { "Created" }
                            th scope="col" { "Status" }
                            th scope="col" { "Recipient" }
                            th scope="col" { "Template type" }
                            th scope="col" { "Channel" }
                            th scope="col" { "Attempts" }
                            th scope="col" { "Last error" }
                        } }
                        tbody {
                            @for m in &page.messages {
                                tr {
                                    td { a href=(format!("/ui/messages/{}", encode(&m.id))) title=(m.id) {
                                        time datetime=(time(m.created_at)) { (relative(m.created_at, now)) }
                                    } }
                                    td { (badge(m.status)) }
                                    td.recipient { (m.message.recipient) }
                                    td { (m.message.template_type.as_str()) }
                                    td { (m.message.channel()) }
                                    td.num { (m.send_count) }
                                    td.err { (m.attempts.last().and_then(|a| a.error.as_deref()).map(|e| truncate(e, 90)).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if params.page_token.is_some() {
                    a href=(params.url(None, Some(""))) { "« Newest" }
                }
                @if let Some(t) = &page.next_page_token {
                    a rel="next" href=(params.url(None, Some(t))) { "Older »" }
                }
            }
        },
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A copy of `v` with the values of credential-bearing request headers masked.
fn mask_headers(mut v: Value) -> Value {
    for key in ["request_headers", "RequestHeaders"] {
        if let Some(Value::Object(h)) = v.get_mut(key) {
            for (name, value) in h.iter_mut() {
                if is_sensitive_header(name) {
                    *value = Value::String("***".into());
                }
            }
        }
    }
    v
}

/// What the policy did after attempt `a` (the `i`-th of `m`'s attempts).
fn decision(m: &StoredMessage, i: usize, a: &Attempt, max_attempts: u32) -> String {
    let last = i + 1 == m.attempts.len();
    match a.class {
        AttemptClass::Delivered => "delivered".into(),
        AttemptClass::Cancelled => "cancelled by the template: not sent, not retried".into(),
        AttemptClass::Permanent => "permanent failure: abandoned, not retried".into(),
        AttemptClass::Retryable if !last => {
            let next = &m.attempts[i + 1];
            format!(
                "retried: attempt {} at {}",
                next.number,
                time(next.started_at)
            )
        }
        AttemptClass::Retryable => match m.status {
            Status::Queued => format!(
                "retry scheduled{}: next attempt due {}",
                a.retry_after_s
                    .map(|s| format!(" (the server asked for Retry-After {s} s)"))
                    .unwrap_or_default(),
                time(m.next_attempt_at)
            ),
            Status::Abandoned => {
                format!("out of attempts ({max_attempts} allowed): abandoned")
            }
            Status::Processing => "being retried now".into(),
            s => s.as_str().to_owned(),
        },
    }
}

/// A message's detail page.
pub fn detail(ctx: &PageCtx, m: &StoredMessage, preview: &Preview, courier: &Courier) -> Markup {
    let now = SystemTime::now();
    let style = courier
        .channel_template(m.message.channel())
        .map_or(CtxStyle::Snake, |(_, style)| style);
    let message = mask_headers(serde_json::to_value(&m.message).unwrap_or(Value::Null));
    let ctx_json = mask_headers(ctx::build(&m.message, style));
    let retryable = matches!(m.status, Status::Abandoned | Status::Cancelled);
    let max_attempts = courier.policy().max_attempts;
    layout(
        ctx,
        &format!("Message {}", m.id),
        "Messages",
        None,
        html! {
            p.crumbs { a href="/ui/" { "← Messages" } }
            h1 { "Message " code { (m.id) } }
            dl.facts {
                dt { "Status" } dd { (badge(m.status)) }
                dt { "Recipient" } dd { (m.message.recipient) }
                dt { "Template type" } dd { (m.message.template_type.as_str()) }
                dt { "Channel" } dd { (m.message.channel()) }
                dt { "Attempts" } dd { (m.send_count) " of " (max_attempts) }
                dt { "Created" } dd { time datetime=(time(m.created_at)) { (time(m.created_at)) } " (" (relative(m.created_at, now)) ")" }
                dt { "Updated" } dd { (time(m.updated_at)) }
                @if m.status == Status::Queued {
                    dt { "Next attempt" } dd { (time(m.next_attempt_at)) " (" (relative(m.next_attempt_at, now)) ")" }
                }
            }
            @if retryable {
                form.retry method="post" action=(format!("/ui/messages/{}/retry", encode(&m.id))) {
                    button type="submit" id="retry" { "Retry this message" }
                    " Queues it again, due now; its attempts are kept."
                }
            }
            h2 { "Attempts" }
            @if m.attempts.is_empty() {
                p.empty { "No attempt yet." }
            } @else {
                ol.timeline {
                    @for (i, a) in m.attempts.iter().enumerate() {
                        li.(format!("attempt {}", class_name(a.class))) {
                            div.head {
                                strong { "#" (a.number) }
                                " " time datetime=(time(a.started_at)) { (time(a.started_at)) }
                                " · " span.outcome { (outcome(a)) }
                                " · " (format!("{:.1} ms", a.latency_ms))
                                @if let Some(r) = a.render_ms { " (render " (format!("{r:.2} ms")) ")" }
                            }
                            @if let Some(e) = &a.error { p.err { (e) } }
                            p.decision { "Decision: " (decision(m, i, a, max_attempts)) }
                            @if let Some(body) = &a.response_body {
                                details {
                                    summary { "Response body (" (body.len()) " bytes)" }
                                    pre.body { (body) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Payload" }
            (preview.markup())
            h2 { "Message" }
            div.cols {
                section {
                    h3 { "As stored" }
                    pre.json { (pretty(&message)) }
                }
                section {
                    h3 { "Template ctx (" (style.as_str()) " style)" }
                    pre.json { (pretty(&ctx_json)) }
                }
            }
        },
    )
}

fn class_name(c: AttemptClass) -> &'static str {
    match c {
        AttemptClass::Delivered => "delivered",
        AttemptClass::Retryable => "retryable",
        AttemptClass::Permanent => "permanent",
        AttemptClass::Cancelled => "cancelled",
    }
}

fn outcome(a: &Attempt) -> String {
    match (a.status, a.error_kind) {
        (Some(s), _) => format!("HTTP {s} ({})", class_name(a.class)),
        (None, Some(k)) => format!(
            "{} error ({})",
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            class_name(a.class)
        ),
        (None, None) => class_name(a.class).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_keep_filters() {
        let p = ListParams::parse("status=sent&channel=sms&recipient=a%2Bb%40x.test&page_token=7");
        assert_eq!(p.recipient, "a+b@x.test");
        assert_eq!(
            p.url(None, Some("")),
            "/ui/?status=sent&channel=sms&recipient=a%2Bb%40x.test"
        );
        assert_eq!(
            p.url(Some("queued"), Some("3")),
            "/ui/?status=queued&channel=sms&recipient=a%2Bb%40x.test&page_token=3"
        );
        let f = p.filter().unwrap();
        assert_eq!(f.status, Some(Status::Sent));
        assert_eq!(f.channel.as_deref(), Some("sms"));
        assert!(ListParams::parse("status=nope")
            .filter()
            .unwrap_err()
            .starts_with("status:"));
        assert!(ListParams::parse("page_token=x").filter().is_err());
    }

    #[test]
    fn credential_headers_are_masked() {
        let v = mask_headers(serde_json::json!({
            "request_headers": {"Authorization": "Bearer s3cret", "Accept-Language": "en"}
        }));
        assert_eq!(v["request_headers"]["Authorization"], "***");
        assert_eq!(v["request_headers"]["Accept-Language"], "en");
    }
}
