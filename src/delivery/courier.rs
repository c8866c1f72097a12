//! [`Courier`]: built from a [`Config`], it renders and sends messages, one attempt at a time or a
//! whole delivery with the retry policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::config::{Config, ConfigError};
use crate::http::{self, HttpClient, SendFailure};
use crate::message::{ctx, CtxStyle, Message};

use crate::request::RequestTemplate;
use crate::retry::{parse_retry_after, RetryPolicy};
use crate::smtp::{Mailer, TransportOptions};
use crate::template::{source::Loader, Ctx, Engine, Pool, RenderErrorKind, Template};

use super::{Attempt, AttemptClass, DeliveryReport, ErrorKind, Outcome};

/// A configured channel, ready to send.
struct Route {
    request: RequestTemplate,
    template: Option<Template>,
}

/// Renders and delivers messages over the configured HTTP channels, and email over SMTP when so
/// configured. Cheap to share (`Arc` it);
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
    mailers: HashMap<String, Mailer>,
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
        let loader = Loader::new(config.base_dir.clone());
        let mut checker = Engine::new(pool.limits().clone())
            .map_err(|e| ConfigError::one("jsonnet_courier.template.import_dir", e.to_string()))?;
        let mut routes = HashMap::new();
        let mut issues = Vec::new();
        for ch in &config.channels {
            let request = match RequestTemplate::new(ch, &config.settings.http.user_agent) {
                Ok(r) => r,
                Err(e) => {
                    issues.push((ch.path.clone(), e));
                    continue;
                }
            };
            let template = match &ch.body {
                None => None,
                Some(uri) if uri == crate::config::DEFAULT_BODY => {
                    Some(crate::template::default_template(style))
                }
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
            routes.insert(ch.id.clone(), Route { request, template });
        }
        let mut mailers = HashMap::new();
        for ch in &config.smtp_channels {
            let options = TransportOptions {
                connect_timeout: config.settings.http.connect_timeout,
                ..TransportOptions::default()
            };
            match Mailer::new(ch, options) {
                Ok(m) => {
                    mailers.insert(ch.id.clone(), m);
                }
                Err(e) => issues.push((ch.path.clone(), e.to_string())),
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError {
                source: None,
                issues,
            });
        }
        Ok(Self {
            routes,
            mailers,
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

    /// Makes attempt number `number` of `message`: render, send, classify. Never fails: every
    /// problem is recorded in the returned attempt.
    pub async fn attempt(&self, message: &Message, number: u32) -> Attempt {
        if let Some(mailer) = self.mailers.get(message.channel()) {
            let prepared = mailer.prepare(message);
            return super::smtp::attempt(mailer, prepared.as_ref(), number).await;
        }
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
        let Some(route) = self.routes.get(channel) else {
            let mut known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            known.sort_unstable();
            return fail(
                a,
                ErrorKind::Channel,
                AttemptClass::Permanent,
                format!(
                    "no http channel {channel:?} is configured (configured: {})",
                    known.join(", ")
                ),
            );
        };
        let payload = match (&route.template, route.request.carries_body()) {
            (Some(t), true) => match self.pool.render(t, make_ctx()).await {
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
        let http = &self.config.settings.http;
        let sent = Instant::now();
        let result = http::send(
            &self.client,
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
        // A mail is composed once, so every attempt carries the same Message-ID and Date.
        let mail = self
            .mailers
            .get(message.channel())
            .map(|m| (m, m.prepare(message)));
        let outcome = loop {
            let number = attempts.len() as u32 + 1;
            let a = match &mail {
                Some((m, prepared)) => super::smtp::attempt(m, prepared.as_ref(), number).await,
                None => self.attempt(message, number).await,
            };
            let class = a.class;
            let retry_after = a.retry_after();
            attempts.push(a);
            match class {
                AttemptClass::Delivered => break Outcome::Delivered,
                AttemptClass::Cancelled => break Outcome::Cancelled,
                AttemptClass::Permanent => break Outcome::Failed,
                AttemptClass::Retryable if number >= self.policy.max_attempts => {
                    break Outcome::Abandoned
                }
                AttemptClass::Retryable => {
                    tokio::time::sleep(self.policy.delay(number, retry_after)).await;
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
