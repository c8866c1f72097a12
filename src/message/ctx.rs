//! The `ctx` object a template sees, in the key style the user chose.
//!
//! The spec's mapping table is the contract: [`TOP_LEVEL`] and [`TEMPLATE_DATA`] list every known
//! key in both styles. User data inside `Identity`, `Traits`, `TransientPayload`,
//! `OAuth2LoginRequest` and `RequestHeaders` keeps its own keys, and unknown template-data fields
//! keep the key they were sent with.

use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{Message, TemplateData};

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

/// Builds the ctx of `message` in `style` as a JSON value.
///
/// `HTMLBody` is omitted when the message has none; `RequestHeaders` is `{}` when none were sent;
/// template-data fields are present only when the message has them.
pub fn build(message: &Message, style: CtxStyle) -> Value {
    // Serializing a view cannot fail: every part is plain JSON data with string keys.
    serde_json::to_value(View { message, style }).unwrap_or(Value::Null)
}

/// The same ctx as [`build`], written directly as JSON text: the cheapest form to hand to a
/// render pool (no intermediate value to allocate, clone or drop).
pub fn to_json(message: &Message, style: CtxStyle) -> String {
    serde_json::to_string(&View { message, style }).unwrap_or_default()
}

/// A message seen as a ctx in one key style.
struct View<'a> {
    message: &'a Message,
    style: CtxStyle,
}

impl View<'_> {
    fn key(&self, snake: &'static str, pascal: &'static str) -> &'static str {
        match self.style {
            CtxStyle::Snake => snake,
            CtxStyle::Pascal => pascal,
        }
    }
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.message;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(self.key("recipient", "Recipient"), &m.recipient)?;
        map.serialize_entry(self.key("subject", "Subject"), &m.subject)?;
        map.serialize_entry(self.key("body", "Body"), &m.body)?;
        if let Some(html) = &m.html_body {
            map.serialize_entry(self.key("html_body", "HTMLBody"), html)?;
        }
        map.serialize_entry(
            self.key("template_type", "TemplateType"),
            m.template_type.as_str(),
        )?;
        map.serialize_entry(
            self.key("template_data", "TemplateData"),
            &DataView {
                data: &m.template_data,
                style: self.style,
            },
        )?;
        map.serialize_entry(
            self.key("message_type", "MessageType"),
            m.message_type.as_str(),
        )?;
        let empty = Map::new();
        map.serialize_entry(
            self.key("request_headers", "RequestHeaders"),
            m.request_headers.as_ref().unwrap_or(&empty),
        )?;
        map.end()
    }
}

struct DataView<'a> {
    data: &'a TemplateData,
    style: CtxStyle,
}

impl Serialize for DataView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.data;
        let mut map = s.serialize_map(None)?;
        // One line per known field, in the order of TEMPLATE_DATA; a test checks the two agree.
        macro_rules! fields {
            ($($field:ident => $pascal:literal),* $(,)?) => {$(
                if let Some(v) = &d.$field {
                    let key = match self.style {
                        CtxStyle::Snake => stringify!($field),
                        CtxStyle::Pascal => $pascal,
                    };
                    map.serialize_entry(key, v)?;
                }
            )*};
        }
        fields!(
            to => "To",
            recovery_url => "RecoveryURL",
            recovery_code => "RecoveryCode",
            verification_url => "VerificationURL",
            verification_code => "VerificationCode",
            login_code => "LoginCode",
            registration_code => "RegistrationCode",
            identity => "Identity",
            traits => "Traits",
            request_url => "RequestURL",
            request_url_domain => "RequestURLDomain",
            transient_payload => "TransientPayload",
            expires_in_minutes => "ExpiresInMinutes",
            changed_at => "ChangedAt",
            added_at => "AddedAt",
            oauth2_login_request => "OAuth2LoginRequest",
            subject => "Subject",
            body => "Body",
            html_body => "HTMLBody",
        );
        for (k, v) in &d.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
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
            let name = if style == CtxStyle::Snake {
                snake
            } else {
                pascal
            };
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
        let k = |snake: &str| {
            let (s, p) = TOP_LEVEL.iter().find(|(s, _)| *s == snake).unwrap();
            if style == CtxStyle::Snake {
                *s
            } else {
                *p
            }
        };
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
                assert_eq!(
                    ctx,
                    every_field(output_style),
                    "{input_style} -> {output_style}"
                );
                // The text form is the same ctx, key order included.
                assert_eq!(to_json(&msg, output_style), ctx.to_string());
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
        assert!(
            err.contains("recovery_code_valid"),
            "lists the accepted ones: {err}"
        );
    }

    #[test]
    fn style_parses() {
        assert_eq!("snake".parse::<CtxStyle>(), Ok(CtxStyle::Snake));
        assert!("camel"
            .parse::<CtxStyle>()
            .unwrap_err()
            .contains("pascal or snake"));
    }
}
