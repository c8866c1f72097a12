//! `courier render`: one template over one ctx, payload on stdout.

use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};
use serde_json::Value;

use super::{
    load_template, read_input, render_path, style_for, CmdResult, Failure, LimitArgs, StyleArg,
};
use jsonnet_courier::encode;
use jsonnet_courier::message::{ctx, samples, Message, MessageType, TemplateType};
use jsonnet_courier::template::{source::Loader, Pool, Template};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["ctx", "message", "template_type", "data"])))]
pub(crate) struct RenderArgs {
    /// The template: a path, or a file://, base64://, http:// or https:// URI. A name ending in
    /// .gotmpl is a message template (Go template), rendered to text.
    template: String,
    /// Go templates: render over this template data (JSON with Go field names, e.g.
    /// {"To": "...", "RecoveryCode": "..."}; a file, or - for standard input).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Go templates: render as text/template (default for all but email.body*.gotmpl).
    #[arg(long, conflicts_with = "html")]
    text: bool,
    /// Go templates: render as html/template, with contextual escaping (default for
    /// email.body.gotmpl and its email.body.* siblings other than plaintext).
    #[arg(long)]
    html: bool,
    /// Pass this JSON (a file, or - for standard input) to the template as ctx, verbatim.
    #[arg(long, value_name = "FILE")]
    ctx: Option<PathBuf>,
    /// Build the ctx from this message (a file, or - for standard input; either key style).
    #[arg(long, value_name = "FILE")]
    message: Option<PathBuf>,
    /// Build the ctx from the embedded sample message of this template type.
    #[arg(long = "type", value_name = "TEMPLATE_TYPE", value_parser = parse_type)]
    template_type: Option<TemplateType>,
    /// With --type: use the SMS sample instead of the email one.
    #[arg(long, requires = "template_type")]
    sms: bool,
    /// Key style of the ctx built from a message or sample (default: the style of the ctx names
    /// the template reads; snake if it reads none).
    #[arg(long, value_enum)]
    style: Option<StyleArg>,
    /// Output encoding: the template's JSON, or an application/x-www-form-urlencoded body.
    #[arg(long, value_enum, default_value_t)]
    format: FormatArg,
    /// Pretty-print JSON output.
    #[arg(long)]
    pretty: bool,
    /// Say on standard error which way the template renders (the compiled fast path, or the
    /// evaluator and the construct that keeps it there).
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Output encoding flag.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub(crate) enum FormatArg {
    /// JSON, compact unless --pretty
    #[default]
    Json,
    /// key=value&... with keys sorted (needs a flat object of strings)
    Form,
}

pub(crate) fn parse_type(s: &str) -> Result<TemplateType, String> {
    s.parse()
        .map_err(|e: jsonnet_courier::message::UnknownTemplateType| e.to_string())
}

/// The sample message for a type and kind, or a usage error saying which exist.
pub(crate) fn sample(t: TemplateType, sms: bool) -> Result<Message, Failure> {
    let kind = if sms {
        MessageType::Sms
    } else {
        MessageType::Email
    };
    samples::message(t, kind).ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "there is no SMS sample for {t}: the reference sends it by email only; SMS types are {}",
            TemplateType::SMS.map(|t| t.as_str()).join(", ")
        ))
    })
}

fn ctx_of(args: &RenderArgs, template: &Template) -> Result<Value, Failure> {
    if let Some(path) = &args.ctx {
        let bytes = read_input(path)?;
        return serde_json::from_slice(&bytes).map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "--ctx {}: invalid JSON: {e}",
                path.display()
            ))
        });
    }
    let message = if let Some(path) = &args.message {
        let bytes = read_input(path)?;
        Message::from_json(&bytes)
            .map_err(|e| Failure::usage(anyhow::anyhow!("--message {}: {e}", path.display())))?
    } else {
        // clap's required group guarantees one of the three inputs.
        let t = args.template_type.unwrap_or(TemplateType::Stub);
        sample(t, args.sms)?
    };
    let choice = style_for(template, args.style)?;
    eprintln!("ctx style: {choice}");
    Ok(ctx::build(&message, choice.style))
}

pub(crate) async fn run(args: RenderArgs) -> CmdResult {
    if args.template.ends_with(".gotmpl") {
        if args.ctx.is_some() {
            return Err(Failure::usage(anyhow::anyhow!(
                "--ctx is for Jsonnet templates; give a Go template --data, --message or --type"
            )));
        }
        return super::compose::render(super::compose::GoRender {
            template: &args.template,
            data: args.data.as_deref(),
            message: args.message.as_deref(),
            template_type: args.template_type,
            sms: args.sms,
            html: (args.html || args.text).then_some(args.html),
        })
        .await;
    }
    if args.data.is_some() || args.text || args.html {
        return Err(Failure::usage(anyhow::anyhow!(
            "--data, --text and --html are for Go templates (*.gotmpl)"
        )));
    }
    let loader = Loader::new(None);
    let template = load_template(&loader, &args.template).await?;
    let ctx = ctx_of(&args, &template)?;
    if args.explain {
        eprintln!("render path: {}", render_path(&template));
    }
    let pool = Pool::new(1, args.limits.limits())
        .map_err(|e| Failure::usage(anyhow::anyhow!("--import-dir: {e}")))?;
    let json = pool.render(&template, ctx).await.map_err(Failure::failed)?;
    let out = match args.format {
        FormatArg::Json if args.pretty => encode::pretty(&json),
        FormatArg::Json => json,
        FormatArg::Form => encode::form(&json)
            .map_err(|e| Failure::failed(anyhow::anyhow!("template {:?}: {e}", template.name())))?,
    };
    println!("{out}");
    Ok(())
}
