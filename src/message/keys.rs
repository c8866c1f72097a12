//! The ctx key table: every key the reference courier knows, in both styles, written once.
//!
//! One macro invocation per level ([`TopKey`], [`DataKey`]) generates the key enums, the
//! `(snake, pascal)` tables, and (for template data) the typed [`TemplateData`] struct with its
//! serde aliases. Reading messages, writing the ctx, style detection and error hints all derive
//! from these, so the styles cannot drift apart.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::ctx::CtxStyle;

macro_rules! top_keys {
    ($($variant:ident $snake:literal $pascal:literal,)*) => {
        /// A top-level ctx key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)] // the names are the documented ctx keys
        pub enum TopKey { $($variant,)* }

        impl TopKey {
            /// Every top-level key, in the ctx's order.
            pub const ALL: &'static [TopKey] = &[$(TopKey::$variant,)*];

            /// The key's name in `style`.
            pub const fn name(self, style: CtxStyle) -> &'static str {
                match (self, style) {
                    $(
                        (TopKey::$variant, CtxStyle::Snake) => $snake,
                        (TopKey::$variant, CtxStyle::Pascal) => $pascal,
                    )*
                }
            }
        }

        /// Top-level ctx keys: (snake, pascal).
        pub const TOP_LEVEL: &[(&str, &str)] = &[$(($snake, $pascal),)*];
    };
}

top_keys! {
    Recipient "recipient" "Recipient",
    Subject "subject" "Subject",
    Body "body" "Body",
    HtmlBody "html_body" "HTMLBody",
    TemplateType "template_type" "TemplateType",
    TemplateData "template_data" "TemplateData",
    MessageType "message_type" "MessageType",
    RequestHeaders "request_headers" "RequestHeaders",
}

/// The value kinds of template-data fields, and so their zero values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string; zero value `""`.
    Text,
    /// An integer; zero value `0`.
    Int,
    /// User data (an object, or anything JSON); zero value `null`.
    Json,
}

/// A template-data field as the producer sent it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot<'a> {
    /// Left out.
    Absent,
    /// Sent as `null`.
    Null,
    /// A string.
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// User data.
    Json(&'a Value),
}

impl Slot<'_> {
    /// Whether a `?` field with this value is left out of the ctx (absent or empty string).
    pub fn is_empty(&self) -> bool {
        matches!(self, Slot::Absent | Slot::Text(""))
    }
}

impl Serialize for Slot<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Slot::Absent | Slot::Null => s.serialize_unit(),
            Slot::Text(t) => s.serialize_str(t),
            Slot::Int(n) => s.serialize_i64(*n),
            Slot::Json(v) => v.serialize(s),
        }
    }
}

/// Field storage: `None` left out, `Some(None)` sent as `null`, `Some(Some(v))` a value.
pub type Field<T> = Option<Option<T>>;

trait AsSlot {
    fn slot(&self) -> Slot<'_>;
}

impl AsSlot for Field<String> {
    fn slot(&self) -> Slot<'_> {
        match self {
            None => Slot::Absent,
            Some(None) => Slot::Null,
            Some(Some(s)) => Slot::Text(s),
        }
    }
}

impl AsSlot for Field<i64> {
    fn slot(&self) -> Slot<'_> {
        match self {
            None => Slot::Absent,
            Some(None) => Slot::Null,
            Some(Some(n)) => Slot::Int(*n),
        }
    }
}

impl AsSlot for Field<Value> {
    fn slot(&self) -> Slot<'_> {
        match self {
            None => Slot::Absent,
            Some(None) => Slot::Null,
            Some(Some(v)) => Slot::Json(v),
        }
    }
}

/// A map key, borrowed from the input when it can be (no allocation when it has no escapes).
/// Also the fast path's ctx parse's key (`template::fast::node`).
pub(crate) struct KeyName<'de>(pub(crate) std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl<'de> serde::de::Visitor<'de> for Key {
            type Value = KeyName<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyName<'de>, E> {
                Ok(KeyName(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<KeyName<'de>, E> {
                Ok(KeyName(std::borrow::Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<KeyName<'de>, E> {
                Ok(KeyName(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(Key)
    }
}

macro_rules! data_keys {
    ($($variant:ident $field:ident $pascal:literal $kind:ident $ty:ty,)*) => {
        /// A template-data key the reference knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)] // the names are the documented ctx keys
        pub enum DataKey { $($variant,)* }

        impl DataKey {
            /// Every template-data key, in table order.
            pub const ALL: &'static [DataKey] = &[$(DataKey::$variant,)*];

            /// The key's name in `style`.
            pub const fn name(self, style: CtxStyle) -> &'static str {
                match (self, style) {
                    $(
                        (DataKey::$variant, CtxStyle::Snake) => stringify!($field),
                        (DataKey::$variant, CtxStyle::Pascal) => $pascal,
                    )*
                }
            }

            /// The kind of value, which gives the zero value.
            pub const fn kind(self) -> Kind {
                match self { $(DataKey::$variant => Kind::$kind,)* }
            }

            /// One bit per key, for key sets.
            pub const fn bit(self) -> u32 {
                1 << (self as u32)
            }
        }

        /// Template-data keys: (snake, pascal).
        pub const TEMPLATE_DATA: &[(&str, &str)] = &[$((stringify!($field), $pascal),)*];

        /// The per-type data of a message. Known fields are typed and keep a producer's `null`
        /// apart from a left-out field; every other field is kept verbatim in
        /// [`TemplateData::extra`] so that templates see exactly what the producer sent.
        ///
        /// User data (`identity`, `traits`, `transient_payload`, `oauth2_login_request`) keeps
        /// its own keys.
        #[derive(Debug, Clone, Default, PartialEq, Serialize)]
        #[allow(missing_docs)] // fields are documented by the spec's table
        pub struct TemplateData {
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Field<$ty>,
            )*
            /// Every field this version does not know, with its key as sent.
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }

        // By hand rather than derived: a derived `flatten` buffers every value of the map (the
        // identity and its traits included) into an intermediate tree first, and that doubled
        // the cost of reading a message.
        impl<'de> Deserialize<'de> for TemplateData {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Fields;
                impl<'de> serde::de::Visitor<'de> for Fields {
                    type Value = TemplateData;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("struct TemplateData")
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<TemplateData, A::Error> {
                        let mut out = TemplateData::default();
                        while let Some(KeyName(key)) = map.next_key::<KeyName<'de>>()? {
                            match &*key {
                                $(
                                    stringify!($field) | $pascal => {
                                        if out.$field.is_some() {
                                            return Err(serde::de::Error::duplicate_field(
                                                stringify!($field),
                                            ));
                                        }
                                        out.$field = Some(map.next_value::<Option<$ty>>()?);
                                    }
                                )*
                                _ => {
                                    let value: Value = map.next_value()?;
                                    out.extra.insert(key.into_owned(), value);
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(Fields)
            }
        }

        impl TemplateData {
            /// The field `key` as the producer sent it.
            pub fn get(&self, key: DataKey) -> Slot<'_> {
                match key { $(DataKey::$variant => self.$field.slot(),)* }
            }
        }
    };
}

data_keys! {
    To to "To" Text String,
    RecoveryUrl recovery_url "RecoveryURL" Text String,
    RecoveryCode recovery_code "RecoveryCode" Text String,
    VerificationUrl verification_url "VerificationURL" Text String,
    VerificationCode verification_code "VerificationCode" Text String,
    LoginCode login_code "LoginCode" Text String,
    RegistrationCode registration_code "RegistrationCode" Text String,
    Identity identity "Identity" Json Value,
    Traits traits "Traits" Json Value,
    RequestUrl request_url "RequestURL" Text String,
    RequestUrlDomain request_url_domain "RequestURLDomain" Text String,
    TransientPayload transient_payload "TransientPayload" Json Value,
    ExpiresInMinutes expires_in_minutes "ExpiresInMinutes" Int i64,
    ChangedAt changed_at "ChangedAt" Text String,
    AddedAt added_at "AddedAt" Text String,
    OAuth2LoginRequest oauth2_login_request "OAuth2LoginRequest" Json Value,
    Subject subject "Subject" Text String,
    Body body "Body" Text String,
    HtmlBody html_body "HTMLBody" Text String,
}

impl TemplateData {
    /// The string field `key`, when the producer sent one.
    pub fn text(&self, key: DataKey) -> Option<&str> {
        match self.get(key) {
            Slot::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The user-data field `key`, when the producer sent a non-null one.
    pub fn json(&self, key: DataKey) -> Option<&Value> {
        match self.get(key) {
            Slot::Json(v) => Some(v),
            _ => None,
        }
    }
}

/// The style a ctx key name belongs to, if it is a known key whose two names differ.
pub fn style_of(name: &str, top_level: bool) -> Option<CtxStyle> {
    let table = if top_level { TOP_LEVEL } else { TEMPLATE_DATA };
    table.iter().find_map(|&(snake, pascal)| {
        if name == snake {
            Some(CtxStyle::Snake)
        } else if name == pascal {
            Some(CtxStyle::Pascal)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_enums_agree() {
        assert_eq!(TOP_LEVEL.len(), TopKey::ALL.len());
        assert_eq!(TEMPLATE_DATA.len(), DataKey::ALL.len());
        for (k, (snake, pascal)) in DataKey::ALL.iter().zip(TEMPLATE_DATA) {
            assert_eq!(k.name(CtxStyle::Snake), *snake);
            assert_eq!(k.name(CtxStyle::Pascal), *pascal);
            assert_ne!(snake, pascal, "every key differs between the styles");
        }
        assert!(DataKey::ALL.len() <= 32, "key sets are u32 bit masks");
    }

    #[test]
    fn null_and_absent_are_told_apart() {
        let d: TemplateData = serde_json::from_str(
            r#"{"To": "a@b.c", "identity": null, "expires_in_minutes": 5, "custom": null}"#,
        )
        .unwrap();
        assert_eq!(d.get(DataKey::To), Slot::Text("a@b.c"));
        assert_eq!(d.get(DataKey::Identity), Slot::Null);
        assert_eq!(d.get(DataKey::Traits), Slot::Absent);
        assert_eq!(d.get(DataKey::ExpiresInMinutes), Slot::Int(5));
        assert_eq!(d.extra.get("custom"), Some(&Value::Null));
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"to": "a@b.c", "identity": null, "expires_in_minutes": 5, "custom": null})
        );
    }

    #[test]
    fn both_styles_read_alike_and_a_key_twice_is_an_error() {
        let pascal: TemplateData = serde_json::from_str(
            r#"{"To": "a@b.c", "Identity": {"traits": {"x": [1, 2.5]}}, "ExpiresInMinutes": 5, "Custom": {"k": "v"}}"#,
        )
        .unwrap();
        let snake: TemplateData = serde_json::from_str(
            r#"{"to": "a@b.c", "identity": {"traits": {"x": [1, 2.5]}}, "expires_in_minutes": 5, "Custom": {"k": "v"}}"#,
        )
        .unwrap();
        assert_eq!(pascal, snake);
        // From a tree too (the element-by-element pass of the API reads one).
        let from_value: TemplateData =
            serde_json::from_value(serde_json::to_value(&pascal).unwrap()).unwrap();
        assert_eq!(from_value, pascal);
        let e = serde_json::from_str::<TemplateData>(r#"{"To": "a", "to": "b"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field `to`"), "{e}");
        let e = serde_json::from_str::<TemplateData>(r#"{"expires_in_minutes": "5"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type: string \"5\""), "{e}");
        let e = serde_json::from_str::<TemplateData>("[]").unwrap_err();
        assert!(
            e.to_string().contains("expected struct TemplateData"),
            "{e}"
        );
    }
}
