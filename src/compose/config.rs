//! The reference's message-template settings: `courier.templates.<flow>.<valid|invalid>.email.{subject,
//! body.html, body.plaintext}` and `.sms.body.plaintext` as template URIs, and
//! `courier.template_override_path`, a folder laid out like `templates/`. Read from the raw config
//! values; every problem names its key path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::builtin::Part;
use crate::message::TemplateType;

/// One configured template URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriSetting {
    /// The key it was read from, e.g. `courier.templates.recovery_code.valid.email.subject`.
    pub key: String,
    /// `file://`, `base64://`, `http://` or `https://`.
    pub uri: String,
}

/// Where message templates come from, besides the built-ins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplatesConfig {
    /// Per type and part: `courier.templates...` URIs (empty strings are unset, as in the reference).
    pub uris: BTreeMap<(TemplateType, Part), UriSetting>,
    /// `courier.template_override_path`, resolved against the config file's directory.
    pub override_dir: Option<PathBuf>,
}

/// Problems in the template settings: `(key path, message)` pairs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>().join("; "))]
pub struct TemplatesConfigError(pub Vec<(String, String)>);

const PREFIX: &str = "courier.templates";

/// The flows of `courier.templates` and the template type of each state; `None` as the state
/// means the flow has no `valid`/`invalid` level.
fn flow(name: &str) -> Option<&'static [(Option<&'static str>, TemplateType)]> {
    use TemplateType as T;
    Some(match name {
        "recovery" => &[
            (Some("valid"), T::RecoveryValid),
            (Some("invalid"), T::RecoveryInvalid),
        ],
        "recovery_code" => &[
            (Some("valid"), T::RecoveryCodeValid),
            (Some("invalid"), T::RecoveryCodeInvalid),
        ],
        "verification" => &[
            (Some("valid"), T::VerificationValid),
            (Some("invalid"), T::VerificationInvalid),
        ],
        "verification_code" => &[
            (Some("valid"), T::VerificationCodeValid),
            (Some("invalid"), T::VerificationCodeInvalid),
        ],
        "login_code" => &[(Some("valid"), T::LoginCodeValid)],
        "registration_code" => &[(Some("valid"), T::RegistrationCodeValid)],
        "verifiable_address_changed" => &[(None, T::VerifiableAddressChanged)],
        "authenticator_key_added" => &[(None, T::AuthenticatorKeyAdded)],
        _ => return None,
    })
}

const FLOWS: &str = "recovery, recovery_code, verification, verification_code, login_code, \
                     registration_code, verifiable_address_changed, authenticator_key_added";

/// Whether the reference has an SMS template setting for `t`.
fn has_sms(t: TemplateType) -> bool {
    use TemplateType as T;
    matches!(
        t,
        T::RecoveryCodeValid
            | T::VerificationCodeValid
            | T::LoginCodeValid
            | T::RegistrationCodeValid
            | T::VerifiableAddressChanged
            | T::AuthenticatorKeyAdded
    )
}

struct Reader {
    uris: BTreeMap<(TemplateType, Part), UriSetting>,
    issues: Vec<(String, String)>,
}

impl Reader {
    fn object<'a>(
        &mut self,
        key: &str,
        v: &'a Value,
    ) -> Option<&'a serde_json::Map<String, Value>> {
        match v {
            Value::Object(o) => Some(o),
            Value::Null => None,
            other => {
                self.issues
                    .push((key.to_owned(), format!("expected an object, found {other}")));
                None
            }
        }
    }

    fn unknown(&mut self, key: &str, name: &str, expected: &str) {
        self.issues.push((
            format!("{key}.{name}"),
            format!("unknown key; expected {expected}"),
        ));
    }

    fn uri(&mut self, key: String, v: &Value, t: TemplateType, part: Part) {
        match v {
            Value::String(s) if s.trim().is_empty() => {}
            Value::String(s) => {
                let uri = s.trim().to_owned();
                if !["file://", "base64://", "http://", "https://"]
                    .iter()
                    .any(|p| uri.starts_with(p))
                {
                    self.issues.push((
                        key,
                        "expected a file://, base64://, http:// or https:// URI".into(),
                    ));
                    return;
                }
                self.uris.insert((t, part), UriSetting { key, uri });
            }
            Value::Null => {}
            other => self
                .issues
                .push((key, format!("expected a template URI, found {other}"))),
        }
    }

    fn email(&mut self, key: &str, v: &Value, t: TemplateType) {
        let Some(o) = self.object(key, v) else { return };
        for (name, v) in o {
            let k = format!("{key}.{name}");
            match name.as_str() {
                "subject" => self.uri(k, v, t, Part::Subject),
                "body" => {
                    let Some(body) = self.object(&k, v) else {
                        continue;
                    };
                    for (name, v) in body {
                        match name.as_str() {
                            "html" => self.uri(format!("{k}.html"), v, t, Part::Html),
                            "plaintext" => self.uri(format!("{k}.plaintext"), v, t, Part::Text),
                            other => self.unknown(&k, other, "html, plaintext"),
                        }
                    }
                }
                other => self.unknown(key, other, "subject, body"),
            }
        }
    }

    fn sms(&mut self, key: &str, v: &Value, t: TemplateType) {
        let Some(o) = self.object(key, v) else { return };
        for (name, v) in o {
            let k = format!("{key}.{name}");
            match (name.as_str(), v) {
                // The reference's key is `body.plaintext`; a URI right at `body` is accepted too.
                ("body", Value::String(_)) => self.uri(k, v, t, Part::Sms),
                ("body", v) => {
                    let Some(body) = self.object(&k, v) else {
                        continue;
                    };
                    for (name, v) in body {
                        match name.as_str() {
                            "plaintext" => self.uri(format!("{k}.plaintext"), v, t, Part::Sms),
                            other => self.unknown(&k, other, "plaintext"),
                        }
                    }
                }
                (other, _) => self.unknown(key, other, "body"),
            }
        }
    }

    fn channels(&mut self, key: &str, v: &Value, t: TemplateType) {
        let Some(o) = self.object(key, v) else { return };
        for (name, v) in o {
            match name.as_str() {
                "email" => self.email(&format!("{key}.email"), v, t),
                "sms" if has_sms(t) => self.sms(&format!("{key}.sms"), v, t),
                other => self.unknown(key, other, if has_sms(t) { "email, sms" } else { "email" }),
            }
        }
    }
}

/// Reads `courier.templates` and `courier.template_override_path` (either may be absent).
/// Relative paths resolve against `base_dir` (the config file's folder), else the working
/// directory.
///
/// # Errors
/// Every unknown key, wrong type or URI without a supported scheme, with its key path.
pub fn parse(
    templates: Option<&Value>,
    override_path: Option<&Value>,
    base_dir: Option<&Path>,
) -> Result<TemplatesConfig, TemplatesConfigError> {
    let mut r = Reader {
        uris: BTreeMap::new(),
        issues: Vec::new(),
    };
    if let Some(root) = templates.and_then(|v| r.object(PREFIX, v)) {
        for (name, v) in root {
            let key = format!("{PREFIX}.{name}");
            let Some(states) = flow(name) else {
                r.unknown(PREFIX, name, FLOWS);
                continue;
            };
            if let [(None, t)] = states {
                r.channels(&key, v, *t);
                continue;
            }
            let Some(o) = r.object(&key, v) else { continue };
            for (state, v) in o {
                match states.iter().find(|(s, _)| *s == Some(state.as_str())) {
                    Some((_, t)) => r.channels(&format!("{key}.{state}"), v, *t),
                    None => {
                        let expected = states
                            .iter()
                            .filter_map(|(s, _)| *s)
                            .collect::<Vec<_>>()
                            .join(", ");
                        r.unknown(&key, state, &expected);
                    }
                }
            }
        }
    }
    let override_dir = match override_path {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => {
            let p = Path::new(s.trim());
            Some(match base_dir {
                Some(base) if p.is_relative() => base.join(p),
                _ => p.to_path_buf(),
            })
        }
        Some(other) => {
            r.issues.push((
                "courier.template_override_path".into(),
                format!("expected a folder path, found {other}"),
            ));
            None
        }
    };
    if r.issues.is_empty() {
        Ok(TemplatesConfig {
            uris: r.uris,
            override_dir,
        })
    } else {
        Err(TemplatesConfigError(r.issues))
    }
}

/// Reads the template settings from a whole configuration document (its `courier` section).
///
/// # Errors
/// As [`parse`].
pub fn from_root(
    root: &Value,
    base_dir: Option<&Path>,
) -> Result<TemplatesConfig, TemplatesConfigError> {
    let courier = root.get("courier");
    parse(
        courier.and_then(|c| c.get("templates")),
        courier.and_then(|c| c.get("template_override_path")),
        base_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_reference_key() {
        let v = json!({
            "recovery_code": {
                "valid": {
                    "email": {
                        "subject": "base64://e3sgLlJlY292ZXJ5Q29kZSB9fQ==",
                        "body": {"html": "file:///t/h.gotmpl", "plaintext": "https://x.test/p"}
                    },
                    "sms": {"body": {"plaintext": "file://sms.gotmpl"}}
                },
                "invalid": {"email": {"subject": ""}}
            },
            "verifiable_address_changed": {"email": {"subject": "file:///s"}, "sms": {"body": "file:///b"}},
            "login_code": {"valid": {"email": {"body": {"html": null}}}}
        });
        let c = parse(Some(&v), Some(&json!("over")), Some(Path::new("/etc/c"))).unwrap();
        let keys: Vec<_> = c.uris.values().map(|u| u.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "courier.templates.recovery_code.valid.email.subject",
                "courier.templates.recovery_code.valid.email.body.html",
                "courier.templates.recovery_code.valid.email.body.plaintext",
                "courier.templates.recovery_code.valid.sms.body.plaintext",
                "courier.templates.verifiable_address_changed.email.subject",
                "courier.templates.verifiable_address_changed.sms.body",
            ]
        );
        assert_eq!(
            c.uris[&(TemplateType::RecoveryCodeValid, Part::Sms)].uri,
            "file://sms.gotmpl"
        );
        assert_eq!(c.override_dir.as_deref(), Some(Path::new("/etc/c/over")));
    }

    #[test]
    fn problems_name_their_key_path() {
        let v = json!({
            "recovery": {"valid": {"sms": {}}, "maybe": {}},
            "login_code": {"valid": {"email": {"subject": 3, "body": {"htm": "file:///x"}}}},
            "verification": {"invalid": {"email": {"subject": "/bare/path"}}},
            "nosuchflow": {}
        });
        let e = parse(Some(&v), Some(&json!(5)), None).unwrap_err();
        let keys: Vec<_> = e.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "courier.templates.recovery.valid.sms",
                "courier.templates.recovery.maybe",
                "courier.templates.login_code.valid.email.subject",
                "courier.templates.login_code.valid.email.body.htm",
                "courier.templates.verification.invalid.email.subject",
                "courier.templates.nosuchflow",
                "courier.template_override_path",
            ],
            "{e}"
        );
    }
}
