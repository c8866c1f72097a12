//! `courier check`: one template against the sample of every template type, as a table.

use clap::Args;

use super::render::FormatArg;
use super::{load_template, render_path, style_for, CmdResult, Failure, LimitArgs, StyleArg};
use jsonnet_courier::encode;
use jsonnet_courier::message::{ctx, samples, MessageType};
use jsonnet_courier::template::{source::Loader, Engine, Pool, TopLevel};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The template: a path, or a file://, base64://, http:// or https:// URI.
    #[arg(required_unless_present = "messages")]
    template: Option<String>,
    /// Check the message templates (Go templates: subject, bodies, SMS, and each language they
    /// define) of every type instead, built-in or configured by --config.
    #[arg(long, conflicts_with = "template")]
    messages: bool,
    /// With --messages: the configuration whose courier.templates and template_override_path
    /// to check.
    #[arg(long, short, value_name = "FILE", requires = "messages")]
    config: Option<std::path::PathBuf>,
    /// Key style of the ctx built from each sample (default: the style of the ctx names the
    /// template reads; snake if it reads none).
    #[arg(long, value_enum)]
    style: Option<StyleArg>,
    /// Also check that each payload form-encodes (for form-encoded channels).
    #[arg(long, value_enum, default_value_t)]
    format: FormatArg,
    /// Check only the email samples, or only the SMS ones.
    #[arg(long, value_parser = ["email", "sms"])]
    only: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

enum Row {
    Ok(usize),
    Cancelled,
    Failed(String),
}

pub(crate) async fn run(args: CheckArgs) -> CmdResult {
    let Some(template) = &args.template else {
        return super::compose::check_messages(args.config.as_deref()).await;
    };
    let loader = Loader::new(None);
    let template = load_template(&loader, template).await?;
    let pool = Pool::with_default_threads(args.limits.limits())
        .map_err(|e| Failure::usage(anyhow::anyhow!("--import-dir: {e}")))?;
    let top = Engine::new(args.limits.limits())
        .ok()
        .and_then(|mut e| e.compile(&template).ok());
    let choice = style_for(&template, args.style)?;
    let style = choice.style;
    let mut rows = Vec::new();
    for (t, kind, message) in samples::all() {
        if args.only.as_deref().is_some_and(|o| o != kind.as_str()) {
            continue;
        }
        let result = pool.render(&template, ctx::build(&message, style)).await;
        let row = match result {
            Ok(json) if args.format == FormatArg::Form => match encode::form(&json) {
                Ok(body) => Row::Ok(body.len()),
                Err(e) => Row::Failed(e.to_string()),
            },
            Ok(json) => Row::Ok(json.len()),
            Err(e) if e.is_cancelled() => Row::Cancelled,
            Err(e) => Row::Failed(e.summary()),
        };
        rows.push((t, kind, row));
    }
    println!(
        "{:<28} {:<6} {:<10} {:>7}  DETAIL",
        "TYPE", "KIND", "RESULT", "BYTES"
    );
    let (mut ok, mut failed, mut cancelled) = (0, 0, 0);
    for (t, kind, row) in &rows {
        let kind = match kind {
            MessageType::Email => "email",
            MessageType::Sms => "sms",
        };
        let (result, bytes, detail) = match row {
            Row::Ok(n) => {
                ok += 1;
                ("ok", n.to_string(), String::new())
            }
            Row::Cancelled => {
                cancelled += 1;
                ("cancelled", "-".into(), "error \"cancel\": not sent".into())
            }
            Row::Failed(e) => {
                failed += 1;
                ("error", "-".into(), e.clone())
            }
        };
        println!(
            "{:<28} {:<6} {:<10} {:>7}  {detail}",
            t.as_str(),
            kind,
            result,
            bytes
        );
    }
    println!(
        "\ntemplate {:?}: {ok} ok, {cancelled} cancelled, {failed} failed\nctx style: {choice}",
        template.name(),
    );
    match top {
        Some(TopLevel::IgnoresCtx) => println!(
            "note: the top level is not a function, so the template ignores ctx: every message gets the same payload"
        ),
        Some(TopLevel::CancelsAll) => {
            println!("note: the top level is error \"cancel\": every message is cancelled")
        }
        _ => {}
    }
    println!("render path: {}", render_path(&template));
    if failed > 0 {
        Err(Failure::quiet())
    } else {
        Ok(())
    }
}
