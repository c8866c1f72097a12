//! The `ctx` object a template sees, in the key style the user chose.
//!
//! The spec's mapping table is the contract: [`TOP_LEVEL`] and [`TEMPLATE_DATA`] (generated in
//! [`super::keys`]) list every known key in both styles. User data inside `Identity`, `Traits`, `TransientPayload`,
//! `OAuth2LoginRequest` and `RequestHeaders` keeps its own keys, and unknown template-data fields
//! keep the key they were sent with.

use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::keys::{DataKey, Kind, Slot, TopKey};
use super::model::{self, Model};
use super::{Message, TemplateData};

/// The key style of the ctx handed to templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtxStyle {
    /// `ctx.Recipient`, `ctx.TemplateData.RecoveryCode`: the form the seeds document.
    Pascal,
    /// `ctx.recipient`, `ctx.template_data.recovery_code`: what the reference sends today, and
    /// what a template that reads no ctx key names gets.
    #[default]
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

pub use super::keys::{TEMPLATE_DATA, TOP_LEVEL};

/// Builds the ctx of `message` in `style` as a JSON value.
///
/// Template data has the reference's typed shape for the message's type and kind (see
/// [`super::model`]): every field of the model is present, a field the producer left out gets
/// its zero value (`""`, `0` or `null`), a producer's `null` stays `null`, and `?` fields are
/// left out when empty. Known fields outside the model and unknown fields follow as sent.
/// `HTMLBody` is left out when empty; `RequestHeaders` is what the producer sent (`null` when
/// nothing).
pub fn build(message: &Message, style: CtxStyle) -> Value {
    // Serializing a view cannot fail: every part is plain JSON data with string keys.
    serde_json::to_value(View {
        message,
        style,
        typed: true,
    })
    .unwrap_or(Value::Null)
}

/// The same ctx as [`build`], written directly as JSON text: the cheapest form to hand to a
/// render pool (no intermediate value to allocate, clone or drop).
pub fn to_json(message: &Message, style: CtxStyle) -> String {
    serde_json::to_string(&View {
        message,
        style,
        typed: true,
    })
    .unwrap_or_default()
}

/// [`to_json`] without the typed model: template data as the producer sent it, no zero values.
/// Only for the render bench, which measures what the typed model costs.
#[doc(hidden)]
pub fn to_json_as_sent(message: &Message, style: CtxStyle) -> String {
    serde_json::to_string(&View {
        message,
        style,
        typed: false,
    })
    .unwrap_or_default()
}

/// The ctx of `message` in `style` as a value to serialize: what [`to_json`] writes, for
/// readers that take it without the text.
pub(crate) fn view(message: &Message, style: CtxStyle) -> impl Serialize + '_ {
    View {
        message,
        style,
        typed: true,
    }
}

/// Whether none of the JSON values `message` carries (user data, unknown template-data fields,
/// request headers) nests more than `levels` arrays or objects deep.
pub(crate) fn values_within(message: &Message, levels: usize) -> bool {
    let d = &message.template_data;
    let headers = message.request_headers.iter().flat_map(|h| h.values());
    DataKey::ALL
        .iter()
        .filter_map(|&k| d.json(k))
        .chain(d.extra.values())
        .chain(headers)
        .all(|v| nests_within(v, levels))
}

/// Whether `v` nests at most `levels` arrays or objects deep (a scalar: 0). Recurses at most
/// `levels` deep, however deep `v` is.
fn nests_within(v: &Value, levels: usize) -> bool {
    match v {
        Value::Array(items) => levels > 0 && items.iter().all(|i| nests_within(i, levels - 1)),
        Value::Object(members) => {
            levels > 0 && members.values().all(|m| nests_within(m, levels - 1))
        }
        _ => true,
    }
}

/// A message seen as a ctx in one key style.
struct View<'a> {
    message: &'a Message,
    style: CtxStyle,
    /// Template data in the type's model (else as sent).
    typed: bool,
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (m, style) = (self.message, self.style);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(TopKey::Recipient.name(style), &m.recipient)?;
        map.serialize_entry(TopKey::Subject.name(style), &m.subject)?;
        map.serialize_entry(TopKey::Body.name(style), &m.body)?;
        if let Some(html) = m.html_body.as_deref().filter(|h| !h.is_empty()) {
            map.serialize_entry(TopKey::HtmlBody.name(style), html)?;
        }
        map.serialize_entry(TopKey::TemplateType.name(style), m.template_type.as_str())?;
        map.serialize_entry(
            TopKey::TemplateData.name(style),
            &DataView {
                data: &m.template_data,
                model: if self.typed {
                    model::of(m.template_type, m.message_type)
                } else {
                    model::AS_SENT
                },
                style,
            },
        )?;
        map.serialize_entry(TopKey::MessageType.name(style), m.message_type.as_str())?;
        map.serialize_entry(TopKey::RequestHeaders.name(style), &m.request_headers)?;
        map.end()
    }
}

struct DataView<'a> {
    data: &'a TemplateData,
    model: Model,
    style: CtxStyle,
}

impl Serialize for DataView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.data;
        let mut map = s.serialize_map(None)?;
        for field in self.model.fields {
            let mut slot = d.get(field.key);
            if let (Slot::Absent, Some(fallback)) = (slot, field.fallback) {
                slot = d.get(fallback);
            }
            if field.optional && slot.is_empty() {
                continue;
            }
            if slot == Slot::Absent {
                slot = match field.key.kind() {
                    Kind::Text => Slot::Text(""),
                    Kind::Int => Slot::Int(0),
                    Kind::Json => Slot::Null,
                };
            }
            map.serialize_entry(field.key.name(self.style), &slot)?;
        }
        for &key in DataKey::ALL {
            if self.model.keys & key.bit() != 0 {
                continue;
            }
            let slot = d.get(key);
            if slot != Slot::Absent {
                map.serialize_entry(key.name(self.style), &slot)?;
            }
        }
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
    use serde_json::{json, Map};

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
            assert_eq!(msg.template_data.expires_in_minutes, Some(Some(15)));
            assert_eq!(msg.template_data.text(DataKey::To), Some("value-0"));
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
                "TemplateType": "login_code_valid",
                "TemplateData": {
                    "To": "", "LoginCode": "123456", "Identity": null, "RequestURL": "",
                    "RequestURLDomain": "", "TransientPayload": null, "ExpiresInMinutes": 0
                },
                "MessageType": "sms", "RequestHeaders": null
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
