//! The reference's `request_config` as written, and its validation into a [`ChannelConfig`]: URL,
//! method, headers and Content-Type, body template URI, and auth. Every problem is reported with
//! its key path; a channel is built only when it has none.

use hyper::header::{HeaderName, HeaderValue};
use hyper::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::extensions::{options, RawExtensions, RawSigning, RawTls};
use super::{mask_url, Auth, ChannelConfig, ClientAuth, KeyLocation, OAuth2, Secret};
use crate::encode::Encoding;

// ---- the reference's `courier` section, as written -------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCourier {
    pub(super) delivery_strategy: Option<String>,
    pub(super) message_retries: Option<i64>,
    pub(super) http: Option<RawHttp>,
    pub(super) channels: Option<Vec<RawChannel>>,
    // Reference settings for other delivery strategies: accepted, unused.
    pub(super) smtp: Option<Value>,
    pub(super) sms: Option<Value>,
    // Message templates, read by `crate::compose::config`.
    pub(super) templates: Option<Value>,
    pub(super) template_override_path: Option<Value>,
    pub(super) worker: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) request_config: Option<RawRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    pub(super) url: Option<String>,
    pub(super) method: Option<String>,
    pub(super) headers: Option<Map<String, Value>>,
    pub(super) body: Option<String>,
    pub(super) auth: Option<RawAuth>,
    // Our extensions (see `extensions`).
    pub(super) signing: Option<RawSigning>,
    pub(super) idempotency: Option<Value>,
    pub(super) tls: Option<RawTls>,
    pub(super) template_request: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) config: Option<RawAuthConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthConfig {
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) name: Option<String>,
    pub(super) value: Option<String>,
    #[serde(rename = "in")]
    pub(super) location: Option<String>,
    // bearer
    pub(super) token: Option<String>,
    // oauth2_client_credentials
    pub(super) token_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) scopes: Option<Vec<String>>,
    pub(super) audience: Option<String>,
    pub(super) client_auth: Option<String>,
}

impl RawAuthConfig {
    /// The keys set, for telling which belong to another auth type.
    fn present(&self) -> Vec<&'static str> {
        [
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
            ("name", self.name.is_some()),
            ("value", self.value.is_some()),
            ("in", self.location.is_some()),
            ("token", self.token.is_some()),
            ("token_url", self.token_url.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("scopes", self.scopes.is_some()),
            ("audience", self.audience.is_some()),
            ("client_auth", self.client_auth.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.then_some(k))
        .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    pub(super) id: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) request_config: Option<RawRequest>,
    pub(super) smtp_config: Option<Value>,
}

pub(super) fn channel(
    id: &str,
    path: &str,
    raw: RawRequest,
    is_email: bool,
    issue: &mut dyn FnMut(&str, String),
) -> Option<ChannelConfig> {
    // Problems of this channel alone: it is built only if there are none.
    let mut local: Vec<(String, String)> = Vec::new();
    let url = match raw.url.as_deref().map(str::trim) {
        None | Some("") => {
            local.push((format!("{path}.url"), "missing".into()));
            String::new()
        }
        Some(u) => {
            match u.parse::<hyper::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() => {}
                _ => local.push((
                    format!("{path}.url"),
                    format!("{} is not an absolute http(s) URL", mask_url(u)),
                )),
            }
            u.to_owned()
        }
    };
    let method = match raw.method.as_deref().map(str::trim) {
        None | Some("") => Method::POST,
        Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                local.push((
                    format!("{path}.method"),
                    format!("{m:?} is not an HTTP method"),
                ));
                Method::POST
            }
        },
    };
    let mut headers = Vec::new();
    let mut encoding = Encoding::Json;
    for (name, value) in raw.headers.unwrap_or_default() {
        let at = format!("{path}.headers.{name}");
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                local.push((at.clone(), "must be a string".into()));
                continue;
            }
        };
        let Ok(hn) = HeaderName::from_bytes(name.as_bytes()) else {
            local.push((at.clone(), "not a valid header name".into()));
            continue;
        };
        let Ok(hv) = HeaderValue::from_str(&text) else {
            local.push((at.clone(), "not a valid header value".into()));
            continue;
        };
        if hn == hyper::header::CONTENT_TYPE {
            let media = text
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match media.as_str() {
                "application/json" => encoding = Encoding::Json,
                "application/x-www-form-urlencoded" => encoding = Encoding::Form,
                _ => local.push((at.clone(), format!("{text:?} is not supported; use application/json or application/x-www-form-urlencoded (parameters such as ; charset=utf-8 are fine)"))),
            }
        }
        headers.push((hn, hv));
    }
    let body = match raw.body.map(|b| b.trim().to_owned()) {
        Some(b) if !b.is_empty() => Some(b),
        // The email channel's documented default; other channels send no body without a template.
        _ if is_email => Some(DEFAULT_BODY.to_owned()),
        _ => None,
    };
    let auth = raw.auth.and_then(|a| {
        auth(&format!("{path}.auth"), a, &mut |p, r| {
            local.push((p.to_owned(), r))
        })
    });
    let extensions = RawExtensions {
        signing: raw.signing,
        idempotency: raw.idempotency,
        tls: raw.tls,
        template_request: raw.template_request,
    };
    let options = options(path, extensions, &mut |p, r| local.push((p.to_owned(), r)));
    if !local.is_empty() {
        for (p, r) in local {
            issue(&p, r);
        }
        return None;
    }
    Some(ChannelConfig {
        id: id.to_owned(),
        path: path.to_owned(),
        url,
        method,
        headers,
        encoding,
        body,
        auth,
        options,
    })
}

const AUTH_TYPES: &str = "basic_auth, api_key, bearer or oauth2_client_credentials";

/// Reports keys of `c` that `kind` does not take.
fn foreign(
    cfg_path: &str,
    kind: &str,
    c: &RawAuthConfig,
    own: &[&str],
    issue: &mut dyn FnMut(&str, String),
) {
    for k in c.present() {
        if !own.contains(&k) {
            issue(&format!("{cfg_path}.{k}"), format!("not used by {kind}"));
        }
    }
}

/// The URI standing for the shipped default template (embedded; matched to the ctx style).
pub const DEFAULT_BODY: &str = "builtin://default.jsonnet";

fn auth(path: &str, raw: RawAuth, issue: &mut dyn FnMut(&str, String)) -> Option<Auth> {
    let kind = raw.kind.as_deref().map(str::trim);
    let cfg = raw.config;
    let cfg_path = format!("{path}.config");
    let field =
        |v: Option<&String>, key: &str, issue: &mut dyn FnMut(&str, String)| -> Option<String> {
            match v.map(|s| s.as_str()) {
                Some(s) if !s.is_empty() => Some(s.to_owned()),
                _ => {
                    issue(&format!("{cfg_path}.{key}"), "missing".into());
                    None
                }
            }
        };
    match kind {
        Some("basic_auth") => {
            let Some(c) = cfg else {
                issue(
                    &cfg_path,
                    "missing: basic_auth needs config.user and config.password".into(),
                );
                return None;
            };
            let user = field(c.user.as_ref(), "user", issue);
            let password = field(c.password.as_ref(), "password", issue);
            for (k, present) in [
                ("name", c.name.is_some()),
                ("value", c.value.is_some()),
                ("in", c.location.is_some()),
            ] {
                if present {
                    issue(
                        &format!("{cfg_path}.{k}"),
                        "belongs to api_key, not basic_auth".into(),
                    );
                }
            }
            if user.as_deref().is_some_and(|u| u.contains(':')) {
                issue(
                    &format!("{cfg_path}.user"),
                    "must not contain ':' (basic auth separates user and password with it)".into(),
                );
            }
            Some(Auth::BasicAuth {
                user: Secret::new(user?),
                password: Secret::new(password?),
            })
        }
        Some("api_key") => {
            let Some(c) = cfg else {
                issue(
                    &cfg_path,
                    "missing: api_key needs config.name, config.value and config.in".into(),
                );
                return None;
            };
            let name = field(c.name.as_ref(), "name", issue);
            let value = field(c.value.as_ref(), "value", issue);
            for (k, present) in [
                ("user", c.user.is_some()),
                ("password", c.password.is_some()),
            ] {
                if present {
                    issue(
                        &format!("{cfg_path}.{k}"),
                        "belongs to basic_auth, not api_key".into(),
                    );
                }
            }
            let location = match c.location.as_deref() {
                None | Some("header") => KeyLocation::Header,
                Some("cookie") => KeyLocation::Cookie,
                Some(other) => {
                    issue(
                        &format!("{cfg_path}.in"),
                        format!("{other:?}: expected header or cookie"),
                    );
                    return None;
                }
            };
            let name = name?;
            let value = value?;
            if location == KeyLocation::Header && HeaderName::from_bytes(name.as_bytes()).is_err() {
                issue(
                    &format!("{cfg_path}.name"),
                    "not a valid header name".into(),
                );
                return None;
            }
            if HeaderValue::from_str(&value).is_err() {
                issue(
                    &format!("{cfg_path}.value"),
                    "not a valid header value".into(),
                );
                return None;
            }
            Some(Auth::ApiKey {
                name,
                value: Secret::new(value),
                location,
            })
        }
        Some("bearer") => {
            let Some(c) = cfg else {
                issue(&cfg_path, "missing: bearer needs config.token".into());
                return None;
            };
            foreign(&cfg_path, "bearer", &c, &["token"], issue);
            let token = field(c.token.as_ref(), "token", issue)?;
            if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                issue(
                    &format!("{cfg_path}.token"),
                    "not a valid header value".into(),
                );
                return None;
            }
            Some(Auth::Bearer {
                token: Secret::new(token),
            })
        }
        Some("oauth2_client_credentials") => {
            let Some(c) = cfg else {
                issue(
                    &cfg_path,
                    "missing: oauth2_client_credentials needs config.token_url, config.client_id and config.client_secret".into(),
                );
                return None;
            };
            foreign(
                &cfg_path,
                "oauth2_client_credentials",
                &c,
                &[
                    "token_url",
                    "client_id",
                    "client_secret",
                    "scopes",
                    "audience",
                    "client_auth",
                ],
                issue,
            );
            let token_url = field(c.token_url.as_ref(), "token_url", issue);
            if let Some(u) = &token_url {
                match u.parse::<hyper::Uri>() {
                    Ok(uri)
                        if matches!(uri.scheme_str(), Some("http" | "https"))
                            && uri.authority().is_some() => {}
                    _ => issue(
                        &format!("{cfg_path}.token_url"),
                        format!("{} is not an absolute http(s) URL", mask_url(u)),
                    ),
                }
            }
            let client_id = field(c.client_id.as_ref(), "client_id", issue);
            let client_secret = field(c.client_secret.as_ref(), "client_secret", issue);
            let client_auth = match c.client_auth.as_deref() {
                None | Some("basic") => ClientAuth::Basic,
                Some("body") => ClientAuth::Body,
                Some(other) => {
                    issue(
                        &format!("{cfg_path}.client_auth"),
                        format!("{other:?}: expected basic or body"),
                    );
                    ClientAuth::Basic
                }
            };
            Some(Auth::OAuth2(OAuth2 {
                token_url: token_url?,
                client_id: client_id?,
                client_secret: Secret::new(client_secret?),
                scopes: c.scopes.unwrap_or_default(),
                audience: c.audience.filter(|a| !a.is_empty()),
                client_auth,
            }))
        }
        Some(other) => {
            issue(
                &format!("{path}.type"),
                format!("unknown auth type {other:?}; expected {AUTH_TYPES}"),
            );
            None
        }
        None => {
            issue(
                &format!("{path}.type"),
                format!("missing; expected {AUTH_TYPES}"),
            );
            None
        }
    }
}
