//! A channel's HTTP side: its request template, the clients it connects through (guarded by the
//! SSRF guard or not, with the channel's TLS settings) and its OAuth2 token, if any.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::AUTHORIZATION;
use hyper::Request;

use crate::config::settings::HttpSettings;
use crate::config::{Auth, ChannelConfig, Config};
use crate::http::guard::Guard;
use crate::http::oauth2::TokenSource;
use crate::http::tls::TlsOptions;
use crate::http::{client_with, HttpClient};

use super::http::{send, Answer, SendError};
use super::request::RequestTemplate;

/// The default clients, shared by every channel without TLS settings of its own.
pub(crate) struct SharedClients {
    guarded: HttpClient,
    open: HttpClient,
}

impl SharedClients {
    pub(crate) fn new(config: &Config) -> Result<Self, String> {
        let (open, guarded) = pair(config, &TlsOptions::default())?;
        Ok(Self { guarded, open })
    }
}

/// An open and a guarded client with `tls`.
fn pair(config: &Config, tls: &TlsOptions) -> Result<(HttpClient, HttpClient), String> {
    let http = &config.settings.http;
    let open = client_with(http.connect_timeout, Arc::new(Guard::off()), tls)
        .map_err(|e| e.to_string())?;
    let guarded = client_with(http.connect_timeout, Arc::new(http.guard.guard(true)), tls)
        .map_err(|e| e.to_string())?;
    Ok((open, guarded))
}

/// One HTTP channel, ready to send.
#[derive(Debug)]
pub(crate) struct HttpChannel {
    pub(crate) request: RequestTemplate,
    /// For the configured URL.
    fixed: HttpClient,
    /// For URLs from the template.
    templated: HttpClient,
    /// For URLs from the template that are exception URLs.
    open: HttpClient,
    token: Option<TokenSource>,
    /// Whether a template may set Authorization itself.
    template_auth: bool,
}

impl HttpChannel {
    /// Prepares `ch`: the guard applies to its configured URL when `config_urls` is on and the
    /// URL is not an exception, and to template URLs when `template_urls` is on.
    ///
    /// # Errors
    /// The channel's TLS settings are unusable (`(key path, reason)`).
    pub(crate) fn new(
        ch: &ChannelConfig,
        request: RequestTemplate,
        config: &Config,
        shared: &SharedClients,
    ) -> Result<Self, (String, String)> {
        let g = &config.settings.http.guard;
        let (open, guarded) = if ch.options.tls.is_default() {
            (shared.open.clone(), shared.guarded.clone())
        } else {
            pair(config, &ch.options.tls).map_err(|e| (format!("{}.tls", ch.path), e))?
        };
        let pick = |url: &str| {
            if g.config_urls && !g.is_exception(url) {
                guarded.clone()
            } else {
                open.clone()
            }
        };
        let token = match &ch.auth {
            Some(Auth::OAuth2(o)) => Some(TokenSource::new(
                o.clone(),
                pick(&o.token_url),
                config.settings.http.timeout,
            )),
            _ => None,
        };
        Ok(Self {
            request,
            fixed: pick(&ch.url),
            templated: if g.template_urls {
                guarded.clone()
            } else {
                open.clone()
            },
            open,
            token,
            template_auth: ch
                .options
                .template_request
                .is_some_and(|t| t.allow_authorization),
        })
    }

    /// Sends `payload` once for message `id` (a fresh id when there is none and the channel
    /// needs one). With OAuth2, a 401 answer drops the token and the request is sent once more
    /// with a fresh one.
    pub(crate) async fn send(
        &self,
        payload: Option<String>,
        id: Option<&str>,
        settings: &HttpSettings,
    ) -> Result<Answer, SendError> {
        let generated;
        let id = match id {
            Some(id) => id,
            None if self.request.stamps() => {
                generated = uuid::Uuid::new_v4().to_string();
                &generated
            }
            None => "",
        };
        // Only stamps carry the time: a clock read less per request for the channels without.
        let now = if self.request.stamps() {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        } else {
            0
        };
        let built = self.request.build_for(payload, id, now)?;
        let client = if !built.templated_url {
            &self.fixed
        } else if settings
            .guard
            .is_exception(&built.request.uri().to_string())
        {
            &self.open
        } else {
            &self.templated
        };
        let (timeout, cap) = (settings.timeout, settings.max_response_body_bytes);
        let mut req = built.request;
        let Some(token) = self
            .token
            .as_ref()
            .filter(|_| !(self.template_auth && req.headers().contains_key(AUTHORIZATION)))
        else {
            return send(client, req, timeout, cap).await;
        };
        let used = token.authorization().await?;
        req.headers_mut().insert(AUTHORIZATION, used.clone());
        let again = copy(&req);
        let answer = send(client, req, timeout, cap).await?;
        if answer.status != hyper::StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        token.refused(&used).await;
        let mut req = again;
        req.headers_mut()
            .insert(AUTHORIZATION, token.authorization().await?);
        send(client, req, timeout, cap).await
    }
}

fn copy(r: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut c = Request::new(r.body().clone());
    *c.method_mut() = r.method().clone();
    *c.uri_mut() = r.uri().clone();
    *c.version_mut() = r.version();
    *c.headers_mut() = r.headers().clone();
    c
}
