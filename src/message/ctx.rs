//! The `ctx` object a template sees, in the key style the user chose.
//!
//! The spec's mapping table is the contract: [`TOP_LEVEL`] and [`TEMPLATE_DATA`] list every known
//! key in both styles. User data inside `Identity`, `Traits`, `TransientPayload`,
//! `OAuth2LoginRequest` and `RequestHeaders` keeps its own keys, and unknown template-data fields
//! keep the key they were sent with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Message;

/// The key style of the ctx handed to templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtxStyle {
    /// `ctx.Recipient`, `ctx.TemplateData.RecoveryCode`: the documented form, and the default.
    #[default]
    Pascal,
    /// `ctx.recipient`, `ctx.template_data.recovery_code`: what newer reference releases send.
    Snake,
}

impl CtxStyle {
    /// `pascal` or `snake`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pascal => "pascal",
            Self::Snake => "snake",
        }
    }
}

impl fmt::Display for CtxStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CtxStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pascal" => Ok(Self::Pascal),
            "snake" => Ok(Self::Snake),
            other => Err(format!(
                "unknown ctx style {other:?}; expected pascal or snake"
            )),
        }
    }
}

/// Top-level ctx keys: (snake, pascal).
pub const TOP_LEVEL: [(&str, &str); 8] = [
    ("recipient", "Recipient"),
    ("subject", "Subject"),
    ("body", "Body"),
    ("html_body", "HTMLBody"),
    ("template_type", "TemplateType"),
    ("template_data", "TemplateData"),
    ("message_type", "MessageType"),
    ("request_headers", "RequestHeaders"),
];

/// Template-data keys: (snake, pascal).
pub const TEMPLATE_DATA: [(&str, &str); 19] = [
    ("to", "To"),
    ("recovery_url", "RecoveryURL"),
    ("recovery_code", "RecoveryCode"),
    ("verification_url", "VerificationURL"),
    ("verification_code", "VerificationCode"),
    ("login_code", "LoginCode"),
    ("registration_code", "RegistrationCode"),
    ("identity", "Identity"),
    ("traits", "Traits"),
    ("request_url", "RequestURL"),
    ("request_url_domain", "RequestURLDomain"),
    ("transient_payload", "TransientPayload"),
    ("expires_in_minutes", "ExpiresInMinutes"),
    ("changed_at", "ChangedAt"),
    ("added_at", "AddedAt"),
    ("oauth2_login_request", "OAuth2LoginRequest"),
    ("subject", "Subject"),
    ("body", "Body"),
    ("html_body", "HTMLBody"),
];

fn key(table: &[(&'static str, &'static str)], snake: &'static str, style: CtxStyle) -> &'static str {
    match style {
        CtxStyle::Snake => snake,
        CtxStyle::Pascal => table
            .iter()
            .find(|(s, _)| *s == snake)
            .map_or(snake, |(_, p)| p),
    }
}

/// Builds the ctx of `message` in `style`.
///
/// `HTMLBody` is omitted when the message has none; `RequestHeaders` is `{}` when none were sent;
/// template-data fields are present only when the message has them.
pub fn build(message: &Message, style: CtxStyle) -> Value {
    let k = |snake| key(&TOP_LEVEL, snake, style);
    let mut ctx = Map::with_capacity(8);
    ctx.insert(k("recipient").into(), Value::String(message.recipient.clone()));
    ctx.insert(k("subject").into(), Value::String(message.subject.clone()));
    ctx.insert(k("body").into(), Value::String(message.body.clone()));
    if let Some(html) = &message.html_body {
        ctx.insert(k("html_body").into(), Value::String(html.clone()));
    }
    ctx.insert(
        k("template_type").into(),
        Value::String(message.template_type.as_str().into()),
    );
    ctx.insert(k("template_data").into(), template_data(message, style));
    ctx.insert(
        k("message_type").into(),
        Value::String(message.message_type.as_str().into()),
    );
    ctx.insert(
        k("request_headers").into(),
        Value::Object(message.request_headers.clone().unwrap_or_default()),
    );
    Value::Object(ctx)
}

fn template_data(message: &Message, style: CtxStyle) -> Value {
    // Serializing writes snake keys for known fields and the sent keys for unknown ones.
    let snake = match serde_json::to_value(&message.template_data) {
        Ok(Value::Object(map)) => map,
        // TemplateData is a struct of JSON-representable fields: it always serializes to an object.
        _ => Map::new(),
    };
    if style == CtxStyle::Snake {
        return Value::Object(snake);
    }
    let mut out = Map::with_capacity(snake.len());
    for (name, value) in snake {
        let renamed = TEMPLATE_DATA
            .iter()
            .find(|(s, _)| *s == name)
            .map_or(name, |(_, p)| (*p).to_owned());
        out.insert(renamed, value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageType, TemplateType};
    use serde_json::json;

    fn every_field(style: CtxStyle) -> Value {
        // A message carrying every known template-data field plus unknown ones, written in `style`.
        let mut data = Map::new();
        for (i, (snake, pascal)) in TEMPLATE_DATA.iter().enumerate() {
            let name = if style == CtxStyle::Snake { snake } else { pascal };
            let value = match *snake {
                "identity" | "traits" | "transient_payload" | "oauth2_login_request" => {
                    json!({"Mixed_Case": {"keep": i}, "traits": {"lang": "de"}})
                }
                "expires_in_minutes" => json!(15),
                _ => json!(format!("value-{i}")),
            };
            data.insert((*name).to_owned(), value);
        }
        data.insert("CustomField".into(), json!({"x": 1}));
        data.insert("another_custom".into(), json!([1, 2]));
        let k = |snake| key(&TOP_LEVEL, snake, style);
        json!({
            k("recipient"): "a@example.com",
            k("subject"): "Subject line",
            k("body"): "Body text",
            k("html_body"): "<p>Body</p>",
            k("template_type"): "recovery_code_valid",
            k("template_data"): Value::Object(data),
            k("message_type"): "email",
            k("request_headers"): {"User-Agent": ["curl/8"], "X-Keep-Case": ["1"]},
        })
    }

    #[test]
    fn reads_both_styles_and_round_trips_every_field() {
        for input_style in [CtxStyle::Pascal, CtxStyle::Snake] {
            let input = every_field(input_style);
            let msg: Message = serde_json::from_value(input.clone()).unwrap();
            assert_eq!(msg.template_type, TemplateType::RecoveryCodeValid);
            assert_eq!(msg.message_type, MessageType::Email);
            assert_eq!(msg.template_data.expires_in_minutes, Some(15));
            assert_eq!(msg.template_data.to.as_deref(), Some("value-0"));
            assert_eq!(msg.template_data.extra.len(), 2, "unknown fields are kept");
            for output_style in [CtxStyle::Pascal, CtxStyle::Snake] {
                let ctx = build(&msg, output_style);
                assert_eq!(ctx, every_field(output_style), "{input_style} -> {output_style}");
            }
        }
    }

    #[test]
    fn absent_fields_follow_the_spec() {
        let msg: Message = serde_json::from_value(json!({
            "recipient": "+15550100", "template_type": "login_code_valid",
            "message_type": "sms", "body": "code 123456",
            "template_data": {"login_code": "123456"}
        }))
        .unwrap();
        let ctx = build(&msg, CtxStyle::Pascal);
        assert_eq!(
            ctx,
            json!({
                "Recipient": "+15550100", "Subject": "", "Body": "code 123456",
                "TemplateType": "login_code_valid", "TemplateData": {"LoginCode": "123456"},
                "MessageType": "sms", "RequestHeaders": {}
            })
        );
        assert_eq!(msg.channel(), "sms");
    }

    #[test]
    fn unknown_template_type_is_a_clear_error() {
        let err = Message::from_json(br#"{"recipient":"a@b.c","template_type":"password_reset"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("password_reset"), "{err}");
        assert!(err.contains("recovery_code_valid"), "lists the accepted ones: {err}");
    }

    #[test]
    fn style_parses() {
        assert_eq!("snake".parse::<CtxStyle>(), Ok(CtxStyle::Snake));
        assert!("camel".parse::<CtxStyle>().unwrap_err().contains("pascal or snake"));
    }
}
