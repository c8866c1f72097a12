//! The reference's SMTP settings (`courier.smtp`, and `smtp_config` of a `type: smtp` channel),
//! validated into an [`SmtpConfig`]: connection URI (scheme, host, port, flags), From address and
//! name, extra headers, EHLO name, client certificate paths. Every problem names its key path;
//! shown (`config check`, `Debug`), the URI's password is `***`.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::smtp::mail::RESERVED_HEADERS;
use crate::smtp::{Sender, SmtpUri};

/// The reference's default From address, used when `from_address` is not set.
pub const DEFAULT_FROM_ADDRESS: &str = "no-reply@ory.kratos.sh";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    connection_uri: Option<String>,
    from_address: Option<String>,
    from_name: Option<String>,
    headers: Option<Map<String, Value>>,
    local_name: Option<String>,
    client_cert_path: Option<String>,
    client_key_path: Option<String>,
}

/// A validated SMTP channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SmtpConfig {
    /// `email` or a channel id.
    pub id: String,
    /// The key path of the section, for error messages.
    #[serde(skip)]
    pub path: String,
    /// The server and security mode (password masked when shown).
    #[serde(rename = "connection_uri")]
    pub uri: SmtpUri,
    /// From address and name, and the headers added to every mail.
    #[serde(serialize_with = "ser_sender", rename = "from")]
    pub sender: Sender,
    /// The EHLO name (default `localhost`, as the reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_name: Option<String>,
    /// Client certificate (PEM), with `client_key_path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_path: Option<PathBuf>,
    /// Client key (PEM), with `client_cert_path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_path: Option<PathBuf>,
}

fn ser_sender<S: serde::Serializer>(s: &Sender, ser: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut m = ser.serialize_map(Some(3))?;
    m.serialize_entry("address", &s.address.to_string())?;
    m.serialize_entry("name", &s.name)?;
    let headers: Map<String, Value> = s
        .headers
        .iter()
        .map(|(k, v)| {
            let shown = if super::is_sensitive_header(k) {
                "***".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), Value::String(shown))
        })
        .collect();
    m.serialize_entry("headers", &headers)?;
    m.end()
}

/// Validates an SMTP section at `path` (`courier.smtp` or `courier.channels[i].smtp_config`).
/// Problems go to `issue`, notes to `warn`; a config is returned only when there are no problems.
pub(super) fn smtp(
    id: &str,
    path: &str,
    raw: Value,
    issue: &mut dyn FnMut(&str, String),
    warn: &mut dyn FnMut(String),
) -> Option<SmtpConfig> {
    let raw: RawSmtp = match super::typed(raw, path) {
        Ok(r) => r,
        Err(e) => {
            for (p, r) in e.issues {
                issue(&p, r);
            }
            return None;
        }
    };
    let mut bad = false;
    let mut problem = |key: &str, reason: String| {
        bad = true;
        issue(&format!("{path}.{key}"), reason);
    };
    let uri = match raw.connection_uri.as_deref().map(str::trim) {
        None | Some("") => {
            problem(
                "connection_uri",
                "missing: write smtp://user:password@host:port/ (see the SMTP section of the README)"
                    .into(),
            );
            None
        }
        Some(text) => match SmtpUri::parse(text) {
            Ok((uri, warnings)) => {
                for w in warnings {
                    warn(format!("{path}.connection_uri: {w}"));
                }
                Some(uri)
            }
            Err(e) => {
                problem("connection_uri", e.0);
                None
            }
        },
    };
    let address = match raw.from_address.as_deref().map(str::trim) {
        None | Some("") => {
            warn(format!(
                "{path}.from_address is not set; mails are from {DEFAULT_FROM_ADDRESS} (the reference's default)"
            ));
            DEFAULT_FROM_ADDRESS.parse().ok()
        }
        Some(a) if a.chars().any(char::is_control) => {
            problem("from_address", "contains control characters".into());
            None
        }
        Some(a) => match a.parse::<lettre::Address>() {
            Ok(addr) => Some(addr),
            Err(e) => {
                problem(
                    "from_address",
                    format!("{a:?} is not an email address ({e})"),
                );
                None
            }
        },
    };
    let name = match raw.from_name.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) if n.chars().any(char::is_control) => {
            problem("from_name", "contains control characters".into());
            None
        }
        Some(n) => Some(n.to_owned()),
    };
    let mut headers = Vec::new();
    for (k, v) in raw.headers.unwrap_or_default() {
        let key = format!("headers.{k}");
        let value = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                problem(&key, "must be a string".into());
                continue;
            }
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            problem(&key, "not a valid header name".into());
        } else if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            problem(
                &key,
                "is set by the courier itself and cannot be configured".into(),
            );
        } else if value.chars().any(|c| c == '\r' || c == '\n') {
            problem(&key, "must be one line (no CR/LF)".into());
        } else {
            headers.push((k, value));
        }
    }
    let local_name = match raw.local_name.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) if n.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            problem("local_name", "must be a host name without spaces".into());
            None
        }
        Some(n) => Some(n.to_owned()),
    };
    let path_of = |s: Option<String>| s.filter(|s| !s.trim().is_empty()).map(PathBuf::from);
    let cert = path_of(raw.client_cert_path);
    let key = path_of(raw.client_key_path);
    match (&cert, &key) {
        (Some(_), None) => problem(
            "client_key_path",
            "missing: client_cert_path needs its key".into(),
        ),
        (None, Some(_)) => problem(
            "client_cert_path",
            "missing: client_key_path needs its certificate".into(),
        ),
        _ => {}
    }
    if bad {
        return None;
    }
    Some(SmtpConfig {
        id: id.to_owned(),
        path: path.to_owned(),
        uri: uri?,
        sender: Sender {
            address: address?,
            name,
            headers,
        },
        local_name,
        client_cert_path: cert,
        client_key_path: key,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(yaml: &str) -> Result<Config, Vec<String>> {
        Config::parse(yaml, false, None, &|_| None).map_err(|e| {
            e.issues
                .into_iter()
                .map(|(p, r)| format!("{p}: {r}"))
                .collect()
        })
    }

    #[test]
    fn a_reference_smtp_section() {
        let c = parse(
            r#"
courier:
  delivery_strategy: smtp
  smtp:
    connection_uri: smtps://some-user%40mailgun.example.org:pa%2Fss@mail.example.com:465/?server_name=example.com
    from_address: hello@example.org
    from_name: My Company
    headers: { X-SES-CONFIGURATION-SET: my-set }
    local_name: courier.example.org
  channels:
    - id: marketing
      type: smtp
      smtp_config:
        connection_uri: smtp://u:second-secret@relay.example.net:2525/?disable_starttls=true
"#,
        )
        .unwrap();
        let email = c.smtp_channel("email").unwrap();
        assert_eq!(
            email.uri.user.as_deref(),
            Some("some-user@mailgun.example.org")
        );
        assert_eq!(email.uri.password.as_ref().unwrap().expose(), "pa/ss");
        assert_eq!(email.uri.tls_name(), "example.com");
        assert_eq!(email.sender.name.as_deref(), Some("My Company"));
        assert_eq!(email.local_name.as_deref(), Some("courier.example.org"));
        let m = c.smtp_channel("marketing").unwrap();
        assert_eq!(m.uri.port, 2525);
        assert_eq!(m.sender.address.to_string(), super::DEFAULT_FROM_ADDRESS);
        assert!(c.channels.is_empty(), "no http channel");
        let shown = format!("{} {c:?}", serde_json::to_string(&c).unwrap());
        assert!(
            !shown.contains("pa/ss") && !shown.contains("pa%2Fss"),
            "{shown}"
        );
        assert!(!shown.contains("second-secret"), "{shown}");
        assert!(shown.contains("smtps://some-user%40mailgun.example.org:***@mail.example.com:465/?server_name=example.com"), "{shown}");
    }

    #[test]
    fn problems_name_their_key() {
        let got = parse(
            r#"
courier:
  delivery_strategy: smtp
  smtp:
    connection_uri: imap://u:hunter2@h/
    from_address: not-an-address
    headers: { "Bad Name": x, Subject: y }
    client_cert_path: /c.pem
  channels:
    - id: other
      type: smtp
      smtp_config: { connection_uri: "smtp://h:0/", bogus: 1 }
    - id: third
      type: smtp
"#,
        )
        .unwrap_err();
        let expected = [
            "courier.smtp.connection_uri: scheme \"imap\" is not supported",
            "courier.smtp.from_address: \"not-an-address\" is not an email address",
            "courier.smtp.headers.Bad Name: not a valid header name",
            "courier.smtp.headers.Subject: is set by the courier itself",
            "courier.smtp.client_key_path: missing",
            "courier.channels[0].smtp_config.bogus: unknown key",
            "courier.channels[1].smtp_config: missing",
        ];
        for e in expected {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing {e:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        assert!(!got.join("\n").contains("hunter2"));
    }
}
