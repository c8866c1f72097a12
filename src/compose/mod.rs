//! Message composition: a message's subject, plain-text body and HTML body (email) or text (SMS)
//! rendered from Go templates over its type's data, as the reference courier renders them.
//!
//! Templates come, in order, from `courier.templates...` URIs, the `courier.template_override_path`
//! folder, and the built-ins in `templates/` ([`builtin`]). A [`Composer`] holds them compiled,
//! is cheap to clone and shared across threads. A custom template that fails to render falls back
//! to the built-in one, with a warning and a note for the attempt record.

pub mod builtin;
pub mod config;
pub mod engine;
pub mod model;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use gotmpl::Value;

pub use builtin::Part;
pub use config::{TemplatesConfig, TemplatesConfigError};
pub use engine::{funcs, Funcs, GoTemplate, GoTemplateError};

use crate::message::{DataKey, Message, MessageType, TemplateType};
use crate::template::source::Loader;

/// Where a template in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in template.
    Builtin,
    /// A `courier.templates...` URI; holds the key.
    Config(String),
    /// The override folder; holds the main file's path.
    OverrideDir(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin => f.write_str("built-in"),
            Self::Config(key) => f.write_str(key),
            Self::OverrideDir(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A message, composed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Composed {
    /// The subject, trimmed (email; empty for SMS).
    pub subject: String,
    /// The plain-text body (email; empty for SMS).
    pub text: String,
    /// The HTML body (email).
    pub html: Option<String>,
    /// The SMS text.
    pub sms: Option<String>,
    /// One line per custom template that failed and was replaced by the built-in one.
    pub notes: Vec<String>,
}

/// A message that cannot be composed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// The reference never sends this type by this channel.
    #[error("the reference has no {kind} template for {template_type}")]
    NoTemplate {
        /// The message's type.
        template_type: TemplateType,
        /// `email` or `sms`.
        kind: &'static str,
    },
    /// A built-in template failed (a custom one falls back to it first).
    #[error("{field} of {template_type}: {source}")]
    Render {
        /// The message's type.
        template_type: TemplateType,
        /// The output field: `subject`, `html`, `text`, `sms`.
        field: &'static str,
        /// The engine's error, naming the template and position.
        #[source]
        source: GoTemplateError,
    },
}

/// A template set that could not be loaded: an unreadable source or a template that does not
/// parse, naming the config key or file.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct LoadError {
    /// The key or path.
    pub origin: String,
    /// What went wrong, with `name:line:col` for parse errors.
    pub message: String,
}

/// A custom template and where it came from.
#[derive(Debug, Clone)]
pub struct Custom {
    /// The config key or file.
    pub origin: Origin,
    /// The compiled template.
    pub template: GoTemplate,
}

type Table = HashMap<(TemplateType, Part), GoTemplate>;

/// The built-in templates, compiled on first use. They are part of the binary and covered by
/// tests, so a parse failure here is a build defect, reported by the tests and skipped here.
static BUILTINS: LazyLock<Table> = LazyLock::new(|| {
    let mut table = HashMap::new();
    for t in TemplateType::ALL {
        for part in [Part::Subject, Part::Html, Part::Text, Part::Sms] {
            if let Some(src) = builtin::source(t, part) {
                match GoTemplate::parse(
                    part.file_name(),
                    src,
                    part.is_html(),
                    Funcs::of(false, part.is_html()),
                ) {
                    Ok(tpl) => {
                        table.insert((t, part), tpl);
                    }
                    Err(e) => tracing::error!("built-in template {t} {}: {e}", part.as_str()),
                }
            }
        }
    }
    table
});

/// The compiled message templates of one configuration.
#[derive(Debug, Clone, Default)]
pub struct Composer {
    custom: Arc<HashMap<(TemplateType, Part), Custom>>,
}

impl Composer {
    /// Built-in templates only.
    pub fn builtin() -> Self {
        Self::default()
    }

    /// Loads and compiles every configured template once: `courier.templates` URIs (read through
    /// `loader`, so remote ones are fetched once), then the override folder.
    ///
    /// # Errors
    /// The first source that cannot be read or parsed, naming its key or path.
    pub async fn load(config: &TemplatesConfig, loader: &Loader) -> Result<Self, LoadError> {
        let mut custom = HashMap::new();
        for ((t, part), setting) in &config.uris {
            let tpl = loader.load(&setting.uri).await.map_err(|e| LoadError {
                origin: setting.key.clone(),
                message: e.to_string(),
            })?;
            custom.insert((*t, *part), configured(&setting.key, *part, tpl.source())?);
        }
        if let Some(dir) = &config.override_dir {
            for t in TemplateType::ALL {
                for part in [Part::Subject, Part::Html, Part::Text, Part::Sms] {
                    if custom.contains_key(&(t, part)) {
                        continue;
                    }
                    if let Some(c) = load_override(dir, t, part)? {
                        custom.insert((t, part), c);
                    }
                }
            }
        }
        Ok(Self {
            custom: Arc::new(custom),
        })
    }

    /// This composer with `source` as the text of every `courier.templates` entry of `config`
    /// whose URI is `uri` (a remote template refreshed); `Ok(None)` when no entry reads `uri`.
    ///
    /// # Errors
    /// The new text does not parse, naming the key.
    pub fn with_source(
        &self,
        config: &TemplatesConfig,
        uri: &str,
        source: &str,
    ) -> Result<Option<Self>, LoadError> {
        let mut custom: Option<HashMap<(TemplateType, Part), Custom>> = None;
        for ((t, part), setting) in config.uris.iter().filter(|(_, s)| s.uri == uri) {
            let compiled = configured(&setting.key, *part, source)?;
            custom
                .get_or_insert_with(|| (*self.custom).clone())
                .insert((*t, *part), compiled);
        }
        Ok(custom.map(|c| Self {
            custom: Arc::new(c),
        }))
    }

    /// The custom template for `t`'s `part`, if one is configured.
    pub fn custom(&self, t: TemplateType, part: Part) -> Option<&Custom> {
        self.custom.get(&(t, part))
    }

    /// The built-in template for `t`'s `part`, if the type has one.
    pub fn builtin_template(t: TemplateType, part: Part) -> Option<&'static GoTemplate> {
        BUILTINS.get(&(t, part))
    }

    /// Renders one part over `data`: the custom template, else (or when it fails) the built-in.
    /// Returns the text (subjects trimmed) and a note when a custom template fell back.
    ///
    /// # Errors
    /// The built-in template failed, or the type has none for this part.
    pub fn render_part(
        &self,
        t: TemplateType,
        part: Part,
        data: &Value,
    ) -> Result<(String, Option<String>), ComposeError> {
        let mut note = None;
        if let Some(c) = self.custom(t, part) {
            match c.template.render(data) {
                Ok(out) => return Ok((finish(part, out), None)),
                Err(e) => {
                    tracing::warn!(
                        template_type = %t,
                        field = part.as_str(),
                        "custom template {} failed, using the built-in one: {e}",
                        c.origin
                    );
                    note = Some(format!(
                        "{} template {} failed, used the built-in one: {e}",
                        part.as_str(),
                        c.origin
                    ));
                }
            }
        }
        let builtin = Self::builtin_template(t, part).ok_or(ComposeError::NoTemplate {
            template_type: t,
            kind: if part == Part::Sms { "sms" } else { "email" },
        })?;
        let out = builtin
            .render(data)
            .map_err(|source| ComposeError::Render {
                template_type: t,
                field: part.as_str(),
                source,
            })?;
        Ok((finish(part, out), note))
    }

    /// Composes `message` from its type and data.
    ///
    /// # Errors
    /// The reference has no template for the message's type and channel, or a built-in failed.
    pub fn compose(&self, message: &Message) -> Result<Composed, ComposeError> {
        let t = message.template_type;
        let kind = message.message_type;
        if t == TemplateType::Stub {
            return Ok(stub(message));
        }
        let data = model::data(message).ok_or(ComposeError::NoTemplate {
            template_type: t,
            kind: kind.as_str(),
        })?;
        let mut out = Composed::default();
        for part in Part::of(kind) {
            let (text, note) = self.render_part(t, *part, &data)?;
            out.notes.extend(note);
            match part {
                Part::Subject => out.subject = text,
                Part::Text => out.text = text,
                Part::Html => out.html = Some(text),
                Part::Sms => out.sms = Some(text),
            }
        }
        Ok(out)
    }

    /// Fills the subject, body and HTML body of a message that carries none (only a type and
    /// data), and returns the notes of templates that fell back. A message with its own subject,
    /// body or HTML body is left as it is.
    ///
    /// # Errors
    /// As [`Self::compose`]; the message is unchanged then.
    pub fn fill_missing(&self, message: &mut Message) -> Result<Vec<String>, ComposeError> {
        if !needs_composing(message) {
            return Ok(Vec::new());
        }
        let c = self.compose(message)?;
        match message.message_type {
            MessageType::Email => {
                message.subject = c.subject;
                message.body = c.text;
                message.html_body = c.html.filter(|h| !h.is_empty());
            }
            MessageType::Sms => message.body = c.sms.unwrap_or_default(),
        }
        Ok(c.notes)
    }
}

/// Whether a message carries no rendered content, so it must be composed before delivery.
pub fn needs_composing(message: &Message) -> bool {
    message.subject.is_empty() && message.body.is_empty() && message.html_body.is_none()
}

fn finish(part: Part, out: String) -> String {
    if part == Part::Subject {
        out.trim().to_owned()
    } else {
        out
    }
}

/// The reference's test stub is delivered from its data: no templates, the HTML body falls back
/// to the plain-text one.
fn stub(message: &Message) -> Composed {
    let d = &message.template_data;
    let body = d.text(DataKey::Body).unwrap_or_default().to_owned();
    match message.message_type {
        MessageType::Email => Composed {
            subject: d.text(DataKey::Subject).unwrap_or_default().to_owned(),
            html: Some(
                d.text(DataKey::HtmlBody)
                    .filter(|h| !h.is_empty())
                    .map_or_else(|| body.clone(), str::to_owned),
            ),
            text: body,
            sms: None,
            notes: Vec::new(),
        },
        MessageType::Sms => Composed {
            sms: Some(body),
            ..Composed::default()
        },
    }
}

/// A `courier.templates` entry's text, parsed for `part`; errors name the entry's key.
fn configured(key: &str, part: Part, source: &str) -> Result<Custom, LoadError> {
    let template = GoTemplate::parse(key, source, part.is_html(), Funcs::of(true, part.is_html()))
        .map_err(|e| LoadError {
            origin: key.to_owned(),
            message: e.to_string(),
        })?;
    Ok(Custom {
        origin: Origin::Config(key.to_owned()),
        template,
    })
}

/// Loads `t`'s `part` from the override folder, as the reference does: when
/// `<folder>/<file>` exists, it and every file beside it whose name starts with the part's prefix
/// (`email.body*` for the HTML body) are parsed together, in name order.
fn load_override(dir: &Path, t: TemplateType, part: Part) -> Result<Option<Custom>, LoadError> {
    let Some(folder) = builtin::folder(t) else {
        return Ok(None);
    };
    let folder = dir.join(folder);
    let main = folder.join(part.file_name());
    if !main.is_file() {
        return Ok(None);
    }
    let fail = |message: String| LoadError {
        origin: main.display().to_string(),
        message,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|e| fail(e.to_string()))?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(part.glob_prefix()))
                && e.path().is_file()
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let template = GoTemplate::parse_files(
        part.file_name(),
        &refs,
        part.is_html(),
        Funcs::of(true, part.is_html()),
    )
    .map_err(|e| fail(e.to_string()))?;
    Ok(Some(Custom {
        origin: Origin::OverrideDir(main.clone()),
        template,
    }))
}

#[cfg(test)]
mod tests;
