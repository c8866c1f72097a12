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

use crate::config::settings::HttpSettings;
use crate::config::{Auth, ChannelConfig, KeyLocation};
use crate::encode::{self, EncodeError, Encoding};
use crate::http::HttpClient;

use super::http::{Answer, SendError};

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
        Ok(Self {
            uri,
            method: channel.method.clone(),
            headers,
            encoding: channel.encoding,
        })
    }

    /// Builds the request for `payload` and sends it: one HTTP attempt.
    pub(crate) async fn send(
        &self,
        client: &HttpClient,
        payload: Option<String>,
        settings: &HttpSettings,
    ) -> Result<Answer, SendError> {
        let req = self.build(payload)?;
        super::http::send(
            client,
            req,
            settings.timeout,
            settings.max_response_body_bytes,
        )
        .await
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
        let body = match payload.filter(|_| self.carries_body()) {
            None => Bytes::new(),
            // The rendered string becomes the body without a copy.
            Some(json) => match self.encoding {
                Encoding::Json => Bytes::from(json),
                Encoding::Form => Bytes::from(encode::form(&json)?),
            },
        };
        let mut headers = self.headers.clone();
        if body.is_empty() {
            headers.remove(header::CONTENT_TYPE);
        }
        if !body.is_empty()
            || self.method == Method::POST
            || self.method == Method::PUT
            || self.method == Method::PATCH
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        Ok(req)
    }
}
