//! [`Courier`]: built from a [`Config`], it renders and sends messages, one attempt at a time or a
//! whole delivery with the retry policy. An attempt runs in phases: route (find the channel),
//! render (a message without subject and bodies is composed from its message templates, then the
//! channel's template renders over the ctx), send (the channel's transport), record (the answer
//! into the [`Attempt`], classed by the policy).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::compose::{self, ComposeError, Composer};
use crate::config::{Config, ConfigError};
use crate::message::{ctx, CtxStyle, Message};
use crate::smtp::{self as smtp, Mailer, PreparedMail};
use crate::template::{fast, source::Loader, Ctx, Pool, RenderError, StyleChoice, Template};

use super::http::{Answer, SendError};
use super::policy::{parse_retry_after, Decision, RetryPolicy};
use super::route::{self, Route};
use super::{Attempt, AttemptClass, DeliveryReport, ErrorKind, Outcome};

mod refresh;

pub use refresh::{RefreshOutcome, RemoteTemplate};

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
    pool: Pool,
    /// Everything a configuration decides; replaced whole by [`Courier::reload`], so an attempt
    /// sees one configuration from start to end.
    setup: RwLock<Arc<Setup>>,
}

/// Channels with their compiled templates, the message templates, the client, the retry policy.
struct Setup {
    routes: HashMap<String, Arc<Route>>,
    /// SMTP channels (email with `delivery_strategy: smtp`, `type: smtp` channels).
    mailers: HashMap<String, Arc<Mailer>>,
    /// The message templates (`courier.templates`, `template_override_path`, built-ins).
    composer: Composer,
    policy: RetryPolicy,
    config: Arc<Config>,
    /// The remote templates of this configuration and when each is due for a refresh; shared
    /// by the setups that only swap a refreshed template in.
    remotes: refresh::Remotes,
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

impl Courier {
    /// Loads and compiles every channel's template and prepares its requests.
    ///
    /// # Errors
    /// A template that cannot be loaded or does not compile, named by its key path.
    pub async fn new(config: Config) -> Result<Self, ConfigError> {
        let pool = Pool::with_options(config.limits(), config.pool_options())
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

    async fn setup(config: Config, pool: &Pool) -> Result<Setup, ConfigError> {
        let loader = Loader::new(config.base_dir.clone());
        let routes = route::build(&config, pool.limits(), &loader).await?;
        let mailers = route::mailers(&config)?;
        let composer = Composer::load(&config.templates, &loader)
            .await
            .map_err(|e| ConfigError::one(e.origin, e.message))?;
        Ok(Setup {
            routes,
            composer,
            mailers,
            policy: RetryPolicy::new(config.message_retries, config.settings.retry.clone()),
            config: Arc::new(config),
            remotes: refresh::Remotes::new(loader.remote_copies()),
        })
    }

    fn current(&self) -> Arc<Setup> {
        match self.setup.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The retry policy in force.
    pub fn policy(&self) -> RetryPolicy {
        self.current().policy.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.current().config)
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

    /// The compiled message templates in force.
    pub fn composer(&self) -> Composer {
        self.current().composer.clone()
    }

    /// The render pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// `channel`'s body template and the ctx style it gets, when the channel is configured and
    /// has one (for previews).
    pub fn channel_template(&self, channel: &str) -> Option<(Template, CtxStyle)> {
        let setup = self.current();
        let route = setup.routes.get(channel)?;
        Some((route.template.clone()?, route.style.style))
    }

    /// Makes attempt number `number` of `message`: render, send, classify. Never fails: every
    /// problem is recorded in the returned attempt.
    pub async fn attempt(&self, message: &Message, number: u32) -> Attempt {
        let setup = self.current();
        if let Some(mailer) = setup.mailers.get(message.channel()) {
            let (mail, notes) = prepare_mail(&setup, mailer, message);
            return super::smtp::attempt(mailer, mail.as_ref(), notes, number).await;
        }
        let make_ctx = |composer: &Composer, _| prepare(composer, message);
        self.attempt_inner(
            &setup,
            message.channel(),
            message.id.as_deref(),
            make_ctx,
            number,
        )
        .await
    }

    /// Like [`Courier::attempt`], with a ctx of any shape handed to `channel`'s template as is.
    pub async fn attempt_with_ctx(&self, channel: &str, ctx: Ctx, number: u32) -> Attempt {
        let prepared = Prepared {
            ctx: CtxSource::Ctx(ctx),
            notes: Vec::new(),
        };
        self.attempt_inner(&self.current(), channel, None, |_, _| Ok(prepared), number)
            .await
    }

    /// The ctx is built only when a template is rendered (not for TRACE or body-less channels).
    /// The attempt runs with `setup` from start to end.
    async fn attempt_inner<'m>(
        &self,
        setup: &Setup,
        channel: &str,
        id: Option<&str>,
        make_ctx: impl FnOnce(&Composer, CtxStyle) -> Result<Prepared<'m>, ComposeError>,
        number: u32,
    ) -> Attempt {
        let mut a = Attempt::start(number);
        let clock = Instant::now();
        let route = match setup.route(channel) {
            Ok(route) => route,
            Err(reason) => {
                a.fail(ErrorKind::Channel, AttemptClass::Permanent, reason);
                a.latency_ms = ms_since(clock);
                return a;
            }
        };
        let payload = match self
            .render(route, &setup.composer, make_ctx, &mut a.notes)
            .await
        {
            Ok(payload) => payload,
            Err(RenderFailure::Template(e)) => {
                let (kind, class) = RetryPolicy::classify_render(e.kind());
                a.fail(kind, class, e.to_string());
                a.latency_ms = ms_since(clock);
                return a;
            }
            // A built-in message template failed: the same data fails again.
            Err(RenderFailure::Compose(e)) => {
                a.fail(ErrorKind::Render, AttemptClass::Permanent, e.to_string());
                a.latency_ms = ms_since(clock);
                return a;
            }
        };
        // One clock read ends the render and starts the send.
        let sent = Instant::now();
        if payload.is_some() {
            a.render_ms = Some(ms_between(clock, sent));
        }
        let result = route.transport.send(payload, id, &setup.config).await;
        a.latency_ms = ms_since(sent);
        match result {
            Ok(answer) => record_answer(&setup.policy, &mut a, answer),
            Err(e) => record_error(&mut a, &e),
        }
        a
    }

    /// Render phase: the payload, `None` when the channel sends none. Notes of message templates
    /// that fell back to the built-in ones go to `notes`.
    async fn render<'m>(
        &self,
        route: &Route,
        composer: &Composer,
        make_ctx: impl FnOnce(&Composer, CtxStyle) -> Result<Prepared<'m>, ComposeError>,
        notes: &mut Vec<String>,
    ) -> Result<Option<String>, RenderFailure> {
        match &route.template {
            Some(t) if route.transport.carries_payload() => {
                let prepared =
                    make_ctx(composer, route.style.style).map_err(RenderFailure::Compose)?;
                notes.extend(prepared.notes);
                let style = route.style.style;
                let rendered = match prepared.ctx {
                    CtxSource::Ctx(ctx) => Err(ctx),
                    CtxSource::Message(m) => self.fast_or_text(t, m, style),
                    CtxSource::Composed(m) => self.fast_or_text(t, &m, style),
                };
                let ctx = match rendered {
                    Ok(payload) => return Ok(Some(payload)),
                    Err(ctx) => ctx,
                };
                self.pool
                    .render(t, ctx)
                    .await
                    .map(Some)
                    .map_err(RenderFailure::Template)
            }
            _ => Ok(None),
        }
    }

    /// The payload of `template` over `message`'s ctx by the compiled fast path on this task,
    /// which reads the message's ctx view directly; else (the template is outside the subset,
    /// or this render needs the evaluator) the ctx as JSON text, for the pool.
    fn fast_or_text(
        &self,
        template: &Template,
        message: &Message,
        style: CtxStyle,
    ) -> Result<String, Ctx> {
        if let Ok(program) = template.fast_program() {
            let mut out = String::with_capacity(512);
            if fast::render_message(program, message, style, &mut out, self.pool.limits()).is_ok() {
                return Ok(out);
            }
        }
        Err(Ctx::Json(ctx::to_json(message, style)))
    }

    /// Delivers `message` with the retry policy, waiting between attempts, and reports every
    /// attempt. For durable retries that survive restarts, use `courier serve`.
    pub async fn deliver(&self, message: &Message) -> DeliveryReport {
        let setup = self.current();
        if let Some(mailer) = setup.mailers.get(message.channel()) {
            return self.deliver_mail(&setup, mailer, message).await;
        }
        // Signatures and idempotency keys carry the id: one for all attempts of a message.
        let id = match &message.id {
            Some(id) => id.clone(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        // The first attempt runs with the setup just read; each later one reads it again, so a
        // reload between attempts applies to the next one.
        let mut setup = Some(setup);
        let mut attempts = Vec::with_capacity(1);
        let outcome = loop {
            let number = attempts.len() as u32 + 1;
            let make_ctx = |composer: &Composer, _| prepare(composer, message);
            let now = setup.take().unwrap_or_else(|| self.current());
            let a = self
                .attempt_inner(&now, message.channel(), Some(&id), make_ctx, number)
                .await;
            match Self::decide_with(&now.policy, a, &mut attempts) {
                Ok(outcome) => break outcome,
                Err(after) => tokio::time::sleep(after).await,
            }
        };
        DeliveryReport {
            message_id: Some(id),
            channel: message.channel().to_owned(),
            outcome,
            attempts,
        }
    }

    /// [`Courier::deliver`] for a mail channel: the mail is composed once, so every attempt
    /// carries the same Message-ID and Date.
    async fn deliver_mail(
        &self,
        setup: &Setup,
        mailer: &Mailer,
        message: &Message,
    ) -> DeliveryReport {
        let with_id;
        let message = if message.id.is_none() {
            let mut m = message.clone();
            m.id = Some(uuid::Uuid::new_v4().to_string());
            with_id = m;
            &with_id
        } else {
            message
        };
        let (prepared, notes) = prepare_mail(setup, mailer, message);
        let mut attempts = Vec::with_capacity(1);
        let outcome = loop {
            let number = attempts.len() as u32 + 1;
            let a = super::smtp::attempt(mailer, prepared.as_ref(), notes.clone(), number).await;
            match self.decide(a, &mut attempts) {
                Ok(outcome) => break outcome,
                Err(after) => tokio::time::sleep(after).await,
            }
        };
        DeliveryReport {
            message_id: message.id.clone(),
            channel: message.channel().to_owned(),
            outcome,
            attempts,
        }
    }

    /// The policy's decision on attempt `a`, which joins `attempts`: the outcome, or the wait
    /// before the next attempt.
    fn decide(&self, a: Attempt, attempts: &mut Vec<Attempt>) -> Result<Outcome, Duration> {
        Self::decide_with(&self.current().policy, a, attempts)
    }

    /// [`Courier::decide`] by `policy`.
    fn decide_with(
        policy: &RetryPolicy,
        a: Attempt,
        attempts: &mut Vec<Attempt>,
    ) -> Result<Outcome, Duration> {
        let decision = policy.decide(&a);
        attempts.push(a);
        if let Some(outcome) = decision.outcome() {
            return Ok(outcome);
        }
        Err(match decision {
            Decision::Retry { after, .. } => after,
            _ => Duration::ZERO,
        })
    }
}

/// The ctx of `message`. A message with neither subject nor bodies is composed first
/// from the message templates of its type (when the reference has some for its channel); one that
/// carries its own is used as given.
fn prepare<'m>(composer: &Composer, message: &'m Message) -> Result<Prepared<'m>, ComposeError> {
    if !compose::needs_composing(message) {
        return Ok(Prepared {
            ctx: CtxSource::Message(message),
            notes: Vec::new(),
        });
    }
    let mut composed = message.clone();
    let notes = match composer.fill_missing(&mut composed) {
        Ok(notes) => notes,
        // Nothing to render for this type and channel: delivered as given.
        Err(ComposeError::NoTemplate { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(Prepared {
        ctx: CtxSource::Composed(Box::new(composed)),
        notes,
    })
}

/// The mail for `message` (composed once per delivery, so retries keep its Message-ID and Date),
/// with subject and bodies from the message templates when it carries none, and the notes of
/// composing it.
fn prepare_mail(
    setup: &Setup,
    mailer: &Mailer,
    message: &Message,
) -> (Result<PreparedMail, smtp::SendError>, Vec<String>) {
    if !compose::needs_composing(message) {
        return (mailer.prepare(message), Vec::new());
    }
    let mut composed = message.clone();
    match setup.composer.fill_missing(&mut composed) {
        Ok(notes) => (mailer.prepare(&composed), notes),
        Err(ComposeError::NoTemplate { .. }) => (mailer.prepare(message), Vec::new()),
        Err(e) => (
            Err(smtp::SendError::new(
                smtp::Step::Compose,
                smtp::FailureKind::Invalid,
                e.to_string(),
            )),
            Vec::new(),
        ),
    }
}

/// The render phase's input: the ctx, and the notes of composing the message.
struct Prepared<'m> {
    ctx: CtxSource<'m>,
    notes: Vec<String>,
}

/// Where the ctx comes from.
enum CtxSource<'m> {
    /// A ctx given as is.
    Ctx(Ctx),
    /// The ctx view of a message as given.
    Message(&'m Message),
    /// The ctx view of a message composed from its message templates.
    Composed(Box<Message>),
}

/// Why the render phase produced no payload.
enum RenderFailure {
    /// The message could not be composed from its message templates.
    Compose(ComposeError),
    /// The channel's template failed.
    Template(RenderError),
}

/// Record phase for an answer: its status, classed by the policy, and what came with it.
fn record_answer(policy: &RetryPolicy, a: &mut Attempt, answer: Answer) {
    let status = answer.status.as_u16();
    a.status = Some(status);
    a.class = policy.classify_status(status);
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
fn record_error(a: &mut Attempt, e: &SendError) {
    let kind = e.kind();
    a.fail(kind, RetryPolicy::classify_error(kind), e.to_string());
}

impl Setup {
    /// Route phase: the channel's route, or why there is none.
    fn route(&self, channel: &str) -> Result<&Route, String> {
        self.routes.get(channel).map(AsRef::as_ref).ok_or_else(|| {
            let mut known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            known.sort_unstable();
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
            }
        })
    }
}

fn ms_since(start: Instant) -> f64 {
    ms_between(start, Instant::now())
}

fn ms_between(start: Instant, end: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64() * 1e3
}
