//! Courier messages: what a producer queues and what `courier serve` accepts.
//!
//! A [`Message`] is read from JSON in either key style of the reference courier (PascalCase, as the
//! seeds document it, or snake_case, as newer releases send it), at the top level and inside
//! template data. The JSON the reference courier posts for the template `function(ctx) ctx` is itself
//! a valid message. Turning a message into the `ctx` a template sees is [`ctx`]'s job.

pub mod ctx;
pub mod keys;
pub mod model;
pub mod samples;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use ctx::CtxStyle;
pub use keys::{DataKey, TemplateData};

/// The kind of event a message is about; the reference courier's `template_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // the variant names are the documented wire values
pub enum TemplateType {
    RecoveryInvalid,
    RecoveryValid,
    RecoveryCodeInvalid,
    RecoveryCodeValid,
    VerificationInvalid,
    VerificationValid,
    VerificationCodeInvalid,
    VerificationCodeValid,
    LoginCodeValid,
    RegistrationCodeValid,
    VerifiableAddressChanged,
    AuthenticatorKeyAdded,
    Stub,
}

impl TemplateType {
    /// Every template type, in the order of the spec's table.
    pub const ALL: [TemplateType; 13] = [
        Self::RecoveryInvalid,
        Self::RecoveryValid,
        Self::RecoveryCodeInvalid,
        Self::RecoveryCodeValid,
        Self::VerificationInvalid,
        Self::VerificationValid,
        Self::VerificationCodeInvalid,
        Self::VerificationCodeValid,
        Self::LoginCodeValid,
        Self::RegistrationCodeValid,
        Self::VerifiableAddressChanged,
        Self::AuthenticatorKeyAdded,
        Self::Stub,
    ];

    /// The template types the reference also sends as SMS.
    pub const SMS: [TemplateType; 7] = [
        Self::RecoveryCodeValid,
        Self::VerificationCodeValid,
        Self::LoginCodeValid,
        Self::RegistrationCodeValid,
        Self::VerifiableAddressChanged,
        Self::AuthenticatorKeyAdded,
        Self::Stub,
    ];

    /// The wire name, e.g. `recovery_code_valid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecoveryInvalid => "recovery_invalid",
            Self::RecoveryValid => "recovery_valid",
            Self::RecoveryCodeInvalid => "recovery_code_invalid",
            Self::RecoveryCodeValid => "recovery_code_valid",
            Self::VerificationInvalid => "verification_invalid",
            Self::VerificationValid => "verification_valid",
            Self::VerificationCodeInvalid => "verification_code_invalid",
            Self::VerificationCodeValid => "verification_code_valid",
            Self::LoginCodeValid => "login_code_valid",
            Self::RegistrationCodeValid => "registration_code_valid",
            Self::VerifiableAddressChanged => "verifiable_address_changed",
            Self::AuthenticatorKeyAdded => "authenticator_key_added",
            Self::Stub => "stub",
        }
    }
}

impl fmt::Display for TemplateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown template type name; lists the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown template type {name:?}; expected one of: {}", TemplateType::ALL.map(|t| t.as_str()).join(", "))]
pub struct UnknownTemplateType {
    /// The name that was given.
    pub name: String,
}

impl FromStr for TemplateType {
    type Err = UnknownTemplateType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTemplateType { name: s.to_owned() })
    }
}

/// Whether a message is an email or a text message.
///
/// Read leniently, as reference versions differ: `"email"`, `"sms"` or `"phone"` in any case, or
/// the numeric form `1` (email) and `2` (SMS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// An email: has a subject, a plain-text body and maybe an HTML body.
    #[default]
    Email,
    /// A text message: the body is the SMS text, the subject is empty.
    Sms,
}

impl<'de> Deserialize<'de> for MessageType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) if s.eq_ignore_ascii_case("email") => Ok(Self::Email),
            Value::String(s)
                if s.eq_ignore_ascii_case("sms") || s.eq_ignore_ascii_case("phone") =>
            {
                Ok(Self::Sms)
            }
            Value::Number(n) if n.as_u64() == Some(1) => Ok(Self::Email),
            Value::Number(n) if n.as_u64() == Some(2) => Ok(Self::Sms),
            _ => Err(serde::de::Error::custom(format!(
                "unknown message type {v}; expected \"email\" or \"sms\""
            ))),
        }
    }
}

impl MessageType {
    /// The wire name: `email` or `sms`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }
}

/// One notification message.
///
/// Deserializing accepts both key styles (`Recipient` or `recipient`, `TemplateData.RecoveryCode` or
/// `template_data.recovery_code`); serializing writes snake_case, the canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Producer-assigned id, if any (`courier serve` assigns one when absent).
    #[serde(
        default,
        alias = "ID",
        alias = "Id",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    /// Email address, or phone number for SMS.
    #[serde(alias = "Recipient")]
    pub recipient: String,
    /// Which event the message is about.
    #[serde(alias = "TemplateType")]
    pub template_type: TemplateType,
    /// Per-type data.
    #[serde(default, alias = "TemplateData")]
    pub template_data: TemplateData,
    /// Rendered subject (email); empty for SMS.
    #[serde(default, alias = "Subject")]
    pub subject: String,
    /// Rendered plain-text body, or the SMS text.
    #[serde(default, alias = "Body")]
    pub body: String,
    /// Rendered HTML body, when the producer made one.
    #[serde(default, alias = "HTMLBody", skip_serializing_if = "Option::is_none")]
    pub html_body: Option<String>,
    /// Email or SMS; email when absent.
    #[serde(default, alias = "MessageType")]
    pub message_type: MessageType,
    /// The channel id that delivers it; `email` for email and `sms` for SMS when absent.
    #[serde(default, alias = "Channel", skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Allow-listed headers of the user's request that triggered the message; `None` when the
    /// producer sent `null` or nothing (templates then see `null`).
    #[serde(
        default,
        alias = "RequestHeaders",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_headers: Option<Map<String, Value>>,
}

/// A message that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid message: {0}")]
pub struct MessageError(#[source] pub serde_json::Error);

impl Message {
    /// Reads a message from JSON in either key style.
    ///
    /// # Errors
    /// Malformed JSON, a missing `recipient` or `template_type`, an unknown template type, or a
    /// known field of the wrong type; the error says which and where.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        serde_json::from_slice(bytes).map_err(MessageError)
    }

    /// The channel that delivers this message: its own, else `email` or `sms` by message type.
    pub fn channel(&self) -> &str {
        match &self.channel {
            Some(c) if !c.is_empty() => c,
            _ => self.message_type.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_is_read_leniently() {
        for (v, want) in [
            ("\"email\"", MessageType::Email),
            ("\"SMS\"", MessageType::Sms),
            ("\"phone\"", MessageType::Sms),
            ("1", MessageType::Email),
            ("2", MessageType::Sms),
        ] {
            let json = format!(r#"{{"recipient":"x","template_type":"stub","message_type":{v}}}"#);
            assert_eq!(
                Message::from_json(json.as_bytes()).unwrap().message_type,
                want,
                "{v}"
            );
        }
        let err =
            Message::from_json(br#"{"recipient":"x","template_type":"stub","message_type":"fax"}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown message type \"fax\""), "{err}");
    }

    #[test]
    fn channel_defaults_by_message_type() {
        let m = Message::from_json(
            br#"{"recipient":"+1555","template_type":"stub","MessageType":"sms"}"#,
        )
        .unwrap();
        assert_eq!(m.channel(), "sms");
        let m = Message::from_json(
            br#"{"recipient":"a@b.c","template_type":"stub","channel":"alerts"}"#,
        )
        .unwrap();
        assert_eq!(m.channel(), "alerts");
        let m = Message::from_json(br#"{"recipient":"a@b.c","template_type":"stub"}"#).unwrap();
        assert_eq!(m.channel(), "email");
    }
}
