//! The data a message template sees: the reference's model for each template type and channel,
//! with Go's field names (`.To`, `.RecoveryCode`, `.Identity.traits.lang`, `.ExpiresInMinutes`).
//!
//! The reference renders from one Go struct per type and channel, so a template sees exactly that
//! type's fields, absent ones as their zero value (`""`, `0`, nil). User data (`Identity`,
//! `Traits`, `TransientPayload`) keeps its own keys and, as Go's JSON decoding does, turns every
//! number into a float. `OAuth2LoginRequest` is a Go struct there, so its keys are Go names too
//! (`.OAuth2LoginRequest.Client.ClientName`).

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::Value;
use serde_json::Value as Json;

use crate::message::{DataKey, Message, MessageType, TemplateData, TemplateType};

/// One field of a reference model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    To,
    RecoveryUrl,
    RecoveryCode,
    VerificationUrl,
    VerificationCode,
    LoginCode,
    RegistrationCode,
    Identity,
    Traits,
    RequestUrl,
    RequestUrlDomain,
    TransientPayload,
    ExpiresInMinutes,
    ChangedAt,
    AddedAt,
    OAuth2LoginRequest,
    Subject,
    Body,
    HtmlBody,
}

impl Field {
    fn go_name(self) -> &'static str {
        match self {
            Self::To => "To",
            Self::RecoveryUrl => "RecoveryURL",
            Self::RecoveryCode => "RecoveryCode",
            Self::VerificationUrl => "VerificationURL",
            Self::VerificationCode => "VerificationCode",
            Self::LoginCode => "LoginCode",
            Self::RegistrationCode => "RegistrationCode",
            Self::Identity => "Identity",
            Self::Traits => "Traits",
            Self::RequestUrl => "RequestURL",
            Self::RequestUrlDomain => "RequestURLDomain",
            Self::TransientPayload => "TransientPayload",
            Self::ExpiresInMinutes => "ExpiresInMinutes",
            Self::ChangedAt => "ChangedAt",
            Self::AddedAt => "AddedAt",
            Self::OAuth2LoginRequest => "OAuth2LoginRequest",
            Self::Subject => "Subject",
            Self::Body => "Body",
            Self::HtmlBody => "HTMLBody",
        }
    }
}

use Field as F;

const INVALID: &[Field] = &[F::To, F::RequestUrl, F::TransientPayload];
const EMAIL_CODE_OAUTH: &[Field] = &[
    F::To,
    F::Identity,
    F::RequestUrl,
    F::TransientPayload,
    F::ExpiresInMinutes,
    F::OAuth2LoginRequest,
];
const SMS_CODE: &[Field] = &[
    F::To,
    F::Identity,
    F::RequestUrl,
    F::RequestUrlDomain,
    F::TransientPayload,
    F::ExpiresInMinutes,
    F::OAuth2LoginRequest,
];

/// The fields of the model for `t` sent as `kind`, as the spec's section 3 lists them, or `None`
/// when the reference never sends that pair. Code fields are added by [`code_field`].
fn fields(t: TemplateType, kind: MessageType) -> Option<Vec<Field>> {
    use MessageType::{Email, Sms};
    use TemplateType as T;
    let with = |base: &[Field], extra: &[Field]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        Some(v)
    };
    match (t, kind) {
        (
            T::RecoveryInvalid
            | T::RecoveryCodeInvalid
            | T::VerificationInvalid
            | T::VerificationCodeInvalid,
            Email,
        ) => Some(INVALID.to_vec()),
        (T::RecoveryValid, Email) => with(
            &[F::To, F::RecoveryUrl, F::Identity, F::RequestUrl],
            &[F::TransientPayload, F::ExpiresInMinutes],
        ),
        (T::RecoveryCodeValid, Email) => with(
            &[F::To, F::RecoveryCode, F::Identity, F::RequestUrl],
            &[F::TransientPayload, F::ExpiresInMinutes],
        ),
        (T::VerificationValid, Email) => with(EMAIL_CODE_OAUTH, &[F::VerificationUrl]),
        (T::VerificationCodeValid, Email) => {
            with(EMAIL_CODE_OAUTH, &[F::VerificationUrl, F::VerificationCode])
        }
        (T::LoginCodeValid, Email) => with(EMAIL_CODE_OAUTH, &[F::LoginCode]),
        (T::RegistrationCodeValid, Email) => with(
            &[F::To, F::Traits, F::RegistrationCode, F::RequestUrl],
            &[
                F::TransientPayload,
                F::ExpiresInMinutes,
                F::OAuth2LoginRequest,
            ],
        ),
        (T::VerifiableAddressChanged, _) => {
            Some(vec![F::To, F::Identity, F::ChangedAt, F::TransientPayload])
        }
        (T::AuthenticatorKeyAdded, _) => {
            Some(vec![F::To, F::Identity, F::AddedAt, F::TransientPayload])
        }
        (T::Stub, Email) => Some(vec![F::To, F::Subject, F::Body, F::HtmlBody]),
        (T::Stub, Sms) => Some(vec![F::To, F::Body, F::Identity]),
        (T::RecoveryCodeValid, Sms) => {
            // The reference's SMS recovery model has no OAuth2 login request.
            let mut v = SMS_CODE.to_vec();
            v.retain(|f| *f != F::OAuth2LoginRequest);
            v.push(F::RecoveryCode);
            Some(v)
        }
        (T::VerificationCodeValid, Sms) => with(SMS_CODE, &[F::VerificationCode]),
        (T::LoginCodeValid, Sms) => with(SMS_CODE, &[F::LoginCode]),
        (T::RegistrationCodeValid, Sms) => with(SMS_CODE, &[F::RegistrationCode]),
        (_, Sms) => None,
    }
}

/// Whether the reference sends `t` as `kind` (all 13 types by email, 7 by SMS).
pub fn exists(t: TemplateType, kind: MessageType) -> bool {
    fields(t, kind).is_some()
}

/// Template data for `message`: its type's model with Go field names, or `None` when the reference
/// never sends that type by that channel (e.g. `recovery_valid` by SMS).
pub fn data(message: &Message) -> Option<Value> {
    let kind = message.message_type;
    let fields = fields(message.template_type, kind)?;
    let d = &message.template_data;
    let mut map = BTreeMap::new();
    for f in fields {
        let v = match f {
            F::To => string(d.text(DataKey::To).unwrap_or(&message.recipient)),
            F::RecoveryUrl => opt_string(d.text(DataKey::RecoveryUrl)),
            // The reference sends the SMS recovery code under `verification_code`.
            F::RecoveryCode if kind == MessageType::Sms => opt_string(
                d.text(DataKey::RecoveryCode)
                    .or(d.text(DataKey::VerificationCode)),
            ),
            F::RecoveryCode => opt_string(d.text(DataKey::RecoveryCode)),
            F::VerificationUrl => opt_string(d.text(DataKey::VerificationUrl)),
            F::VerificationCode => opt_string(d.text(DataKey::VerificationCode)),
            F::LoginCode => opt_string(d.text(DataKey::LoginCode)),
            F::RegistrationCode => opt_string(d.text(DataKey::RegistrationCode)),
            // The reference's SMS registration model carries the traits as `identity`.
            F::Identity
                if kind == MessageType::Sms
                    && message.template_type == TemplateType::RegistrationCodeValid =>
            {
                user_data(d.json(DataKey::Identity).or(d.json(DataKey::Traits)))
            }
            F::Identity => user_data(d.json(DataKey::Identity)),
            F::Traits => user_data(d.json(DataKey::Traits)),
            F::RequestUrl => opt_string(d.text(DataKey::RequestUrl)),
            F::RequestUrlDomain => request_url_domain(d),
            F::TransientPayload => user_data(d.json(DataKey::TransientPayload)),
            F::ExpiresInMinutes => Value::Int(d.expires_in_minutes.flatten().unwrap_or(0)),
            F::ChangedAt => opt_string(d.text(DataKey::ChangedAt)),
            F::AddedAt => opt_string(d.text(DataKey::AddedAt)),
            F::OAuth2LoginRequest => oauth2(d.json(DataKey::OAuth2LoginRequest)),
            F::Subject => opt_string(d.text(DataKey::Subject)),
            F::Body => opt_string(d.text(DataKey::Body)),
            F::HtmlBody => opt_string(d.text(DataKey::HtmlBody)),
        };
        map.insert(Arc::from(f.go_name()), v);
    }
    Some(Value::Map(Arc::new(map)))
}

fn string(s: &str) -> Value {
    Value::String(Arc::from(s))
}

fn opt_string(s: Option<&str>) -> Value {
    string(s.unwrap_or(""))
}

/// The request URL's host, when the producer did not send `request_url_domain` itself.
fn request_url_domain(d: &TemplateData) -> Value {
    if let Some(domain) = d.text(DataKey::RequestUrlDomain) {
        return string(domain);
    }
    let host = d
        .text(DataKey::RequestUrl)
        .and_then(|u| u.split_once("://"))
        .map(|(_, rest)| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or(authority);
            match host.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => host,
            }
        })
        .unwrap_or("");
    string(host)
}

/// User data as Go sees it after decoding JSON into a `map[string]any` field: numbers are floats,
/// and an absent or null map is Go's nil map, which indexes like an empty one (`index .M "k"` is
/// `<no value>`, not an error), so it is an empty map here.
pub fn user_data(v: Option<&Json>) -> Value {
    match v {
        None | Some(Json::Null) => Value::Map(Arc::new(BTreeMap::new())),
        Some(v) => from_json(v, true),
    }
}

/// Converts JSON to template data; `go_floats` turns every number into a float, as Go's
/// `encoding/json` does for `any`, otherwise integers stay integers.
pub fn from_json(v: &Json, go_floats: bool) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (go_floats, n.as_i64(), n.as_u64()) {
            (false, Some(i), _) => Value::Int(i),
            (false, None, Some(u)) => Value::Uint(u),
            _ => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => string(s),
        Json::Array(a) => Value::List(a.iter().map(|v| from_json(v, go_floats)).collect()),
        Json::Object(o) => Value::Map(Arc::new(
            o.iter()
                .map(|(k, v)| (Arc::from(k.as_str()), from_json(v, go_floats)))
                .collect(),
        )),
    }
}

/// The reference's `OAuth2LoginRequest` struct: `{Challenge, Client: {ClientID, ClientName,
/// ClientURI, LogoURI, Metadata}}`, nil when absent.
fn oauth2(v: Option<&Json>) -> Value {
    let Some(Json::Object(o)) = v else {
        return Value::Nil;
    };
    let text = |obj: Option<&serde_json::Map<String, Json>>, key: &str| {
        string(
            obj.and_then(|m| m.get(key))
                .and_then(Json::as_str)
                .unwrap_or(""),
        )
    };
    let client = o.get("client").and_then(Json::as_object);
    let client_map: BTreeMap<Arc<str>, Value> = [
        ("ClientID", text(client, "client_id")),
        ("ClientName", text(client, "client_name")),
        ("ClientURI", text(client, "client_uri")),
        ("LogoURI", text(client, "logo_uri")),
        (
            "Metadata",
            user_data(client.and_then(|c| c.get("metadata"))),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (Arc::from(k), v))
    .collect();
    let map: BTreeMap<Arc<str>, Value> = [
        ("Challenge", text(Some(o), "challenge")),
        ("Client", Value::Map(Arc::new(client_map))),
    ]
    .into_iter()
    .map(|(k, v)| (Arc::from(k), v))
    .collect();
    Value::Map(Arc::new(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::samples;

    fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
        v.field(name)
            .unwrap_or_else(|| panic!("no field {name} in {v}"))
    }

    #[test]
    fn every_sample_has_a_model_with_go_names() {
        let mut n = 0;
        for (t, kind, m) in samples::all() {
            let d = data(&m).unwrap_or_else(|| panic!("{t} {kind:?}"));
            assert_eq!(field(&d, "To").as_str(), Some(m.recipient.as_str()), "{t}");
            n += 1;
        }
        assert_eq!(n, 20);
    }

    #[test]
    fn codes_expiry_and_user_data_have_go_types() {
        let m = samples::message(TemplateType::RecoveryCodeValid, MessageType::Email).unwrap();
        let d = data(&m).unwrap();
        assert_eq!(field(&d, "RecoveryCode").as_str(), Some("730219"));
        assert!(matches!(field(&d, "ExpiresInMinutes"), Value::Int(15)));
        let lang = field(field(field(&d, "Identity"), "traits"), "lang");
        assert_eq!(lang.as_str(), Some("es"));
        assert!(d.field("VerificationCode").is_none(), "not in this model");

        // SMS recovery: the code arrives as verification_code and is .RecoveryCode to templates.
        let m = samples::message(TemplateType::RecoveryCodeValid, MessageType::Sms).unwrap();
        let d = data(&m).unwrap();
        assert_eq!(field(&d, "RecoveryCode").as_str(), Some("361508"));
        assert_eq!(
            field(&d, "RequestURLDomain").as_str(),
            Some("auth.example.com")
        );
    }

    #[test]
    fn pascal_keys_and_missing_fields_become_zero_values() {
        let m = Message::from_json(
            br#"{"Recipient":"a@b.c","TemplateType":"login_code_valid",
                 "TemplateData":{"LoginCode":"123456","Identity":{"traits":{"age":30}},
                 "RequestURL":"https://id.example.org:8443/self-service/login?flow=1"}}"#,
        )
        .unwrap();
        let d = data(&m).unwrap();
        assert_eq!(field(&d, "LoginCode").as_str(), Some("123456"));
        assert!(matches!(field(&d, "ExpiresInMinutes"), Value::Int(0)));
        assert!(matches!(field(&d, "TransientPayload"), Value::Map(m) if m.is_empty()));
        assert!(matches!(field(&d, "OAuth2LoginRequest"), Value::Nil));
        let age = field(field(field(&d, "Identity"), "traits"), "age");
        assert!(matches!(age, Value::Float(f) if *f == 30.0), "{age:?}");

        let mut sms = m.clone();
        sms.message_type = MessageType::Sms;
        let d = data(&sms).unwrap();
        assert_eq!(
            field(&d, "RequestURLDomain").as_str(),
            Some("id.example.org")
        );
    }

    #[test]
    fn oauth2_login_request_uses_go_struct_names() {
        let m = samples::message(TemplateType::LoginCodeValid, MessageType::Email).unwrap();
        let raw = m.template_data.oauth2_login_request.clone().flatten();
        let d = data(&m).unwrap();
        let o = field(&d, "OAuth2LoginRequest");
        match raw {
            Some(raw) => {
                let name = raw["client"]["client_name"].as_str().unwrap_or("");
                assert_eq!(field(field(o, "Client"), "ClientName").as_str(), Some(name));
            }
            None => assert!(matches!(o, Value::Nil)),
        }
    }

    #[test]
    fn sms_only_for_the_seven_types() {
        let n = TemplateType::ALL
            .into_iter()
            .filter(|t| exists(*t, MessageType::Sms))
            .count();
        assert_eq!(n, 7);
        assert!(!exists(TemplateType::RecoveryValid, MessageType::Sms));
    }
}
