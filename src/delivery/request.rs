//! Building the HTTP request for a channel: pure, no I/O.
//!
//! Everything that does not depend on the message (URL, method, headers, auth, User-Agent,
//! Content-Type) is computed once per channel into a [`RequestTemplate`]; per message only the body
//! and its length are added.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};

use std::sync::Arc;

use hyper::header::HeaderName;

use super::shaped::{self, Shaped, ShapedBody};
use super::stamp::Stamp;
use crate::config::{Auth, ChannelConfig, KeyLocation, TemplateRequest};
use crate::encode::{self, EncodeError, Encoding};

use super::http::SendError;

/// A channel whose requests cannot be prepared; `Display` names the key path.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The URL does not parse.
    #[error("{path}.url: {source}")]
    Url {
        /// The channel's key path.
        path: String,
        /// The parse error.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// A signing secret that cannot be used.
    #[error("{path}.signing.secrets: {source}")]
    Signing {
        /// The channel's key path.
        path: String,
        /// Which secret, and why.
        #[source]
        source: crate::webhook::KeyError,
    },
    /// A credential or header that cannot be sent as a header value.
    #[error("{path}.{key}: invalid {what}")]
    Auth {
        /// The channel's key path.
        path: String,
        /// The key under the channel (`auth`, `auth.config.name`...).
        key: &'static str,
        /// What was invalid.
        what: &'static str,
    },
}

/// The message-independent part of a channel's requests.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    encoding: Encoding,
    stamp: Arc<Stamp>,
    /// With a template-shaped request: whether it may replace credentials, and which headers
    /// carry them.
    shape: Option<(TemplateRequest, Vec<HeaderName>)>,
}

/// A request ready to send, and whether its URL came from the template.
#[derive(Debug)]
pub struct Built {
    /// The request.
    pub request: Request<Full<Bytes>>,
    /// The URL is the template's, not the configured one (the SSRF guard applies).
    pub templated_url: bool,
}

impl RequestTemplate {
    /// Prepares `channel`'s requests; `user_agent` is used unless the channel sets one.
    ///
    /// # Errors
    /// The URL does not parse (config validation normally catches this first), or a credential
    /// is not a valid header value.
    pub fn new(channel: &ChannelConfig, user_agent: &str) -> Result<Self, RequestError> {
        let uri: Uri = channel.url.parse().map_err(|source| RequestError::Url {
            path: channel.path.clone(),
            source,
        })?;
        let invalid = |key, what| RequestError::Auth {
            path: channel.path.clone(),
            key,
            what,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &channel.headers {
            // Repeated names in config are distinct YAML keys with different case: keep them all.
            headers.append(name.clone(), value.clone());
        }
        if !headers.contains_key(header::USER_AGENT) {
            if let Ok(ua) = HeaderValue::from_str(user_agent) {
                headers.insert(header::USER_AGENT, ua);
            }
        }
        if !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        match &channel.auth {
            None => {}
            Some(Auth::BasicAuth { user, password }) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    user.expose(),
                    password.expose()
                ));
                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| invalid("auth", "credentials"))?;
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
            Some(Auth::Bearer { token }) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| invalid("auth.config.token", "header value"))?;
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
            // The token is fetched and set per attempt.
            Some(Auth::OAuth2(_)) => {}
            Some(Auth::ApiKey {
                name,
                value,
                location: KeyLocation::Header,
            }) => {
                let name = header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid("auth.config.name", "header name"))?;
                let mut v = HeaderValue::from_str(value.expose())
                    .map_err(|_| invalid("auth.config.value", "header value"))?;
                v.set_sensitive(true);
                headers.insert(name, v);
            }
            Some(Auth::ApiKey {
                name,
                value,
                location: KeyLocation::Cookie,
            }) => {
                let pair = format!("{name}={}", value.expose());
                let joined = match headers.get(header::COOKIE).and_then(|c| c.to_str().ok()) {
                    Some(existing) if !existing.trim().is_empty() => {
                        format!("{}; {pair}", existing.trim_end_matches([';', ' ']))
                    }
                    _ => pair,
                };
                let mut v =
                    HeaderValue::from_str(&joined).map_err(|_| invalid("auth.config", "cookie"))?;
                v.set_sensitive(true);
                headers.insert(header::COOKIE, v);
            }
        }
        let stamp = Stamp::new(&channel.options).map_err(|source| RequestError::Signing {
            path: channel.path.clone(),
            source,
        })?;
        Ok(Self {
            uri,
            method: channel.method.clone(),
            headers,
            encoding: channel.encoding,
            stamp: Arc::new(stamp),
            shape: channel
                .options
                .template_request
                .map(|t| (t, shaped::credential_headers(channel.auth.as_ref()))),
        })
    }

    /// Whether requests carry a body at all: every method but TRACE does.
    pub fn carries_body(&self) -> bool {
        self.method != Method::TRACE
    }

    /// The request for one message, with `payload` (the rendered JSON) as its body, encoded for
    /// the channel's Content-Type. `None` sends no body.
    ///
    /// # Errors
    /// A form channel's payload is not a flat object of strings.
    pub fn build(&self, payload: Option<String>) -> Result<Request<Full<Bytes>>, EncodeError> {
        let body = self.encode(payload.filter(|_| self.carries_body()))?;
        Ok(self.assemble(
            self.uri.clone(),
            self.method.clone(),
            self.headers.clone(),
            body,
            None,
        ))
    }

    /// Whether the channel adds per-message headers (signatures, idempotency key).
    pub fn stamps(&self) -> bool {
        !self.stamp.is_empty()
    }

    /// The request for message `id` sent at `timestamp` (Unix seconds): [`Self::build`], then
    /// the template's request fields when the channel lets the template shape it, then the
    /// per-message headers (signed over the final body).
    ///
    /// # Errors
    /// The payload cannot be encoded, or the template's request is not acceptable.
    pub fn build_for(
        &self,
        payload: Option<String>,
        id: &str,
        timestamp: u64,
    ) -> Result<Built, SendError> {
        let stamp = Some((id, timestamp));
        match (&self.shape, payload) {
            (Some((rules, protected)), Some(payload)) => {
                let shaped = shaped::parse(&payload, protected, rules.allow_authorization)?;
                self.build_shaped(shaped, stamp)
            }
            (_, payload) => {
                let body = self.encode(payload.filter(|_| self.carries_body()))?;
                Ok(Built {
                    request: self.assemble(
                        self.uri.clone(),
                        self.method.clone(),
                        self.headers.clone(),
                        body,
                        stamp,
                    ),
                    templated_url: false,
                })
            }
        }
    }

    fn build_shaped(&self, s: Shaped, stamp: Option<(&str, u64)>) -> Result<Built, SendError> {
        let templated_url = s.url.is_some();
        let base = s.url.unwrap_or_else(|| self.uri.clone());
        let uri = shaped::with_query(&base, &s.query)?;
        let method = s.method.unwrap_or_else(|| self.method.clone());
        let mut headers = self.headers.clone();
        for (name, value) in s.headers {
            headers.insert(name, value);
        }
        let body = match s.body.filter(|_| method != Method::TRACE) {
            None => Bytes::new(),
            Some(ShapedBody::Text(t)) => Bytes::from(t),
            Some(ShapedBody::Json(j)) => self.encode(Some(j))?,
        };
        Ok(Built {
            request: self.assemble(uri, method, headers, body, stamp),
            templated_url,
        })
    }

    fn encode(&self, payload: Option<String>) -> Result<Bytes, EncodeError> {
        Ok(match payload {
            None => Bytes::new(),
            // The rendered string becomes the body without a copy.
            Some(json) => match self.encoding {
                Encoding::Json => Bytes::from(json),
                Encoding::Form => Bytes::from(encode::form(&json)?),
            },
        })
    }

    fn assemble(
        &self,
        uri: Uri,
        method: Method,
        mut headers: HeaderMap,
        body: Bytes,
        stamp: Option<(&str, u64)>,
    ) -> Request<Full<Bytes>> {
        if let Some((id, timestamp)) = stamp {
            self.stamp.apply(&mut headers, id, timestamp, &body);
        }
        if body.is_empty() {
            headers.remove(header::CONTENT_TYPE);
        }
        if !body.is_empty()
            || method == Method::POST
            || method == Method::PUT
            || method == Method::PATCH
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        req
    }
}
