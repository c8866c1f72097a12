//! [`Courier`]: built from a [`Config`], it renders and sends messages, one attempt at a time or a
//! whole delivery with the retry policy. An attempt runs in phases: route (find the channel),
//! render (the template over the ctx), send (the channel's transport), record (the answer into the
//! [`Attempt`], classed by the policy).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::config::{Config, ConfigError};
use crate::http::{self, HttpClient};
use crate::message::{ctx, CtxStyle, Message};
use crate::template::{Ctx, Engine, Pool, RenderError, Template};

use super::http::{Answer, SendError};
use super::policy::{parse_retry_after, Decision, RetryPolicy};
use super::route::{self, Route};
use super::{Attempt, AttemptClass, DeliveryReport, ErrorKind};

/// Renders and delivers messages over the configured channels. Cheap to share (`Arc` it);
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
    routes: HashMap<String, Route>,
    pool: Pool,
    client: HttpClient,
    policy: RetryPolicy,
    style: CtxStyle,
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
        let style = config.settings.ctx_style;
        let mut checker = Engine::new(pool.limits().clone())
            .map_err(|e| ConfigError::one("jsonnet_courier.template.import_dir", e.to_string()))?;
        let routes = route::build(&config, &mut checker, style).await?;
        Ok(Self {
            routes,
            pool,
            client: http::client(config.settings.http.connect_timeout),
            policy: RetryPolicy::new(config.message_retries, config.settings.retry.clone()),
            style,
            config: Arc::new(config),
        })
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The configuration this courier was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The render pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The ctx key style templates are given.
    pub fn style(&self) -> CtxStyle {
        self.style
    }

    /// `channel`'s body template, when the channel is configured and has one (for previews).
    pub fn channel_template(&self, channel: &str) -> Option<&Template> {
        self.routes.get(channel).and_then(|r| r.template.as_ref())
    }

    /// Makes attempt number `number` of `message`: render, send, classify. Never fails: every
    /// problem is recorded in the returned attempt.
    pub async fn attempt(&self, message: &Message, number: u32) -> Attempt {
        let make_ctx = || Ctx::Json(ctx::to_json(message, self.style));
        self.attempt_inner(message.channel(), make_ctx, number)
            .await
    }

    /// Like [`Courier::attempt`], with a ctx of any shape handed to `channel`'s template as is.
    pub async fn attempt_with_ctx(&self, channel: &str, ctx: Ctx, number: u32) -> Attempt {
        self.attempt_inner(channel, || ctx, number).await
    }

    /// The ctx is built only when a template is rendered (not for TRACE or body-less channels).
    async fn attempt_inner(
        &self,
        channel: &str,
        make_ctx: impl FnOnce() -> Ctx,
        number: u32,
    ) -> Attempt {
        let mut a = Attempt::start(number);
        let clock = Instant::now();
        let route = match self.route(channel) {
            Ok(route) => route,
            Err(reason) => {
                a.fail(ErrorKind::Channel, AttemptClass::Permanent, reason);
                a.latency_ms = ms_since(clock);
                return a;
            }
        };
        let payload = match self.render(route, make_ctx).await {
            Ok(payload) => payload,
            Err(e) => {
                let (kind, class) = RetryPolicy::classify_render(e.kind());
                a.fail(kind, class, e.to_string());
                a.latency_ms = ms_since(clock);
                return a;
            }
        };
        if payload.is_some() {
            a.render_ms = Some(ms_since(clock));
        }
        let sent = Instant::now();
        let result = route
            .transport
            .send(&self.client, payload, &self.config)
            .await;
        a.latency_ms = ms_since(sent);
        match result {
            Ok(answer) => self.record_answer(&mut a, answer),
            Err(e) => self.record_error(&mut a, &e),
        }
        a
    }

    /// Route phase: the channel's route, or why there is none.
    fn route(&self, channel: &str) -> Result<&Route, String> {
        self.routes.get(channel).ok_or_else(|| {
            let mut known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            known.sort_unstable();
            format!(
                "no http channel {channel:?} is configured (configured: {})",
                known.join(", ")
            )
        })
    }

    /// Render phase: the payload, `None` when the channel sends none.
    async fn render(
        &self,
        route: &Route,
        make_ctx: impl FnOnce() -> Ctx,
    ) -> Result<Option<String>, RenderError> {
        match &route.template {
            Some(t) if route.transport.carries_payload() => {
                self.pool.render(t, make_ctx()).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Record phase for an answer: its status, classed by the policy, and what came with it.
    fn record_answer(&self, a: &mut Attempt, answer: Answer) {
        let status = answer.status.as_u16();
        a.status = Some(status);
        a.class = self.policy.classify_status(status);
        if !answer.body.is_empty() {
            a.response_body = Some(String::from_utf8_lossy(&answer.body).into_owned());
        }
        a.retry_after_s = answer
            .retry_after
            .as_deref()
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .map(|d| d.as_secs_f64());
        if a.class != AttemptClass::Delivered {
            if answer.status.is_redirection() {
                a.error_kind = Some(ErrorKind::Redirect);
                a.error = Some(format!(
                    "the endpoint answered {} (redirects are not followed)",
                    answer.status
                ));
            } else {
                a.error_kind = Some(ErrorKind::Status);
                a.error = Some(format!("the endpoint answered {}", answer.status));
            }
        }
    }

    /// Record phase for a send that produced no answer.
    fn record_error(&self, a: &mut Attempt, e: &SendError) {
        let kind = e.kind();
        a.fail(kind, RetryPolicy::classify_error(kind), e.to_string());
    }

    /// Delivers `message` with the retry policy, waiting between attempts, and reports every
    /// attempt. For durable retries that survive restarts, use `courier serve`.
    pub async fn deliver(&self, message: &Message) -> DeliveryReport {
        let mut attempts = Vec::new();
        let outcome = loop {
            let number = attempts.len() as u32 + 1;
            let a = self.attempt(message, number).await;
            let decision = self.policy.decide(&a);
            attempts.push(a);
            if let Some(outcome) = decision.outcome() {
                break outcome;
            }
            if let Decision::Retry { after, .. } = decision {
                tokio::time::sleep(after).await;
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

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}
