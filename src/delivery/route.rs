//! Routing: each configured HTTP channel becomes a [`Route`], its transport and its compiled
//! template, and each SMTP channel a [`Mailer`], all prepared once when the courier is built.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{ChannelConfig, Config, ConfigError, DEFAULT_BODY};
use crate::message::CtxStyle;
use crate::smtp::{Mailer, TransportOptions};
use crate::template::style::{self, StyleChoice, StyleReason};
use crate::template::{default_template, source::Loader, Engine, Limits, Template};

use super::http::{Answer, SendError};
use super::http_channel::{HttpChannel, SharedClients};
use super::request::RequestTemplate;

/// How a channel's messages leave: one variant per transport.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A request to the channel's URL (or the template's).
    Http(HttpChannel),
}

impl Transport {
    /// Whether the rendered payload is sent at all (a TRACE request has no body).
    pub(crate) fn carries_payload(&self) -> bool {
        match self {
            Transport::Http(http) => http.request.carries_body(),
        }
    }

    /// Sends `payload` (the rendered template) once for message `id`.
    pub(crate) async fn send(
        &self,
        payload: Option<String>,
        id: Option<&str>,
        config: &Config,
    ) -> Result<Answer, SendError> {
        match self {
            Transport::Http(http) => http.send(payload, id, &config.settings.http).await,
        }
    }
}

/// Every channel's route, by channel id.
pub(crate) type Routes = HashMap<String, Arc<Route>>;

/// A configured channel, ready to send.
pub(crate) struct Route {
    /// Shared with the routes that replace this one's template (a remote template refreshed).
    pub(crate) transport: Arc<Transport>,
    /// The payload template; `None` sends no body.
    pub(crate) template: Option<Template>,
    /// The ctx style the template gets, decided once here.
    pub(crate) style: StyleChoice,
}

/// The routes of every channel in `config`, keyed by channel id. Templates are read first; the
/// compile check runs after, with no await in between, because an engine cannot be held across
/// one (it is not Send, and reloads build routes on a spawned task).
///
/// # Errors
/// Every channel whose request, template source, template compilation or ctx style fails, by
/// key path.
pub(crate) async fn build(
    config: &Config,
    limits: &Limits,
    loader: &Loader,
) -> Result<Routes, ConfigError> {
    let mut loaded = Vec::new();
    let mut issues = Vec::new();
    for ch in &config.channels {
        let template = match &ch.body {
            None => None,
            Some(uri) if uri == DEFAULT_BODY => {
                let explicit = config.settings.ctx_style_for(&ch.id);
                Some(default_template(explicit.map_or(CtxStyle::Snake, |e| e.0)))
            }
            Some(uri) => match loader.load(uri).await {
                Ok(t) => Some(t),
                Err(e) => {
                    issues.push((format!("{}.body", ch.path), e.to_string()));
                    continue;
                }
            },
        };
        loaded.push((ch, template));
    }
    let routes = compile(config, loaded, limits, &mut issues)?;
    if issues.is_empty() {
        Ok(routes)
    } else {
        Err(ConfigError {
            source: None,
            issues,
        })
    }
}

/// Prepares each channel's request, compiles its template and decides its ctx style.
fn compile(
    config: &Config,
    loaded: Vec<(&ChannelConfig, Option<Template>)>,
    limits: &Limits,
    issues: &mut Vec<(String, String)>,
) -> Result<Routes, ConfigError> {
    let mut checker = Engine::new(limits.clone())
        .map_err(|e| ConfigError::one("jsonnet_courier.template.import_dir", e.to_string()))?;
    let shared =
        SharedClients::new(config).map_err(|e| ConfigError::one("jsonnet_courier.http", e))?;
    let mut routes = HashMap::new();
    for (ch, template) in loaded {
        let request = match RequestTemplate::new(ch, &config.settings.http.user_agent) {
            Ok(r) => r,
            Err(e) => {
                issues.push((ch.path.clone(), e.to_string()));
                continue;
            }
        };
        let style = match &template {
            Some(t) => match check(&mut checker, config, ch, t) {
                Ok(choice) => choice,
                Err(e) => {
                    issues.push((format!("{}.body", ch.path), e));
                    continue;
                }
            },
            None => StyleChoice {
                style: config
                    .settings
                    .ctx_style_for(&ch.id)
                    .map_or(CtxStyle::Snake, |e| e.0),
                reason: StyleReason::ReadsNone,
            },
        };
        let transport = match HttpChannel::new(ch, request, config, &shared) {
            Ok(http) => Transport::Http(http),
            Err((path, reason)) => {
                issues.push((path, reason));
                continue;
            }
        };
        routes.insert(
            ch.id.clone(),
            Arc::new(Route {
                transport: Arc::new(transport),
                template,
                style,
            }),
        );
    }
    Ok(routes)
}

/// Compiles `template` as `ch`'s body and decides the ctx style it gets.
fn check(
    checker: &mut Engine,
    config: &Config,
    ch: &ChannelConfig,
    template: &Template,
) -> Result<StyleChoice, String> {
    checker.compile(template).map_err(|e| e.to_string())?;
    let explicit = config.settings.ctx_style_for(&ch.id);
    let explicit = explicit.as_ref().map(|(s, by)| (*s, by.as_str()));
    style::decide(template, explicit).map_err(|e| e.to_string())
}

/// `routes` with `template` as the body of every channel whose body URI is `uri`: compiled and
/// styled like at load, the transports shared. `Ok(None)` when no channel reads `uri`.
///
/// # Errors
/// The template does not compile or mixes ctx styles: `(key path, message)`.
pub(crate) fn with_template(
    routes: &Routes,
    config: &Config,
    limits: &Limits,
    uri: &str,
    template: &Template,
) -> Result<Option<Routes>, (String, String)> {
    let readers: Vec<(&ChannelConfig, &Arc<Route>)> = config
        .channels
        .iter()
        .filter(|c| c.body.as_deref() == Some(uri))
        .filter_map(|c| Some((c, routes.get(&c.id)?)))
        .collect();
    let Some((first, _)) = readers.first() else {
        return Ok(None);
    };
    let mut checker =
        Engine::new(limits.clone()).map_err(|e| (format!("{}.body", first.path), e.to_string()))?;
    let mut out = routes.clone();
    for (ch, route) in readers {
        let style = check(&mut checker, config, ch, template)
            .map_err(|e| (format!("{}.body", ch.path), e))?;
        out.insert(
            ch.id.clone(),
            Arc::new(Route {
                transport: Arc::clone(&route.transport),
                template: Some(template.clone()),
                style,
            }),
        );
    }
    Ok(Some(out))
}

/// The SMTP channels of `config` (email with `delivery_strategy: smtp`, `type: smtp` channels),
/// keyed by channel id; they are routed before the HTTP channels.
///
/// # Errors
/// Every SMTP channel whose connection settings are invalid, by key path.
pub(crate) fn mailers(config: &Config) -> Result<HashMap<String, Arc<Mailer>>, ConfigError> {
    let mut mailers = HashMap::new();
    let mut issues = Vec::new();
    for ch in &config.smtp_channels {
        let options = TransportOptions {
            connect_timeout: config.settings.http.connect_timeout,
            ..TransportOptions::default()
        };
        match Mailer::new(ch, options) {
            Ok(m) => {
                mailers.insert(ch.id.clone(), Arc::new(m));
            }
            Err(e) => issues.push((ch.path.clone(), e.to_string())),
        }
    }
    if issues.is_empty() {
        Ok(mailers)
    } else {
        Err(ConfigError {
            source: None,
            issues,
        })
    }
}
