//! Configuration: one YAML or JSON file. The `courier` section of a reference (identity server)
//! config is read as-is, with every other top-level section ignored; our own settings live in the
//! `jsonnet_courier` section ([`Settings`]).
//!
//! Loading validates everything it can without I/O and reports *every* problem, each with its key
//! path (`courier.http.request_config.auth.config.user: missing`). Templates are loaded and
//! compiled when a [`crate::delivery::Courier`] is built from the config, still before any send.
//!
//! Strings may use `${VAR}` (or `${VAR:-default}`) to take values from the environment, and any
//! key `X_file` reads X from a file (e.g. `password_file: /run/secrets/mailer`), so that a config
//! with secrets can be committed.

mod channel;
mod env;
mod extensions;
mod secret;
pub mod settings;
mod smtp;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use hyper::header::{HeaderName, HeaderValue};
use hyper::Method;
use serde_json::{Map, Value};

pub use channel::DEFAULT_BODY;
pub use extensions::{ChannelOptions, Signing, TemplateRequest};
pub use secret::{is_sensitive_header, mask_url, Secret, SecretUrl};
pub use settings::{Settings, StatusPattern};
pub use smtp::{SmtpConfig, DEFAULT_FROM_ADDRESS};

use channel::{channel, RawCourier};
use env::resolve;

use crate::encode::Encoding;

/// Every problem found in a configuration, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from (a file path), when known.
    pub source: Option<String>,
    /// `(key path, reason)` pairs.
    pub issues: Vec<(String, String)>,
}

impl ConfigError {
    pub(crate) fn one(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            source: None,
            issues: vec![(path.into(), reason.into())],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        match &self.source {
            Some(s) => write!(
                f,
                "invalid configuration {s} ({n} problem{}):",
                if n == 1 { "" } else { "s" }
            )?,
            None => write!(
                f,
                "invalid configuration ({n} problem{}):",
                if n == 1 { "" } else { "s" }
            )?,
        }
        for (path, reason) in &self.issues {
            write!(f, "\n  {path}: {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// How an API key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyLocation {
    /// As a header `name: value`, replacing a configured one.
    Header,
    /// As `name=value` in the Cookie header.
    Cookie,
}

/// A channel's authentication.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Auth {
    /// `Authorization: Basic base64(user:password)`.
    BasicAuth {
        /// The user name.
        user: Secret,
        /// The password.
        password: Secret,
    },
    /// An API key in a header or a cookie.
    ApiKey {
        /// Header or cookie name.
        name: String,
        /// The key.
        value: Secret,
        /// Header or cookie.
        #[serde(rename = "in")]
        location: KeyLocation,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// OAuth 2.0 client credentials: a token from `token_url`, cached until shortly before it
    /// expires and fetched again once when the endpoint answers 401.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2(OAuth2),
}

/// OAuth 2.0 client credentials grant (RFC 6749 section 4.4).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OAuth2 {
    /// The token endpoint (absolute http(s) URL).
    #[serde(serialize_with = "ser_masked_url")]
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// Scopes requested (sent space-separated); none when empty.
    pub scopes: Vec<String>,
    /// The `audience` parameter some providers require.
    pub audience: Option<String>,
    /// How the client authenticates to the token endpoint.
    pub client_auth: ClientAuth,
}

/// How OAuth 2.0 client credentials reach the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, the RFC's recommendation; default).
    Basic,
    /// In the form body (`client_secret_post`).
    Body,
}

/// A validated HTTP channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChannelConfig {
    /// `email` or a channel id.
    pub id: String,
    /// The key path of its `request_config`, for error messages.
    #[serde(skip)]
    pub path: String,
    /// Absolute http(s) URL.
    #[serde(serialize_with = "ser_masked_url")]
    pub url: String,
    /// Request method.
    #[serde(serialize_with = "ser_display")]
    pub method: Method,
    /// Configured headers, in order (Content-Type included).
    #[serde(serialize_with = "ser_headers")]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// JSON or form body, from the Content-Type.
    #[serde(serialize_with = "ser_debug")]
    pub encoding: Encoding,
    /// Body template URI; `None` sends no body.
    pub body: Option<String>,
    /// Authentication.
    pub auth: Option<Auth>,
    /// Our extensions: signing, idempotency header, TLS, request from the template.
    #[serde(flatten)]
    pub options: ChannelOptions,
}

impl ChannelConfig {
    /// A channel posting JSON rendered by the shipped default template to `url`, with no auth:
    /// what `--deliver-to` and the benchmarks use.
    pub fn default_post(id: &str, url: &str) -> Self {
        Self {
            id: id.to_owned(),
            path: format!("channel {id}"),
            url: url.to_owned(),
            method: Method::POST,
            headers: Vec::new(),
            encoding: Encoding::Json,
            body: Some(DEFAULT_BODY.to_owned()),
            auth: None,
            options: ChannelOptions::default(),
        }
    }
}

fn ser_masked_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(url))
}
fn ser_display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}
fn ser_debug<S: serde::Serializer, T: fmt::Debug>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:?}").to_ascii_lowercase())
}
fn ser_headers<S: serde::Serializer>(
    h: &[(HeaderName, HeaderValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut m = s.serialize_map(Some(h.len()))?;
    for (k, v) in h {
        let shown = if is_sensitive_header(k.as_str()) {
            "***".to_owned()
        } else {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        };
        m.serialize_entry(k.as_str(), &shown)?;
    }
    m.end()
}

/// A loaded, validated configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    /// Attempts per message are `message_retries + 1` (default 5).
    pub message_retries: u32,
    /// The HTTP channels, `email` first when configured.
    pub channels: Vec<ChannelConfig>,
    /// The SMTP channels: `email` when `delivery_strategy` is smtp, and `type: smtp` channels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub smtp_channels: Vec<SmtpConfig>,
    /// Our own settings.
    #[serde(rename = "jsonnet_courier")]
    pub settings: Settings,
    /// The config file's directory: relative template paths and `import_dir` resolve from here.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// Things worth knowing that are not errors (ignored sections, deprecated forms).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Message templates (`courier.templates`, `courier.template_override_path`), compiled by
    /// [`crate::delivery::Courier::new`].
    #[serde(skip)]
    pub templates: crate::compose::TemplatesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            message_retries: 5,
            channels: Vec::new(),
            smtp_channels: Vec::new(),
            settings: Settings::default(),
            base_dir: None,
            warnings: Vec::new(),
            templates: crate::compose::TemplatesConfig::default(),
        }
    }
}

impl Config {
    /// Reads and validates the configuration file at `path` (YAML, or JSON by a `.json` name).
    ///
    /// # Errors
    /// Unreadable file, syntax errors, and every validation problem, with key paths.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: Some(shown.clone()),
            issues: vec![("(file)".into(), e.to_string())],
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .map(Path::to_path_buf);
        Self::parse(&text, json, base_dir, &|k| std::env::var(k).ok()).map_err(|mut e| {
            e.source = Some(shown);
            e
        })
    }

    /// Parses and validates configuration text. `env` looks up `${VAR}` references.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(
        text: &str,
        json: bool,
        base_dir: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut root: Value = if json {
            serde_json::from_str(text).map_err(|e| {
                ConfigError::one(
                    format!("(line {} column {})", e.line(), e.column()),
                    format!("invalid JSON: {e}"),
                )
            })?
        } else {
            serde_saphyr::from_str(text)
                .map_err(|e| ConfigError::one("(syntax)", format!("invalid YAML: {e}")))?
        };
        if root.is_null() {
            root = Value::Object(Map::new());
        }
        let mut issues = Vec::new();
        resolve(&mut root, "", env, base_dir.as_deref(), &mut issues);
        if !issues.is_empty() {
            return Err(ConfigError {
                source: None,
                issues,
            });
        }
        let Value::Object(mut top) = root else {
            return Err(ConfigError::one(
                "(top level)",
                "expected a mapping with a `courier` section",
            ));
        };
        let raw: RawCourier = match top.remove("courier") {
            None | Some(Value::Null) => RawCourier::default(),
            Some(v) => typed(v, "courier")?,
        };
        let settings: Settings = match top.remove("jsonnet_courier") {
            None | Some(Value::Null) => Settings::default(),
            Some(v) => typed(v, "jsonnet_courier")?,
        };
        let mut cfg = Config {
            settings,
            base_dir,
            ..Config::default()
        };
        cfg.reference_clients(top.get("clients"), &mut issues);
        cfg.validate(raw, &mut issues);
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                source: None,
                issues,
            })
        }
    }

    fn validate(&mut self, mut raw: RawCourier, issues: &mut Vec<(String, String)>) {
        let mut issue = |p: &str, r: String| issues.push((p.to_owned(), r));
        let email_http = self.read_courier_keys(&mut raw, &mut issue);
        match crate::compose::config::parse(
            raw.templates.as_ref(),
            raw.template_override_path.as_ref(),
            self.base_dir.as_deref(),
        ) {
            Ok(t) => self.templates = t,
            Err(e) => e.0.into_iter().for_each(|(k, m)| issue(&k, m)),
        }
        self.read_channels(raw, email_http, &mut issue);
        let base_dir = self.base_dir.clone();
        self.settings.validate(base_dir.as_deref(), &mut issue);
    }

    /// `courier.message_retries` and `delivery_strategy`, and warnings for the reference
    /// courier's keys this one does not use. Returns whether email goes over HTTP.
    fn read_courier_keys(
        &mut self,
        raw: &mut RawCourier,
        issue: &mut dyn FnMut(&str, String),
    ) -> bool {
        match raw.message_retries {
            None => {}
            Some(n) if (0..=1000).contains(&n) => self.message_retries = n as u32,
            Some(n) => issue(
                "courier.message_retries",
                format!("{n} is out of range (0 to 1000)"),
            ),
        }
        let has_http_email = raw
            .http
            .as_ref()
            .is_some_and(|h| h.request_config.is_some());
        let strategy = match raw.delivery_strategy.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => s,
            // The reference's default is smtp. A config that configures only the http request
            // means http; saying so beats failing every email.
            _ if has_http_email && raw.smtp.is_none() => {
                self.warnings.push("courier.delivery_strategy is unset (the reference's default is smtp); using http because only courier.http.request_config is configured".into());
                "http"
            }
            _ => "smtp",
        };
        let email_http = match strategy {
            "http" => true,
            "smtp" => {
                match raw.smtp.take() {
                    Some(v) => {
                        let warn = &mut |w| self.warnings.push(w);
                        if let Some(c) = smtp::smtp("email", "courier.smtp", v, issue, warn) {
                            self.smtp_channels.push(c);
                        }
                    }
                    None => {
                        let unset = if raw.delivery_strategy.is_none() {
                            " (unset: the reference's default)"
                        } else {
                            ""
                        };
                        self.warnings.push(format!("email has no route: courier.delivery_strategy is smtp{unset} but courier.smtp is not set; emails fail at delivery (set courier.smtp.connection_uri, or delivery_strategy: http with courier.http.request_config)"));
                    }
                }
                false
            }
            other => {
                issue(
                    "courier.delivery_strategy",
                    format!("unknown strategy {other:?}; expected http or smtp"),
                );
                false
            }
        };
        for (key, present) in [
            ("smtp (delivery_strategy is http)", raw.smtp.is_some()),
            ("sms", raw.sms.is_some()),
            ("worker", raw.worker.is_some()),
        ] {
            if present {
                self.warnings.push(format!(
                    "courier.{key} is not used by this courier (ignored)"
                ));
            }
        }
        email_http
    }

    /// The email channel (`courier.http.request_config`) and `courier.channels`.
    fn read_channels(
        &mut self,
        raw: RawCourier,
        email_http: bool,
        issue: &mut dyn FnMut(&str, String),
    ) {
        let mut ids = HashSet::new();
        if self.smtp_channel("email").is_some() {
            ids.insert("email".to_owned());
        }
        if let Some(req) = raw.http.and_then(|h| h.request_config) {
            if email_http {
                let path = "courier.http.request_config";
                if let Some(ch) = channel("email", path, req, true, issue) {
                    ids.insert("email".to_owned());
                    self.channels.push(ch);
                }
            }
        } else if email_http
            && raw
                .channels
                .as_ref()
                .is_none_or(|c| c.iter().all(|c| c.id.as_deref() != Some("email")))
        {
            // As in the reference, not a load error: email fails when one is sent.
            self.warnings.push("email has no route: delivery_strategy is http but courier.http.request_config is not set, so emails will fail".into());
        }
        for (i, ch) in raw.channels.unwrap_or_default().into_iter().enumerate() {
            let path = format!("courier.channels[{i}]");
            let Some(id) = ch.id.filter(|s| !s.trim().is_empty()) else {
                issue(&format!("{path}.id"), "missing".into());
                continue;
            };
            match ch.kind.as_deref() {
                Some("http") => {}
                Some("smtp") => {
                    if !ids.insert(id.clone()) {
                        issue(
                            &format!("{path}.id"),
                            format!("duplicate channel id {id:?}"),
                        );
                        continue;
                    }
                    if ch.request_config.is_some() {
                        issue(
                            &format!("{path}.request_config"),
                            "only http channels take request_config".into(),
                        );
                    }
                    let Some(v) = ch.smtp_config else {
                        issue(&format!("{path}.smtp_config"), "missing".into());
                        continue;
                    };
                    let at = format!("{path}.smtp_config");
                    let warn = &mut |w| self.warnings.push(w);
                    if let Some(c) = smtp::smtp(&id, &at, v, issue, warn) {
                        self.smtp_channels.push(c);
                    }
                    continue;
                }
                Some(other) => {
                    issue(
                        &format!("{path}.type"),
                        format!("unknown type {other:?}; expected http or smtp"),
                    );
                    continue;
                }
                None => {
                    issue(
                        &format!("{path}.type"),
                        "missing; expected http or smtp".into(),
                    );
                    continue;
                }
            }
            if ch.smtp_config.is_some() {
                issue(
                    &format!("{path}.smtp_config"),
                    "only smtp channels take smtp_config".into(),
                );
            }
            if !ids.insert(id.clone()) {
                issue(
                    &format!("{path}.id"),
                    format!("duplicate channel id {id:?}"),
                );
                continue;
            }
            let Some(req) = ch.request_config else {
                issue(&format!("{path}.request_config"), "missing".into());
                continue;
            };
            if let Some(c) = channel(&id, &format!("{path}.request_config"), req, false, issue) {
                self.channels.push(c);
            }
        }
    }

    /// The reference's `clients.http` settings that apply to courier requests.
    fn reference_clients(&mut self, clients: Option<&Value>, issues: &mut Vec<(String, String)>) {
        let Some(http) = clients.and_then(|c| c.get("http")) else {
            return;
        };
        let guard = &mut self.settings.http.guard;
        match http.get("disallow_private_ip_ranges") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => guard.config_urls = true,
            Some(_) => issues.push((
                "clients.http.disallow_private_ip_ranges".into(),
                "must be true or false".into(),
            )),
        }
        match http.get("private_ip_exception_urls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(urls)) => {
                for (i, u) in urls.iter().enumerate() {
                    match u {
                        Value::String(u) => guard.exception_urls.push(u.clone()),
                        _ => issues.push((
                            format!("clients.http.private_ip_exception_urls[{i}]"),
                            "must be a URL".into(),
                        )),
                    }
                }
            }
            Some(_) => issues.push((
                "clients.http.private_ip_exception_urls".into(),
                "must be a list of URLs".into(),
            )),
        }
    }

    /// The channel that delivers messages for `id`.
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// The SMTP channel that delivers messages for `id`.
    pub fn smtp_channel(&self, id: &str) -> Option<&SmtpConfig> {
        self.smtp_channels.iter().find(|c| c.id == id)
    }

    /// The template limits these settings describe.
    pub fn limits(&self) -> crate::template::Limits {
        let t = &self.settings.template;
        crate::template::Limits {
            max_stack: t.max_stack,
            max_output_bytes: t.max_output_bytes,
            timeout: t.timeout,
            import_dir: t.import_dir.clone(),
            trace_to_stderr: false,
        }
    }

    /// The render pool these settings describe: evaluator count, isolation, written-off cap.
    pub fn pool_options(&self) -> crate::template::PoolOptions {
        use crate::template::{Isolation, PoolOptions, ProcessOptions};
        let t = &self.settings.template;
        let defaults = PoolOptions::default();
        PoolOptions {
            threads: match t.threads {
                0 => defaults.threads,
                n => n,
            },
            max_written_off: t.max_written_off,
            isolation: match t.isolation {
                settings::IsolationMode::Thread => Isolation::Thread,
                settings::IsolationMode::Process => Isolation::Process(ProcessOptions {
                    max_memory_bytes: t.max_memory_bytes,
                    ..ProcessOptions::default()
                }),
            },
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, section: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.inner().to_string();
        let at = e.path().to_string();
        let path = if at == "." {
            section.to_owned()
        } else {
            format!("{section}.{at}")
        };
        // Make serde's phrasing name the key itself.
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let parent = path.rsplit_once('.').map_or(path.as_str(), |(p, _)| p);
            let parent = if at == "." { path.as_str() } else { parent };
            let expected = expected.trim_start_matches(", ");
            return ConfigError::one(
                format!("{parent}.{key}"),
                format!("unknown key ({expected})"),
            );
        }
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let key = rest.split('`').next().unwrap_or(rest);
            return ConfigError::one(format!("{path}.{key}"), "missing");
        }
        ConfigError::one(path, inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::parse(yaml, false, None, &|k| match k {
            "COURIER_API_KEY" => Some("from-env".into()),
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

    const REFERENCE: &str = r#"
dsn: memory
serve:
  public: { base_url: "http://127.0.0.1:4433/" }
selfservice: { default_browser_return_url: "http://127.0.0.1:4455/" }
courier:
  delivery_strategy: http
  message_retries: 3
  smtp:
    connection_uri: smtps://user:pass@mail.example.com:465/
  template_override_path: /conf/courier-templates
  http:
    request_config:
      url: https://api.example.com/send
      method: post
      headers:
        Content-Type: application/json
        X-Tenant: 42
      body: base64://ZnVuY3Rpb24oY3R4KSB7fQ==
      auth:
        type: basic_auth
        config:
          user: courier
          password: s3cr3t-pw
  channels:
    - id: sms
      type: http
      request_config:
        url: https://sms.example.com/v1/messages?token=abc
        headers:
          Content-Type: application/x-www-form-urlencoded
        auth:
          type: api_key
          config:
            name: X-Api-Key
            value: ${COURIER_API_KEY}
            in: header
"#;

    #[test]
    fn reads_a_reference_config_as_is() {
        let c = parse(REFERENCE).unwrap();
        assert_eq!(c.message_retries, 3);
        assert_eq!(c.channels.len(), 2);
        let email = c.channel("email").unwrap();
        assert_eq!(email.method, Method::POST);
        assert_eq!(email.headers[1].1, "42");
        assert_eq!(
            email.auth,
            Some(Auth::BasicAuth {
                user: Secret::new("courier"),
                password: Secret::new("s3cr3t-pw")
            })
        );
        let sms = c.channel("sms").unwrap();
        assert_eq!(sms.encoding, Encoding::Form);
        assert_eq!(sms.body, None, "channels have no default body");
        match &sms.auth {
            Some(Auth::ApiKey {
                value, location, ..
            }) => {
                assert_eq!(value.expose(), "from-env");
                assert_eq!(*location, KeyLocation::Header);
            }
            other => panic!("{other:?}"),
        }
        assert!(c.warnings.iter().any(|w| w.contains("courier.smtp")));
        assert_eq!(c.settings, Settings::default());
    }

    #[test]
    fn the_effective_config_masks_every_secret() {
        let c = parse(REFERENCE).unwrap();
        let shown = serde_json::to_string(&c).unwrap();
        for secret in [
            "s3cr3t-pw",
            "from-env",
            "\"user\":\"courier\"",
            "token=abc",
            "pass@",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("https://sms.example.com/v1/messages?token=***"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t-pw") && !debug.contains("from-env"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let got = issues(
            r#"
courier:
  message_retries: -1
  http:
    request_config:
      url: /relative
      method: "BAD METHOD"
      headers:
        Content-Type: text/plain
      auth:
        type: basic_auth
        config:
          password: x
  channels:
    - id: sms
      type: http
      request_config:
        url: ftp://files.example.com
        auth:
          type: api_key
          config:
            name: X-Key
            in: query
    - type: http
    - id: push
      type: carrier-pigeon
"#,
        );
        let expected = [
            "courier.message_retries: -1 is out of range (0 to 1000)",
            "courier.http.request_config.url: /relative is not an absolute http(s) URL",
            "courier.http.request_config.method: \"BAD METHOD\" is not an HTTP method",
            "courier.http.request_config.headers.Content-Type: \"text/plain\" is not supported",
            "courier.http.request_config.auth.config.user: missing",
            "courier.channels[0].request_config.url: ftp://files.example.com is not an absolute http(s) URL",
            "courier.channels[0].request_config.auth.config.value: missing",
            "courier.channels[0].request_config.auth.config.in: \"query\": expected header or cookie",
            "courier.channels[1].id: missing",
            "courier.channels[2].type: unknown type \"carrier-pigeon\"; expected http or smtp",
        ];
        for e in expected {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing {e:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), expected.len(), "{got:#?}");
    }

    #[test]
    fn unknown_keys_are_reported() {
        let got = issues("courier:\n  http:\n    request_config:\n      url: http://x.example/\n      bodyy: file://x\n");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("courier.http.request_config.bodyy: unknown key (expected one of"),
            "{got:?}"
        );
        let got = issues("jsonnet_courier:\n  retry:\n    initial_backof: 1s\n");
        assert!(
            got[0].starts_with("jsonnet_courier.retry.initial_backof: unknown key"),
            "{got:?}"
        );
        let got = issues("jsonnet_courier:\n  http:\n    timeout: soon\n");
        assert!(
            got[0].starts_with("jsonnet_courier.http.timeout: \"soon\" is not a duration"),
            "{got:?}"
        );
    }

    #[test]
    fn env_and_file_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "file-secret\n").unwrap();
        let yaml = "courier:\n  http:\n    request_config:\n      url: http://x.example/${MISSING:-fallback}\n      auth:\n        type: basic_auth\n        config:\n          user: u\n          password_file: ./pw\n";
        let c = Config::parse(yaml, false, Some(dir.path().to_path_buf()), &|_| None).unwrap();
        let email = c.channel("email").unwrap();
        assert_eq!(email.url, "http://x.example/fallback");
        assert_eq!(
            email.auth,
            Some(Auth::BasicAuth {
                user: Secret::new("u"),
                password: Secret::new("file-secret")
            })
        );
        let got = issues("courier:\n  http:\n    request_config:\n      url: http://x.example/\n      auth:\n        type: api_key\n        config: {name: K, value: \"${NOPE}\"}\n");
        assert_eq!(
            got,
            ["courier.http.request_config.auth.config.value: environment variable NOPE is not set (write ${NOPE:-default} for a default)"]
        );
        assert_eq!(env::expand("cost: $$5", &|_| None).unwrap(), "cost: $5");
    }

    #[test]
    fn no_key_is_required_and_a_missing_email_route_is_a_warning() {
        for text in [
            "",
            "courier:\n  delivery_strategy: smtp\n",
            "courier:\n  delivery_strategy: http\n",
            "courier:\n  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: http://127.0.0.1:1/\n",
        ] {
            let c = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(c.channels.iter().all(|ch| ch.id != "email"), "{text:?}");
            assert!(
                c.warnings.iter().any(|w| w.starts_with("email has no route")),
                "{text:?}: {:?}",
                c.warnings
            );
        }
        // Unset, with only the http request configured: http, said in a warning.
        let c = parse("courier:\n  http:\n    request_config:\n      url: http://127.0.0.1:1/\n")
            .unwrap();
        assert_eq!(c.channels[0].id, "email");
        assert!(c.warnings.iter().any(|w| w.contains("using http")));
    }

    #[test]
    fn json_configs_and_our_settings() {
        let c = Config::parse(
            r#"{"courier": {"http": {"request_config": {"url": "http://127.0.0.1:1/"}}},
                "jsonnet_courier": {"ctx_style": "snake", "retry": {"retryable_statuses": [429, "5xx"], "max_backoff": "30s"},
                                    "template": {"timeout": 0.5}}}"#,
            true,
            None,
            &|_| None,
        )
        .unwrap();
        assert_eq!(c.settings.ctx_style, Some(crate::message::CtxStyle::Snake));
        assert_eq!(
            c.settings.retry.max_backoff,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(
            c.settings.template.timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(
            c.channel("email").unwrap().body.as_deref(),
            Some(DEFAULT_BODY)
        );
        let err = Config::parse("{\"courier\": ", true, None, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid JSON"), "{err}");
    }

    #[test]
    fn template_isolation_settings_describe_the_pool() {
        use crate::template::{Isolation, DEFAULT_MAX_MEMORY_BYTES};
        let c = parse("").unwrap();
        let p = c.pool_options();
        assert_eq!((p.isolation, p.max_written_off), (Isolation::Thread, 4));
        let c = parse(
            "jsonnet_courier:\n  template:\n    isolation: process\n    threads: 3\n    max_memory_bytes: 1048576\n",
        )
        .unwrap();
        let p = c.pool_options();
        assert_eq!(p.threads, 3);
        let Isolation::Process(opts) = p.isolation else {
            panic!("{p:?}")
        };
        assert_eq!(opts.max_memory_bytes, 1 << 20);
        assert_ne!(opts.max_memory_bytes, DEFAULT_MAX_MEMORY_BYTES);
        let got = issues("jsonnet_courier:\n  template:\n    isolation: container\n");
        assert!(
            got[0].starts_with("jsonnet_courier.template.isolation: unknown variant `container`"),
            "{got:?}"
        );
        let got = issues("jsonnet_courier:\n  template:\n    max_written_off: 0\n");
        assert_eq!(
            got,
            ["jsonnet_courier.template.max_written_off: must be at least 1"]
        );
    }
}
