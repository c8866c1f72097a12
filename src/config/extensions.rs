//! Our extension keys in a channel's `request_config`, beside the reference's: `signing`
//! (Standard Webhooks), `idempotency` (a header carrying the message id), `tls` (extra CA, client
//! certificate) and `template_request` (the template may shape the request). Every problem is
//! reported with its key path; no secret appears in a message.

use hyper::header::HeaderName;
use serde::Deserialize;
use serde_json::Value;

use super::Secret;
use crate::http::tls::{self, TlsOptions};
use crate::webhook::Signer;

/// The default idempotency header.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A channel's options beyond the reference's `request_config`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChannelOptions {
    /// Standard Webhooks signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// The header carrying the message id on every attempt.
    #[serde(skip_serializing_if = "Option::is_none", rename = "idempotency_header")]
    #[serde(serialize_with = "ser_header_name")]
    pub idempotency_header: Option<HeaderName>,
    /// TLS settings for this channel's client.
    #[serde(skip_serializing_if = "TlsOptions::is_default")]
    pub tls: TlsOptions,
    /// Whether the template may return the request, not only its body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_request: Option<TemplateRequest>,
}

fn ser_header_name<S: serde::Serializer>(h: &Option<HeaderName>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.serialize_str(h.as_str()),
        None => s.serialize_none(),
    }
}

/// `signing`: the keys that sign every request (several during a rotation).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Signing {
    /// `whsec_` (HMAC-SHA256) and `whsk_` (Ed25519) secrets, each adding a signature.
    pub secrets: Vec<Secret>,
}

/// `template_request`: the template returns `{url?, method?, headers?, query?, body}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TemplateRequest {
    /// Whether the template's headers may replace `Authorization` (and the auth cookie/header).
    pub allow_authorization: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    secrets: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    ca: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
}

/// The raw extension keys of one `request_config`.
#[derive(Debug, Default)]
pub(super) struct RawExtensions {
    pub(super) signing: Option<RawSigning>,
    pub(super) idempotency: Option<Value>,
    pub(super) tls: Option<RawTls>,
    pub(super) template_request: Option<Value>,
}

pub(super) fn options(
    path: &str,
    raw: RawExtensions,
    issue: &mut dyn FnMut(&str, String),
) -> ChannelOptions {
    ChannelOptions {
        signing: raw
            .signing
            .and_then(|s| signing(&format!("{path}.signing"), s, issue)),
        idempotency_header: raw
            .idempotency
            .and_then(|v| idempotency(&format!("{path}.idempotency"), v, issue)),
        tls: raw
            .tls
            .map(|t| tls_options(&format!("{path}.tls"), t, issue))
            .unwrap_or_default(),
        template_request: raw
            .template_request
            .and_then(|v| template_request(&format!("{path}.template_request"), v, issue)),
    }
}

fn signing(path: &str, raw: RawSigning, issue: &mut dyn FnMut(&str, String)) -> Option<Signing> {
    let at = format!("{path}.secrets");
    // A list, or one string of whitespace-separated secrets (what `secrets_file` reads).
    let secrets: Vec<Secret> = match raw.secrets {
        None | Some(Value::Null) => {
            issue(&at, "missing: list whsec_ or whsk_ secrets".into());
            return None;
        }
        Some(Value::String(s)) => s.split_whitespace().map(Secret::new).collect(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(s) => out.push(Secret::new(s.trim())),
                    _ => issue(&format!("{at}[{i}]"), "must be a string".into()),
                }
            }
            out
        }
        Some(_) => {
            issue(&at, "must be a list of secrets".into());
            return None;
        }
    };
    match Signer::new(&secrets) {
        Ok(_) => Some(Signing { secrets }),
        Err(e) if secrets.is_empty() => {
            issue(&at, e.reason);
            None
        }
        Err(e) => {
            issue(&format!("{at}[{}]", e.index), e.reason);
            None
        }
    }
}

fn idempotency(path: &str, v: Value, issue: &mut dyn FnMut(&str, String)) -> Option<HeaderName> {
    let name = match v {
        Value::Null | Value::Bool(false) => return None,
        Value::Bool(true) => IDEMPOTENCY_KEY.to_owned(),
        Value::String(s) => s,
        Value::Object(mut m) => {
            let header = m.remove("header");
            if let Some(k) = m.keys().next() {
                issue(
                    &format!("{path}.{k}"),
                    "unknown key (expected header)".into(),
                );
            }
            match header {
                None => IDEMPOTENCY_KEY.to_owned(),
                Some(Value::String(s)) => s,
                Some(_) => {
                    issue(&format!("{path}.header"), "must be a header name".into());
                    return None;
                }
            }
        }
        _ => {
            issue(
                path,
                "expected true, a header name, or {header: NAME}".into(),
            );
            return None;
        }
    };
    match HeaderName::from_bytes(name.trim().as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            issue(path, format!("{name:?} is not a valid header name"));
            None
        }
    }
}

fn tls_options(path: &str, raw: RawTls, issue: &mut dyn FnMut(&str, String)) -> TlsOptions {
    let opts = TlsOptions {
        ca: raw.ca,
        client_cert: raw.client_cert,
        client_key: raw.client_key.map(Secret::new),
    };
    // Parse now, so that a bad file is a configuration error with its key path.
    if let Some(ca) = &opts.ca {
        if let Err(e) = tls::certs("ca", ca) {
            issue(&format!("{path}.ca"), without_key(e));
        }
    }
    match (&opts.client_cert, &opts.client_key) {
        (Some(_), None) => issue(
            &format!("{path}.client_key"),
            "missing: client_cert needs client_key (or client_key_file)".into(),
        ),
        (None, Some(_)) => issue(
            &format!("{path}.client_cert"),
            "missing: client_key needs client_cert (or client_cert_file)".into(),
        ),
        (Some(cert), Some(_)) => {
            if let Err(e) = tls::certs("client_cert", cert) {
                issue(&format!("{path}.client_cert"), without_key(e));
            } else {
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                if let Err(e) = tls::client_config(provider, &opts) {
                    issue(path, e.to_string());
                }
            }
        }
        (None, None) => {}
    }
    opts
}

fn without_key(e: tls::TlsError) -> String {
    match e {
        tls::TlsError::Pem { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn template_request(
    path: &str,
    v: Value,
    issue: &mut dyn FnMut(&str, String),
) -> Option<TemplateRequest> {
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::Bool(true) => Some(TemplateRequest::default()),
        Value::Object(mut m) => {
            let allow = match m.remove("allow_authorization") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(_) => {
                    issue(
                        &format!("{path}.allow_authorization"),
                        "must be true or false".into(),
                    );
                    false
                }
            };
            if let Some(k) = m.keys().next() {
                issue(
                    &format!("{path}.{k}"),
                    "unknown key (expected allow_authorization)".into(),
                );
            }
            Some(TemplateRequest {
                allow_authorization: allow,
            })
        }
        _ => {
            issue(path, "expected true or {allow_authorization: BOOL}".into());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Auth, ClientAuth, Config, ConfigError};

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::parse(yaml, false, None, &|k| match k {
            "TOKEN" => Some("tok-from-env".into()),
            _ => None,
        })
    }

    fn issues(yaml: &str) -> Vec<String> {
        parse(yaml)
            .unwrap_err()
            .issues
            .into_iter()
            .map(|(p, r)| format!("{p}: {r}"))
            .collect()
    }

    const FULL: &str = r#"
clients:
  http:
    disallow_private_ip_ranges: true
    private_ip_exception_urls: [ "http://10.0.0.5:8080/hook" ]
courier:
  http:
    request_config:
      url: https://api.example.com/send
      auth:
        type: oauth2_client_credentials
        config:
          token_url: https://auth.example.com/oauth/token
          client_id: courier
          client_secret: cs-very-secret
          scopes: [ send, "read:status" ]
          audience: https://api.example.com
      signing:
        secrets: [ whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=" ]
      idempotency: true
      template_request: { allow_authorization: true }
  channels:
    - id: sms
      type: http
      request_config:
        url: https://sms.example.com/
        auth: { type: bearer, config: { token: "${TOKEN}" } }
        idempotency: { header: X-Request-Id }
        signing: { secrets: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
jsonnet_courier:
  http:
    guard: { allow_cidrs: [ "10.1.0.0/16" ], allow_hosts: [ "*.internal" ] }
"#;

    #[test]
    fn every_extension_is_read() {
        let c = parse(FULL).unwrap();
        let email = c.channel("email").unwrap();
        match &email.auth {
            Some(Auth::OAuth2(o)) => {
                assert_eq!(o.token_url, "https://auth.example.com/oauth/token");
                assert_eq!(o.client_id, "courier");
                assert_eq!(o.client_secret.expose(), "cs-very-secret");
                assert_eq!(o.scopes, ["send", "read:status"]);
                assert_eq!(o.audience.as_deref(), Some("https://api.example.com"));
                assert_eq!(o.client_auth, ClientAuth::Basic);
            }
            other => panic!("{other:?}"),
        }
        let o = &email.options;
        assert_eq!(o.signing.as_ref().unwrap().secrets.len(), 2);
        assert_eq!(o.idempotency_header.as_ref().unwrap(), "idempotency-key");
        assert_eq!(
            o.template_request,
            Some(super::TemplateRequest {
                allow_authorization: true
            })
        );
        let sms = c.channel("sms").unwrap();
        assert!(
            matches!(&sms.auth, Some(Auth::Bearer { token }) if token.expose() == "tok-from-env")
        );
        assert_eq!(
            sms.options.idempotency_header.as_ref().unwrap(),
            "x-request-id"
        );
        assert_eq!(sms.options.signing.as_ref().unwrap().secrets.len(), 1);
        assert_eq!(sms.options.template_request, None);
        let g = &c.settings.http.guard;
        assert!(g.config_urls && g.template_urls);
        assert_eq!(g.allow_cidrs[0].to_string(), "10.1.0.0/16");
        assert!(g.is_exception("http://10.0.0.5:8080/hook?x=1"));
        assert!(!g.is_exception("http://10.0.0.5:8080/hook/other"));
        // Nothing secret shows in the effective configuration.
        let shown = serde_json::to_string(&c).unwrap();
        for secret in ["cs-very-secret", "tok-from-env", "MfKQ9r8", "nWGxne"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(
            shown.contains("\"idempotency_header\":\"idempotency-key\""),
            "{shown}"
        );
    }

    #[test]
    fn extension_problems_name_their_key_paths() {
        let got = issues(
            r#"
clients: { http: { disallow_private_ip_ranges: "yes", private_ip_exception_urls: [ 1 ] } }
courier:
  http:
    request_config:
      url: https://api.example.com/send
      auth:
        type: oauth2_client_credentials
        config: { token_url: "/token", client_id: me, user: x }
      signing: { secrets: [ whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, hunter2 ] }
      idempotency: { header: "bad header" }
      tls: { ca: "not pem", client_cert: "also not pem" }
      template_request: { allow_authorisation: true }
  channels:
    - id: sms
      type: http
      request_config:
        url: https://sms.example.com/
        auth: { type: bearer, config: {} }
        signing: {}
    - id: push
      type: http
      request_config:
        url: https://push.example.com/
        auth: { type: magic }
"#,
        );
        let p = "courier.http.request_config";
        let expected = [
            "clients.http.disallow_private_ip_ranges: must be true or false".to_owned(),
            "clients.http.private_ip_exception_urls[0]: must be a URL".to_owned(),
            format!("{p}.auth.config.user: not used by oauth2_client_credentials"),
            format!("{p}.auth.config.token_url: /token is not an absolute http(s) URL"),
            format!("{p}.auth.config.client_secret: missing"),
            format!("{p}.signing.secrets[1]: expected a whsec_ (HMAC) or whsk_ (Ed25519) secret"),
            format!("{p}.idempotency: \"bad header\" is not a valid header name"),
            format!("{p}.tls.ca: holds no PEM certificate"),
            format!("{p}.tls.client_key: missing: client_cert needs client_key"),
            format!("{p}.template_request.allow_authorisation: unknown key"),
            "courier.channels[0].request_config.auth.config.token: missing".to_owned(),
            "courier.channels[0].request_config.signing.secrets: missing".to_owned(),
            "courier.channels[1].request_config.auth.type: unknown auth type \"magic\"; expected basic_auth, api_key, bearer or oauth2_client_credentials".to_owned(),
        ];
        for e in &expected {
            assert!(
                got.iter().any(|g| g.starts_with(e.as_str())),
                "missing {e:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        assert!(!got.iter().any(|g| g.contains("hunter2")), "{got:#?}");
    }
}
