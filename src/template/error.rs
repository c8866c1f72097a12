//! Render errors a template author can act on: which template, which line and column (when
//! jrsonnet knows them), which output field was being written, and a caret under syntax errors.

use std::fmt;
use std::time::Duration;

use jrsonnet_evaluator::error::ErrorKind;
use jrsonnet_evaluator::{Error as JError, Span};

use super::Template;
use crate::message::ctx::{TEMPLATE_DATA, TOP_LEVEL};

/// What kind of failure a [`RenderError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderErrorKind {
    /// The template does not parse.
    Syntax,
    /// Evaluation failed: a missing field, a failed assert, `error "..."`, a type error...
    Runtime,
    /// The template's top level is a function that cannot take the ctx.
    NotAFunction,
    /// With no ctx style set, the template reads ctx names of both styles.
    MixedStyles,
    /// The template evaluated `error "cancel"`: the sender asked not to send this message.
    Cancelled,
    /// The Jsonnet call stack grew past the configured depth.
    StackOverflow,
    /// Evaluation ran past the configured timeout.
    Timeout,
    /// The payload grew past the configured size cap.
    OutputTooLarge,
    /// The evaluator panicked (a bug in the engine, not in the template).
    Panic,
    /// The render pool is shut down.
    PoolClosed,
}

/// A failed render. `Display` gives one line (`template "x" line 3 column 12: field "subject":
/// ...`), followed, for syntax errors, by the offending source line and a caret.
#[derive(Debug, Clone)]
pub struct RenderError(Box<Detail>);

#[derive(Debug, Clone)]
struct Detail {
    kind: RenderErrorKind,
    template: String,
    /// 1-based line and column in `file`.
    location: Option<(usize, usize)>,
    /// The file the location is in, when it is not the template itself (an imported library).
    file: Option<String>,
    field: Option<String>,
    message: String,
    snippet: Option<String>,
}

impl RenderError {
    pub(crate) fn new(
        kind: RenderErrorKind,
        template: &Template,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(Detail {
            kind,
            template: template.name().to_owned(),
            location: None,
            file: None,
            field: None,
            message: message.into(),
            snippet: None,
        }))
    }

    pub(crate) fn timeout(template: &Template, limit: Duration) -> Self {
        Self::new(
            RenderErrorKind::Timeout,
            template,
            format!("evaluation took longer than {limit:?}; the evaluator was written off"),
        )
    }

    /// Converts a jrsonnet error raised while rendering `template`, with the output field being
    /// written at the time (`None` if it was raised before output began).
    ///
    /// `ctx` (when known) lets a missing-field error say that the name exists in the other key
    /// style, the commonest mistake when moving templates between reference versions.
    pub(crate) fn from_jsonnet(
        template: &Template,
        err: &JError,
        field: Option<String>,
        ctx: Option<&serde_json::Value>,
    ) -> Self {
        let kind = match err.error() {
            ErrorKind::ImportSyntaxError { .. } => RenderErrorKind::Syntax,
            ErrorKind::StackOverflow => RenderErrorKind::StackOverflow,
            ErrorKind::RuntimeError(msg) if msg.as_str() == "cancel" => RenderErrorKind::Cancelled,
            _ => RenderErrorKind::Runtime,
        };
        let mut out = Self::new(kind, template, message_of(err, ctx));
        out.0.field = field;
        if let ErrorKind::ImportSyntaxError { path, error } = err.error() {
            let span = Span(path.clone(), error.location.1, error.location.2);
            out.locate(template, &span, true);
        } else if let Some(span) = err.trace().0.iter().find_map(|el| el.location.as_ref()) {
            // The first frame with a location is the innermost: where the error was raised.
            out.locate(template, span, false);
        }
        out
    }

    fn locate(&mut self, template: &Template, span: &Span, with_snippet: bool) {
        let code = span.0.code();
        let offset = (span.1 as usize).min(code.len());
        let [loc] = span.0.map_source_locations(&[offset as u32]);
        self.0.location = Some((loc.line, loc.column));
        let path = span.0.source_path();
        let file = path
            .path()
            .map_or_else(|| path.to_string(), |p| p.display().to_string());
        if file != format!("virtual:{}", template.name()) {
            self.0.file = Some(file);
        }
        if with_snippet {
            let line = code
                .get(loc.line_start_offset..loc.line_end_offset)
                .unwrap_or("")
                .trim_end_matches(['\r', '\n']);
            let caret = " ".repeat(loc.column.saturating_sub(1));
            self.0.snippet = Some(format!("{:>5} | {line}\n      | {caret}^", loc.line));
        }
    }

    pub(crate) fn with_field(mut self, field: Option<String>) -> Self {
        self.0.field = field;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> RenderErrorKind {
        self.0.kind
    }

    /// True when the template asked to cancel the send (`error "cancel"`).
    pub fn is_cancelled(&self) -> bool {
        self.0.kind == RenderErrorKind::Cancelled
    }

    /// The name of the template that failed.
    pub fn template(&self) -> &str {
        &self.0.template
    }

    /// 1-based line and column of the error, when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        self.0.location
    }

    /// The output field being written when the error was raised, e.g. `subject` or
    /// `personalizations[0].to`.
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// The bare error message, without template, location or field.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The first line of the error: everything but the source snippet.
    pub fn summary(&self) -> String {
        let mut s = format!("template {:?}", self.0.template);
        if let Some(file) = &self.0.file {
            s.push_str(&format!(" (in {file})"));
        }
        let detail = self.detail();
        s.push_str(if self.0.location.is_some() { " " } else { ": " });
        s.push_str(&detail);
        s
    }

    /// The first line without the template name: `line 3 column 12: field "subject": ...`.
    pub fn detail(&self) -> String {
        let mut s = String::new();
        if let Some((line, col)) = self.0.location {
            s.push_str(&format!("line {line} column {col}: "));
        }
        if let Some(field) = &self.0.field {
            s.push_str(&format!("field {field:?}: "));
        }
        s.push_str(&self.0.message);
        s
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        if let Some(snippet) = &self.0.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RenderError {}

/// The error's own message on one line.
fn message_of(err: &JError, ctx: Option<&serde_json::Value>) -> String {
    if let ErrorKind::NoSuchField(name, _) = err.error() {
        if let Some(hint) = ctx.and_then(|c| style_hint(name.as_str(), c)) {
            return format!("no such field: {name} ({hint})");
        }
    }
    let msg = match err.error() {
        ErrorKind::ImportSyntaxError { error, .. } => format!("syntax error: {}", error.message),
        ErrorKind::RuntimeError(m) => format!("error: {m}"),
        other => other.to_string(),
    };
    // jrsonnet appends multi-line detail (suggestions, signatures); keep it on one line.
    msg.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A hint when `name` is a ctx key of one style and the ctx is in the other.
fn style_hint(name: &str, ctx: &serde_json::Value) -> Option<String> {
    let ctx_is_pascal = ctx.get("Recipient").is_some() || ctx.get("TemplateData").is_some();
    let ctx_is_snake = ctx.get("recipient").is_some() || ctx.get("template_data").is_some();
    TOP_LEVEL.iter().chain(TEMPLATE_DATA.iter()).find_map(|(snake, pascal)| {
        if name == *snake && snake != pascal && ctx_is_pascal {
            Some(format!(
                "{name} is the snake-style name, but the ctx is in pascal style, where it is {pascal}: select the snake style or rename it"
            ))
        } else if name == *pascal && snake != pascal && ctx_is_snake {
            Some(format!(
                "{name} is the pascal-style name, but the ctx is in snake style, where it is {snake}: select the pascal style or rename it"
            ))
        } else {
            None
        }
    })
}
