//! Render errors a template author can act on: which template, which line and column (when
//! jrsonnet knows them), which output field was being written, and a caret under syntax errors.

use std::fmt;
use std::time::Duration;

use jrsonnet_evaluator::error::ErrorKind;
use jrsonnet_evaluator::{Error as JError, Span};

use super::Template;
use crate::message::ctx::{TEMPLATE_DATA, TOP_LEVEL};

/// What kind of failure a [`RenderError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Refused without evaluating: earlier renders of this template timed out and their
    /// evaluator threads, still running, fill the pool's cap of written-off threads. Renders are
    /// admitted again as those threads finish.
    Refused,
    /// With process isolation, the evaluator process died during the render: past its memory
    /// limit, killed, or crashed.
    Crashed,
}

/// A failed render. `Display` starts with `name:line:col: message` (as go-jsonnet and rustc print
/// errors, so terminals and editors can jump there), then the source line with a caret under the
/// column, then the output field being written; [`RenderError::summary`] is the same on one
/// line.
#[derive(Debug, Clone)]
pub struct RenderError(Box<Detail>);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

    /// An error at `line`:`col` (1-based) of `template`, with the source line and a caret.
    pub fn at(
        kind: RenderErrorKind,
        template: &Template,
        (line, col): (usize, usize),
        message: impl Into<String>,
    ) -> Self {
        let mut out = Self::new(kind, template, message);
        out.0.location = Some((line, col));
        let text = template
            .source()
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("");
        out.0.snippet = Some(snippet(line, col, text));
        out
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
            out.locate(template, &span);
        } else if let Some(span) = err.trace().0.iter().find_map(|el| el.location.as_ref()) {
            // The first frame with a location is the innermost: where the error was raised.
            out.locate(template, span);
        } else if let ErrorKind::NoSuchField(name, _) = err.error() {
            // jrsonnet gives no position for a missing field: point at its first read instead.
            if let Some(at) = first_read(template.source(), name.as_str()) {
                let mut located = Self::at(kind, template, at, String::new());
                located.0.message = std::mem::take(&mut out.0.message);
                located.0.field = out.0.field.take();
                return located;
            }
        }
        out
    }

    fn locate(&mut self, template: &Template, span: &Span) {
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
        let line = code
            .get(loc.line_start_offset..loc.line_end_offset)
            .unwrap_or("");
        self.0.snippet = Some(snippet(loc.line, loc.column, line));
    }

    /// The error as JSON text, to cross a process boundary (see [`RenderError::from_wire`]).
    pub(crate) fn to_wire(&self) -> String {
        serde_json::to_string(&*self.0).unwrap_or_default()
    }

    /// The error [`RenderError::to_wire`] wrote; `None` if `text` is not one.
    pub(crate) fn from_wire(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok().map(|d| Self(Box::new(d)))
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

    /// The error on one line: `name:line:col: message (output field "x")`, where `name` is the
    /// file holding the location (the template, or a library it imports).
    pub fn summary(&self) -> String {
        let mut s = match &self.0.file {
            Some(file) => file.clone(),
            None => self.0.template.clone(),
        };
        s.push_str(&self.detail());
        if self.0.file.is_some() {
            s.push_str(&format!(" (imported by template {:?})", self.0.template));
        }
        s
    }

    /// The first line without the file name: `:3:12: message (output field "subject")`, or
    /// `: message` when the location is unknown.
    pub fn detail(&self) -> String {
        let mut s = match self.0.location {
            Some((line, col)) => format!(":{line}:{col}: "),
            None => ": ".to_owned(),
        };
        s.push_str(&self.0.message);
        if let Some(field) = &self.0.field {
            s.push_str(&format!(" (output field {field:?})"));
        }
        s
    }
}

/// Line and column (1-based) of the first `.name` or `['name']` / `["name"]` in `source`.
fn first_read(source: &str, name: &str) -> Option<(usize, usize)> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let patterns = [
        format!(".{name}"),
        format!("['{name}']"),
        format!("[\"{name}\"]"),
    ];
    let offset = patterns
        .iter()
        .filter_map(|p| {
            source.match_indices(p.as_str()).find_map(|(i, _)| {
                let after = source[i + p.len()..].chars().next();
                (p.starts_with('[') || !after.is_some_and(ident)).then_some(i + 1)
            })
        })
        .min()?;
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col))
}

/// `line` of the source, numbered, with a caret under column `col` (both 1-based).
fn snippet(line: usize, col: usize, text: &str) -> String {
    let text = text.trim_end_matches(['\r', '\n']);
    // Tabs keep their width in the caret line, so the caret stays under its column.
    let pad: String = text
        .chars()
        .take(col.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{line:>5} | {text}\n      | {pad}^")
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.0.file.as_deref().unwrap_or(&self.0.template);
        match self.0.location {
            Some((line, col)) => write!(f, "{name}:{line}:{col}: {}", self.0.message)?,
            None => write!(f, "{name}: {}", self.0.message)?,
        }
        if let Some(snippet) = &self.0.snippet {
            write!(f, "\n{snippet}")?;
        }
        if let Some(field) = &self.0.field {
            write!(f, "\n      = output field: {field}")?;
        }
        if self.0.file.is_some() {
            write!(f, "\n      = imported by template {:?}", self.0.template)?;
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
