//! Routing: each configured channel becomes a [`Route`], its transport and its compiled template,
//! prepared once when the courier is built.

use std::collections::HashMap;

use crate::config::{Config, ConfigError, DEFAULT_BODY};
use crate::http::HttpClient;
use crate::message::CtxStyle;
use crate::template::{default_template, source::Loader, Engine, Template};

use super::http::{Answer, SendError};
use super::request::RequestTemplate;

/// How a channel's messages leave: one variant per transport.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A request to the channel's URL.
    Http(RequestTemplate),
}

impl Transport {
    /// Whether the rendered payload is sent at all (a TRACE request has no body).
    pub(crate) fn carries_payload(&self) -> bool {
        match self {
            Transport::Http(request) => request.carries_body(),
        }
    }

    /// Sends `payload` (the rendered template) once.
    pub(crate) async fn send(
        &self,
        client: &HttpClient,
        payload: Option<String>,
        config: &Config,
    ) -> Result<Answer, SendError> {
        match self {
            Transport::Http(request) => request.send(client, payload, &config.settings.http).await,
        }
    }
}

/// A configured channel, ready to send.
pub(crate) struct Route {
    pub(crate) transport: Transport,
    /// The payload template; `None` sends no body.
    pub(crate) template: Option<Template>,
}

/// The routes of every channel in `config`, keyed by channel id.
///
/// # Errors
/// Every channel whose request, template source or template compilation fails, by key path.
pub(crate) async fn build(
    config: &Config,
    checker: &mut Engine,
    style: CtxStyle,
) -> Result<HashMap<String, Route>, ConfigError> {
    let loader = Loader::new(config.base_dir.clone());
    let mut routes = HashMap::new();
    let mut issues = Vec::new();
    for ch in &config.channels {
        let request = match RequestTemplate::new(ch, &config.settings.http.user_agent) {
            Ok(r) => r,
            Err(e) => {
                issues.push((ch.path.clone(), e.to_string()));
                continue;
            }
        };
        let template = match &ch.body {
            None => None,
            Some(uri) if uri == DEFAULT_BODY => Some(default_template(style)),
            Some(uri) => match loader.load(uri).await {
                Ok(t) => Some(t),
                Err(e) => {
                    issues.push((format!("{}.body", ch.path), e.to_string()));
                    continue;
                }
            },
        };
        if let Some(t) = &template {
            if let Err(e) = checker.compile(t) {
                issues.push((format!("{}.body", ch.path), e.to_string()));
                continue;
            }
        }
        let transport = Transport::Http(request);
        routes.insert(
            ch.id.clone(),
            Route {
                transport,
                template,
            },
        );
    }
    if issues.is_empty() {
        Ok(routes)
    } else {
        Err(ConfigError {
            source: None,
            issues,
        })
    }
}
