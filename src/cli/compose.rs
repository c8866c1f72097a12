//! Message templates (Go templates) for template authors: `courier render X.gotmpl`, `courier
//! preview` (a whole message with the configured templates) and `courier check --messages`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::render::{parse_type, sample};
use super::{read_input, CmdResult, Failure};
use jsonnet_courier::compose::{self, model, Composer, Funcs, GoTemplate, Part};
use jsonnet_courier::message::{samples, Message, MessageType, TemplateType};
use jsonnet_courier::template::source::Loader;

/// The inputs of `courier render` when TEMPLATE is a Go template.
pub(crate) struct GoRender<'a> {
    pub(crate) template: &'a str,
    pub(crate) data: Option<&'a Path>,
    pub(crate) message: Option<&'a Path>,
    pub(crate) template_type: Option<TemplateType>,
    pub(crate) sms: bool,
    /// `Some(true)` for --html, `Some(false)` for --text, `None` to go by the file name.
    pub(crate) html: Option<bool>,
}

/// The reference's rule: `email.body.gotmpl` (and the `email.body.*` files parsed with it,
/// except the plain-text ones) is html/template; every other template is text/template.
fn is_html_name(name: &str) -> bool {
    name.starts_with("email.body") && !name.starts_with("email.body.plaintext")
}

fn file_name(template: &str) -> &str {
    let path = template.strip_prefix("file://").unwrap_or(template);
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// Renders one Go template over template data; exit 1 on a template error.
pub(crate) async fn render(args: GoRender<'_>) -> CmdResult {
    let name = file_name(args.template);
    let html = args.html.unwrap_or_else(|| is_html_name(name));
    let template = load_one(args.template, html).await?;
    let data = if let Some(path) = args.data {
        let json: serde_json::Value = serde_json::from_slice(&read_input(path)?).map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "--data {}: invalid JSON: {e}",
                path.display()
            ))
        })?;
        model::from_json(&json, false)
    } else {
        let message = if let Some(path) = args.message {
            Message::from_json(&read_input(path)?)
                .map_err(|e| Failure::usage(anyhow::anyhow!("--message {}: {e}", path.display())))?
        } else {
            sample(args.template_type.unwrap_or(TemplateType::Stub), args.sms)?
        };
        model::data(&message).ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "the reference has no {} model for {}",
                message.message_type.as_str(),
                message.template_type
            ))
        })?
    };
    let out = template.render(&data).map_err(Failure::failed)?;
    print!("{out}");
    Ok(())
}

/// Loads and parses one template: a path or URI. A file named like a part of the reference's
/// layout is parsed with its siblings, as the override folder is (`email.body*`).
async fn load_one(template: &str, html: bool) -> Result<GoTemplate, Failure> {
    let funcs = Funcs::of(true, html);
    let local = if template.contains("://") {
        template.strip_prefix("file://")
    } else {
        Some(template)
    };
    if let Some(path) = local.map(Path::new) {
        let name = file_name(template);
        let part = [Part::Subject, Part::Html, Part::Text, Part::Sms]
            .into_iter()
            .find(|p| p.file_name() == name);
        if let (Some(part), Some(dir)) = (part, path.parent()) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", dir.display())))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(part.glob_prefix()))
                })
                .collect();
            files.sort();
            if !files.iter().any(|f| f.file_name() == path.file_name()) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "reading {}: no such file",
                    path.display()
                )));
            }
            let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            return GoTemplate::parse_files(name, &refs, html, funcs).map_err(Failure::failed);
        }
    }
    let loaded = Loader::new(None)
        .load(&if template.contains("://") {
            template.to_owned()
        } else {
            format!("file://{template}")
        })
        .await
        .map_err(Failure::usage)?;
    GoTemplate::parse(file_name(template), loaded.source(), html, funcs).map_err(Failure::failed)
}

/// Reads the message-template settings of a config file (its `courier.templates` and
/// `courier.template_override_path`) and compiles them; built-ins only without a file.
async fn load_composer(config: Option<&Path>) -> Result<Composer, Failure> {
    let Some(path) = config else {
        return Ok(Composer::builtin());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(anyhow::anyhow!("reading {}: {e}", path.display())))?;
    let root: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
    }
    .map_err(|e| Failure::usage(anyhow::anyhow!("{}: invalid config: {e}", path.display())))?;
    let base_dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let cfg = compose::config::from_root(&root, base_dir)
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))?;
    Composer::load(&cfg, &Loader::new(base_dir.map(Path::to_path_buf)))
        .await
        .map_err(|e| Failure::failed(anyhow::anyhow!("{}: {e}", path.display())))
}

#[derive(Debug, Args)]
pub(crate) struct PreviewArgs {
    /// The template type, rendered over its embedded sample.
    #[arg(long = "type", value_name = "TEMPLATE_TYPE", value_parser = parse_type, required_unless_present = "message")]
    template_type: Option<TemplateType>,
    /// With --type: the SMS sample.
    #[arg(long, requires = "template_type")]
    sms: bool,
    /// Compose this message instead (a file, or - for standard input; either key style).
    #[arg(long, value_name = "FILE", conflicts_with = "template_type")]
    message: Option<PathBuf>,
    /// Use the message templates of this configuration (`courier.templates`,
    /// `courier.template_override_path`); built-ins only without it.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write the HTML body to this file (to open in a browser) instead of printing it.
    #[arg(long, value_name = "FILE")]
    html_out: Option<PathBuf>,
}

fn source_of(composer: &Composer, t: TemplateType, part: Part) -> String {
    if t == TemplateType::Stub {
        return "from the message data".into();
    }
    composer
        .custom(t, part)
        .map_or_else(|| "built-in".to_owned(), |c| c.origin.to_string())
}

/// Composes one message with the configured templates and shows every part.
pub(crate) async fn preview(args: PreviewArgs) -> CmdResult {
    let composer = load_composer(args.config.as_deref()).await?;
    let message = match &args.message {
        Some(path) => Message::from_json(&read_input(path)?)
            .map_err(|e| Failure::usage(anyhow::anyhow!("--message {}: {e}", path.display())))?,
        None => sample(args.template_type.unwrap_or(TemplateType::Stub), args.sms)?,
    };
    let t = message.template_type;
    let c = composer.compose(&message).map_err(Failure::failed)?;
    println!(
        "{} {} to {}",
        t,
        message.message_type.as_str(),
        message.recipient
    );
    match message.message_type {
        MessageType::Email => {
            println!(
                "\n== subject ({})\n{}",
                source_of(&composer, t, Part::Subject),
                c.subject
            );
            println!(
                "\n== text ({})\n{}",
                source_of(&composer, t, Part::Text),
                c.text.trim_end()
            );
            let html = c.html.unwrap_or_default();
            let source = source_of(&composer, t, Part::Html);
            match &args.html_out {
                Some(path) => {
                    std::fs::write(path, &html).map_err(|e| {
                        Failure::usage(anyhow::anyhow!("writing {}: {e}", path.display()))
                    })?;
                    println!(
                        "\n== html ({source})\nwritten to {} ({} bytes)",
                        path.display(),
                        html.len()
                    );
                }
                None => println!("\n== html ({source})\n{}", html.trim_end()),
            }
        }
        MessageType::Sms => println!(
            "\n== sms ({})\n{}",
            source_of(&composer, t, Part::Sms),
            c.sms.unwrap_or_default()
        ),
    }
    for note in &c.notes {
        eprintln!("courier: warning: {note}");
    }
    if c.notes.is_empty() {
        Ok(())
    } else {
        Err(Failure::quiet())
    }
}

/// `courier check --messages`: every part of every type's sample, and every language `define`d
/// in a template, rendered with the configured templates, as one table. Exit 1 on any error.
pub(crate) async fn check_messages(config: Option<&Path>) -> CmdResult {
    let composer = load_composer(config).await?;
    println!(
        "{:<28} {:<6} {:<8} {:<6} {:<6} {:>6}  SOURCE / DETAIL",
        "TYPE", "KIND", "PART", "LANG", "RESULT", "BYTES"
    );
    let (mut ok, mut failed) = (0, 0);
    let mut row = |t: TemplateType,
                   kind: MessageType,
                   part: Part,
                   lang: &str,
                   r: Result<String, String>,
                   source: &str| {
        let (result, bytes, detail) = match r {
            Ok(out) => {
                ok += 1;
                ("ok", out.len().to_string(), source.to_owned())
            }
            Err(e) => {
                failed += 1;
                ("error", "-".to_owned(), format!("{source}: {e}"))
            }
        };
        println!(
            "{:<28} {:<6} {:<8} {:<6} {:<6} {:>6}  {detail}",
            t.as_str(),
            kind.as_str(),
            part.as_str(),
            lang,
            result,
            bytes
        );
    };
    for (t, kind, message) in samples::all() {
        if t == TemplateType::Stub {
            continue;
        }
        let Some(data) = model::data(&message) else {
            continue;
        };
        for part in Part::of(kind) {
            let (template, source) = match composer.custom(t, *part) {
                Some(c) => (&c.template, c.origin.to_string()),
                None => match Composer::builtin_template(t, *part) {
                    Some(b) => (b, "built-in".to_owned()),
                    None => continue,
                },
            };
            row(
                t,
                kind,
                *part,
                "-",
                template.render(&data).map_err(|e| e.to_string()),
                &source,
            );
            for lang in template.defines() {
                let r = template
                    .render_define(&lang, &data)
                    .map_err(|e| e.to_string());
                row(t, kind, *part, &lang, r, &source);
            }
        }
    }
    println!("\nmessage templates: {ok} ok, {failed} failed");
    if failed > 0 {
        Err(Failure::quiet())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_rule_matches_the_reference() {
        assert!(is_html_name("email.body.gotmpl"));
        assert!(is_html_name("email.body.fr.gotmpl"));
        assert!(!is_html_name("email.body.plaintext.gotmpl"));
        assert!(!is_html_name("email.subject.gotmpl"));
        assert!(!is_html_name("sms.body.gotmpl"));
        assert_eq!(
            file_name("file:///a/b/email.body.gotmpl"),
            "email.body.gotmpl"
        );
    }
}
