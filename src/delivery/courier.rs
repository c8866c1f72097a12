//! [`Courier`]: built from a [`Config`], it renders and sends messages, one attempt at a time or a
//! whole delivery with the retry policy.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use crate::config::{ChannelConfig, Config, ConfigError};
use crate::http::{self, HttpClient, SendFailure};
use crate::message::{ctx, CtxStyle, Message};

use crate::request::RequestTemplate;
use crate::retry::{parse_retry_after, RetryPolicy};
use crate::template::style::{self, StyleChoice, StyleReason};
use crate::template::{source::Loader, Ctx, Engine, Pool, RenderErrorKind, Template};

use super::{Attempt, AttemptClass, DeliveryReport, ErrorKind, Outcome};

/// A configured channel, ready to send.
struct Route {
    request: RequestTemplate,
    template: Option<Template>,
    /// The ctx style this channel's template gets, decided once at load.
    style: StyleChoice,
}

/// What a configured channel renders with: for `config check` and the logs.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// The channel id.
    pub channel: String,
    /// The body template's name, if the channel has one.
    pub template: Option<String>,
    /// The ctx style the template gets, and why.
    pub style: StyleChoice,
}

/// Renders and delivers messages over the configured HTTP channels. Cheap to share (`Arc` it);
/// all methods take `&self`.
///
/// ```no_run
/// use jsonnet_courier::config::Config;
/// use jsonnet_courier::delivery::{Courier, Outcome};
/// use jsonnet_courier::message::Message;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::load("courier.yaml".as_ref())?;
/// let courier = Courier::new(config).await?;
/// let message = Message::from_json(br#"{"recipient":"a@example.com","template_type":"stub"}"#)?;
/// let report = courier.deliver(&message).await;
/// assert_eq!(report.outcome, Outcome::Delivered);
/// # Ok(()) }
/// ```
pub struct Courier {
    pool: Pool,
    /// Everything a configuration decides; replaced whole by [`Courier::reload`], so an attempt
    /// sees one configuration from start to end.
    setup: RwLock<Arc<Setup>>,
}

/// Channels with their compiled templates, the client, the retry policy.
struct Setup {
    routes: HashMap<String, Route>,
    client: HttpClient,
    policy: RetryPolicy,
    config: Arc<Config>,
}

impl Courier {
    /// Loads and compiles every channel's template and prepares its requests.
    ///
    /// # Errors
    /// A template that cannot be loaded or does not compile, named by its key path.
    pub async fn new(config: Config) -> Result<Self, ConfigError> {
        let threads = match config.settings.template.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = Pool::new(threads, config.limits())
            .map_err(|e| ConfigError::one("jsonnet_courier.template", e.to_string()))?;
        Self::with_pool(config, pool).await
    }

    /// Like [`Courier::new`], rendering on an existing pool (whose limits then apply).
    ///
    /// # Errors
    /// As [`Courier::new`].
    pub async fn with_pool(config: Config, pool: Pool) -> Result<Self, ConfigError> {
        let setup = Self::setup(config, &pool).await?;
        Ok(Self {
            pool,
            setup: RwLock::new(Arc::new(setup)),
        })
    }

    /// Replaces the configuration and every template at once, for the next attempts (attempts
    /// in flight finish with the old ones). Templates are read again: file templates from disk,
    /// remote ones fetched anew. The render pool (threads and limits) stays.
    ///
    /// # Errors
    /// As [`Courier::new`]; the running configuration is then left as it was.
    pub async fn reload(&self, config: Config) -> Result<(), ConfigError> {
        let setup = Arc::new(Self::setup(config, &self.pool).await?);
        if let Ok(mut current) = self.setup.write() {
            *current = setup;
        }
        Ok(())
    }

    fn current(&self) -> Arc<Setup> {
        match self.setup.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    async fn setup(config: Config, pool: &Pool) -> Result<Setup, ConfigError> {
        // Templates are read first; the compile check runs after, with no await in between,
        // because an engine cannot be held across one (it is not Send).
        let loader = Loader::new(config.base_dir.clone());
        let mut loaded = Vec::new();
        let mut issues = Vec::new();
        for ch in &config.channels {
            let template = match &ch.body {
                None => None,
                Some(uri) if uri == crate::config::DEFAULT_BODY => {
                    let explicit = config.settings.ctx_style_for(&ch.id);
                    Some(crate::template::default_template(
                        explicit.map_or(CtxStyle::Snake, |e| e.0),
                    ))
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
        let routes = Self::routes_of(&config, loaded, pool, &mut issues)?;
        if !issues.is_empty() {
            return Err(ConfigError {
                source: None,
                issues,
            });
        }
        Ok(Setup {
            routes,
            client: http::client(config.settings.http.connect_timeout),
            policy: RetryPolicy::new(config.message_retries, config.settings.retry.clone()),
            config: Arc::new(config),
        })
    }

    /// Prepares each channel's requests, compiles its template and decides its ctx style.
    fn routes_of(
        config: &Config,
        loaded: Vec<(&ChannelConfig, Option<Template>)>,
        pool: &Pool,
        issues: &mut Vec<(String, String)>,
    ) -> Result<HashMap<String, Route>, ConfigError> {
        let mut checker = Engine::new(pool.limits().clone())
            .map_err(|e| ConfigError::one("jsonnet_courier.template.import_dir", e.to_string()))?;
        let mut routes = HashMap::new();
        for (ch, template) in loaded {
            let request = match RequestTemplate::new(ch, &config.settings.http.user_agent) {
                Ok(r) => r,
                Err(e) => {
                    issues.push((ch.path.clone(), e));
                    continue;
                }
            };
            let explicit = config.settings.ctx_style_for(&ch.id);
            let explicit = explicit.as_ref().map(|(s, by)| (*s, by.as_str()));
            let style = match &template {
                Some(t) => {
                    if let Err(e) = checker.compile(t) {
                        issues.push((format!("{}.body", ch.path), e.to_string()));
                        continue;
                    }
                    match style::decide(t, explicit) {
                        Ok(choice) => choice,
                        Err(e) => {
                            issues.push((format!("{}.body", ch.path), e.to_string()));
                            continue;
                        }
                    }
                }
                None => StyleChoice {
                    style: explicit.map_or(CtxStyle::Snake, |e| e.0),
                    reason: StyleReason::ReadsNone,
                },
            };
            routes.insert(
                ch.id.clone(),
                Route {
                    request,
                    template,
                    style,
                },
            );
        }
        Ok(routes)
    }

    /// The retry policy in force.
    pub fn policy(&self) -> RetryPolicy {
        self.current().policy.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.current().config)
    }

    /// The render pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Every configured channel's template and ctx style, by channel id.
    pub fn routes(&self) -> Vec<RouteInfo> {
        let mut out: Vec<RouteInfo> = self
            .current()
            .routes
            .iter()
            .map(|(id, r)| RouteInfo {
                channel: id.clone(),
                template: r.template.as_ref().map(|t| t.name().to_owned()),
                style: r.style.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        out
    }

    /// Makes attempt number `number` of `message`: render, send, classify. Never fails: every
    /// problem is recorded in the returned attempt.
    pub async fn attempt(&self, message: &Message, number: u32) -> Attempt {
        let make_ctx = |style| Ctx::Json(ctx::to_json(message, style));
        self.attempt_inner(message.channel(), make_ctx, number)
            .await
    }

    /// Like [`Courier::attempt`], with a ctx of any shape handed to `channel`'s template as is.
    pub async fn attempt_with_ctx(&self, channel: &str, ctx: Ctx, number: u32) -> Attempt {
        self.attempt_inner(channel, |_| ctx, number).await
    }

    /// The ctx is built only when a template is rendered (not for TRACE or body-less channels).
    async fn attempt_inner(
        &self,
        channel: &str,
        make_ctx: impl FnOnce(CtxStyle) -> Ctx,
        number: u32,
    ) -> Attempt {
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let mut a = Attempt {
            number,
            started_at,
            latency_ms: 0.0,
            render_ms: None,
            class: AttemptClass::Permanent,
            status: None,
            error_kind: None,
            error: None,
            response_body: None,
            retry_after_s: None,
        };
        let fail = |mut a: Attempt, kind: ErrorKind, class: AttemptClass, error: String| {
            a.error_kind = Some(kind);
            a.class = class;
            a.error = Some(error);
            a.latency_ms = clock.elapsed().as_secs_f64() * 1e3;
            a
        };
        let setup = self.current();
        let Some(route) = setup.routes.get(channel) else {
            let mut known: Vec<&str> = setup.routes.keys().map(String::as_str).collect();
            known.sort_unstable();
            return fail(
                a,
                ErrorKind::Channel,
                AttemptClass::Permanent,
                if channel == "email" {
                    format!(
                        "email has no route: no http email channel is configured (set courier.delivery_strategy: http and courier.http.request_config; configured channels: {})",
                        known.join(", ")
                    )
                } else {
                    format!(
                        "no http channel {channel:?} is configured (configured: {})",
                        known.join(", ")
                    )
                },
            );
        };
        let payload = match (&route.template, route.request.carries_body()) {
            (Some(t), true) => match self.pool.render(t, make_ctx(route.style.style)).await {
                Ok(p) => {
                    a.render_ms = Some(clock.elapsed().as_secs_f64() * 1e3);
                    Some(p)
                }
                Err(e) => {
                    let (kind, class) = match e.kind() {
                        RenderErrorKind::Cancelled => {
                            (ErrorKind::Cancelled, AttemptClass::Cancelled)
                        }
                        // Load, not the template: worth another try.
                        RenderErrorKind::Timeout | RenderErrorKind::PoolClosed => {
                            (ErrorKind::Render, AttemptClass::Retryable)
                        }
                        _ => (ErrorKind::Render, AttemptClass::Permanent),
                    };
                    return fail(a, kind, class, e.to_string());
                }
            },
            _ => None,
        };
        let req = match route.request.build(payload) {
            Ok(r) => r,
            Err(e) => return fail(a, ErrorKind::Encode, AttemptClass::Permanent, e.to_string()),
        };
        let http = &setup.config.settings.http;
        let sent = Instant::now();
        let result = http::send(
            &setup.client,
            req,
            http.timeout,
            http.max_response_body_bytes,
        )
        .await;
        a.latency_ms = sent.elapsed().as_secs_f64() * 1e3;
        match result {
            Ok(answer) => {
                let status = answer.status.as_u16();
                a.status = Some(status);
                a.class = setup.policy.classify_status(status);
                if !answer.body.is_empty() {
                    a.response_body = Some(String::from_utf8_lossy(&answer.body).into_owned());
                }
                a.retry_after_s = answer
                    .retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, SystemTime::now()))
                    .map(|d| d.as_secs_f64());
                if a.class != AttemptClass::Delivered {
                    let redirect = answer.status.is_redirection();
                    a.error_kind = Some(if redirect {
                        ErrorKind::Redirect
                    } else {
                        ErrorKind::Status
                    });
                    a.error = Some(if redirect {
                        format!(
                            "the endpoint answered {} (redirects are not followed)",
                            answer.status
                        )
                    } else {
                        format!("the endpoint answered {}", answer.status)
                    });
                }
                a
            }
            Err((failure, reason)) => {
                let kind = match failure {
                    SendFailure::Connect => ErrorKind::Connect,
                    SendFailure::Timeout => ErrorKind::Timeout,
                    SendFailure::Transport => ErrorKind::Transport,
                };
                a.error_kind = Some(kind);
                a.class = RetryPolicy::classify_error(kind);
                a.error = Some(reason);
                a
            }
        }
    }

    /// Delivers `message` with the retry policy, waiting between attempts, and reports every
    /// attempt. For durable retries that survive restarts, use `courier serve`.
    pub async fn deliver(&self, message: &Message) -> DeliveryReport {
        let mut attempts = Vec::new();
        let outcome = loop {
            let number = attempts.len() as u32 + 1;
            let a = self.attempt(message, number).await;
            let class = a.class;
            let retry_after = a.retry_after();
            attempts.push(a);
            match class {
                AttemptClass::Delivered => break Outcome::Delivered,
                AttemptClass::Cancelled => break Outcome::Cancelled,
                AttemptClass::Permanent => break Outcome::Failed,
                AttemptClass::Retryable if number >= self.policy().max_attempts => {
                    break Outcome::Abandoned
                }
                AttemptClass::Retryable => {
                    tokio::time::sleep(self.policy().delay(number, retry_after)).await;
                }
            }
        };
        DeliveryReport {
            message_id: message.id.clone(),
            channel: message.channel().to_owned(),
            outcome,
            attempts,
        }
    }
}
