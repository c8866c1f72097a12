//! The template playground: a page with an editor, and two JSON endpoints it calls as the author
//! types. `render` renders the template against a sample (or pasted) message; `check` renders it
//! against every sample, as `courier check` does. Both run on the delivery render pool, under the
//! delivery limits; nothing is sent. The detail page's payload preview is rendered here too.
//!
//! Template kinds: requests name one (`"kind": "jsonnet"`, the default), so another kind of
//! template can be added as a variant of [`TemplateKind`] with its own render function.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::delivery::Courier;
use crate::message::{ctx, samples, CtxStyle, Message, MessageType, TemplateType};
use crate::template::{default_template, RenderError, Template};

use super::pages::{layout, PageCtx};

/// The kinds of template the playground renders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// A Jsonnet body template (`function(ctx) {...}`).
    #[default]
    Jsonnet,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderRequest {
    #[serde(default)]
    kind: TemplateKind,
    template: String,
    #[serde(default)]
    template_type: Option<TemplateType>,
    #[serde(default)]
    message_type: Option<MessageType>,
    #[serde(default)]
    style: Option<CtxStyle>,
    /// A pasted message (JSON, either key style); replaces the sample when not blank.
    #[serde(default)]
    message: Option<String>,
}

/// Answers `POST /ui/playground/{action}`.
pub async fn answer(courier: &Courier, action: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let req: RenderRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return super::json(
                StatusCode::BAD_REQUEST,
                &json!({"error": {"code": 400, "status": "Bad Request", "reason": format!("invalid request: {e}")}}),
            )
        }
    };
    let template = match req.kind {
        TemplateKind::Jsonnet => Template::new("playground.jsonnet", req.template.as_str()),
    };
    // As at load: an explicit style wins, else the names the template reads decide.
    let style = match req.style {
        Some(s) => s,
        None => match crate::template::style::decide(&template, None) {
            Ok(choice) => choice.style,
            Err(e) => return super::json(StatusCode::OK, &render_answer(Err(e))),
        },
    };
    match action {
        "render" => {
            let message = match pick_message(&req) {
                Ok(m) => m,
                Err(reason) => {
                    return super::json(
                        StatusCode::OK,
                        &json!({"ok": false, "error": {"kind": "message", "message": reason}}),
                    )
                }
            };
            let result = courier
                .pool()
                .render(&template, ctx::build(&message, style))
                .await;
            super::json(StatusCode::OK, &render_answer(result))
        }
        "check" => super::json(StatusCode::OK, &check_all(courier, &template, style).await),
        _ => super::json(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "status": "Not Found", "reason": format!("no playground action {action:?}; expected render or check")}}),
        ),
    }
}

fn pick_message(req: &RenderRequest) -> Result<Message, String> {
    if let Some(text) = req.message.as_deref().filter(|m| !m.trim().is_empty()) {
        return Message::from_json(text.as_bytes()).map_err(|e| format!("pasted message: {e}"));
    }
    let t = req.template_type.unwrap_or(TemplateType::Stub);
    let k = req.message_type.unwrap_or_default();
    samples::message(t, k).ok_or_else(|| {
        format!(
            "there is no {} sample for {}: the reference never sends it that way",
            k.as_str(),
            t.as_str()
        )
    })
}

fn render_answer(result: Result<String, RenderError>) -> Value {
    match result {
        Ok(payload) => {
            let pretty = serde_json::from_str::<Value>(&payload)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| payload.clone());
            json!({"ok": true, "payload": pretty, "bytes": payload.len()})
        }
        Err(e) => {
            let (line, column) = e.location().unzip();
            json!({"ok": false, "cancelled": e.is_cancelled(), "error": {
                "kind": format!("{:?}", e.kind()).to_lowercase(),
                "line": line,
                "column": column,
                "field": e.field(),
                "message": e.message(),
                "summary": e.detail(),
                "full": e.to_string(),
            }})
        }
    }
}

async fn check_all(courier: &Courier, template: &Template, style: CtxStyle) -> Value {
    let mut rows = Vec::new();
    let (mut ok, mut cancelled, mut failed) = (0, 0, 0);
    for (t, kind, message) in samples::all() {
        let (result, bytes, detail) = match courier
            .pool()
            .render(template, ctx::build(&message, style))
            .await
        {
            Ok(p) => {
                ok += 1;
                ("ok", Some(p.len()), String::new())
            }
            Err(e) if e.is_cancelled() => {
                cancelled += 1;
                ("cancelled", None, "error \"cancel\": not sent".to_owned())
            }
            Err(e) => {
                failed += 1;
                ("error", None, e.detail())
            }
        };
        rows.push(json!({"template_type": t.as_str(), "kind": kind.as_str(), "result": result, "bytes": bytes, "detail": detail}));
    }
    json!({"style": style.as_str(), "rows": rows, "ok": ok, "cancelled": cancelled, "failed": failed})
}

/// The payload a stored message renders to with its channel's template today.
pub enum Preview {
    /// The channel's template rendered it.
    Payload(String),
    /// The channel sends no body, or is not configured.
    NoTemplate(String),
    /// The template failed (or cancelled) for this message.
    Failed(String),
}

impl Preview {
    pub fn markup(&self) -> Markup {
        html! {
            @match self {
                Preview::Payload(p) => {
                    p.note { "Rendered now with the channel's current template; nothing is sent." }
                    pre.json id="payload" { (p) }
                }
                Preview::NoTemplate(why) => p.empty { (why) },
                Preview::Failed(e) => {
                    p.note { "The channel's current template fails for this message:" }
                    pre.err { (e) }
                }
            }
        }
    }
}

/// Renders `message` with its channel's template (the store keeps messages, not payloads).
pub async fn preview(courier: &Courier, message: &Message) -> Preview {
    let channel = message.channel();
    let Some((template, style)) = courier.channel_template(channel) else {
        return Preview::NoTemplate(format!(
            "Channel {channel:?} has no body template here (not configured, or it sends no body)."
        ));
    };
    match courier
        .pool()
        .render(&template, ctx::build(message, style))
        .await
    {
        Ok(p) => Preview::Payload(
            serde_json::from_str::<Value>(&p)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(p),
        ),
        Err(e) => Preview::Failed(e.to_string()),
    }
}

/// The playground page. The editor starts with the email channel's template (else the default).
pub fn page(ctx: &PageCtx, courier: &Courier) -> Markup {
    let (start, style) = courier
        .channel_template("email")
        .unwrap_or_else(|| (default_template(CtxStyle::Snake), CtxStyle::Snake));
    let limits = courier.pool().limits();
    layout(
        ctx,
        "Playground",
        "Playground",
        None,
        html! {
            h1 { "Template playground" }
            p.note {
                "Renders on the delivery engine with its limits ("
                (format!("{:?}", limits.timeout)) " per render, "
                (limits.max_output_bytes / 1024) " KiB of output); nothing is sent."
            }
            noscript { p.error { "The playground needs JavaScript; the message pages do not." } }
            div.playground {
                section.inputs aria-label="Template" {
                    div.controls {
                        div {
                            label for="kind" { "Template kind" }
                            select id="kind" { option value="jsonnet" selected { "Jsonnet body" } }
                        }
                        div {
                            label for="sample-type" { "Sample type" }
                            select id="sample-type" {
                                @for t in TemplateType::ALL {
                                    option value=(t.as_str()) selected[t == TemplateType::VerificationCodeValid] { (t.as_str()) }
                                }
                            }
                        }
                        div {
                            label for="sample-kind" { "Sent as" }
                            select id="sample-kind" {
                                option value="email" selected { "email" }
                                option value="sms" { "sms" }
                            }
                        }
                        div {
                            label for="style" { "ctx style" }
                            select id="style" {
                                @for s in [CtxStyle::Pascal, CtxStyle::Snake] {
                                    option value=(s.as_str()) selected[s == style] { (s.as_str()) }
                                }
                            }
                        }
                    }
                    details {
                        summary { "Paste a message instead of a sample" }
                        label for="message" { "Message JSON (either key style)" }
                        textarea id="message" rows="6" spellcheck="false" {}
                    }
                    label for="template" { "Template (" (start.name()) ")" }
                    div.editor {
                        div.gutter id="gutter" aria-hidden="true" {}
                        div.band id="band" hidden {}
                        textarea id="template" spellcheck="false" autocapitalize="off" autocomplete="off" wrap="off" aria-describedby="error" { (start.source()) }
                    }
                    p.hint { "Tab moves focus out of the editor, as everywhere else." }
                }
                section.outputs aria-label="Result" {
                    p id="status" role="status" aria-live="polite" {}
                    div.error id="error" role="alert" hidden {}
                    h2 { "Payload" }
                    pre.json id="payload" tabindex="0" {}
                    h2 { "All sample types" }
                    button type="button" id="check-all" { "Check all types" }
                    div id="check-table" {}
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers() {
        let r: RenderRequest = serde_json::from_value(json!({
            "template": "function(ctx) {}", "template_type": "login_code_valid",
            "message_type": "sms", "style": "snake"
        }))
        .unwrap();
        assert_eq!(r.kind, TemplateKind::Jsonnet);
        assert_eq!(
            pick_message(&r).unwrap().template_type,
            TemplateType::LoginCodeValid
        );
        let r: RenderRequest = serde_json::from_value(json!({
            "template": "", "template_type": "recovery_valid", "message_type": "sms"
        }))
        .unwrap();
        assert!(pick_message(&r)
            .unwrap_err()
            .contains("no sms sample for recovery_valid"));
        let r: RenderRequest = serde_json::from_value(json!({
            "template": "", "message": "{\"Recipient\": \"x@y.z\", \"TemplateType\": \"stub\"}"
        }))
        .unwrap();
        assert_eq!(pick_message(&r).unwrap().recipient, "x@y.z");
        assert!(
            serde_json::from_value::<RenderRequest>(json!({"template": "", "kind": "liquid"}))
                .is_err()
        );

        let a = render_answer(Ok(r#"{"a":1}"#.into()));
        assert_eq!(
            a,
            json!({"ok": true, "payload": "{\n  \"a\": 1\n}", "bytes": 7})
        );
    }
}
