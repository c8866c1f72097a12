//! `courier send`: deliver one message with the retry policy and print the delivery report.

use std::path::PathBuf;

use clap::Args;

use super::render::{parse_type, sample};
use super::{read_input, CmdResult, Failure};
use jsonnet_courier::config::Config;
use jsonnet_courier::delivery::{Courier, Outcome};
use jsonnet_courier::message::{Message, TemplateType};

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The configuration file (YAML or JSON): a reference config's `courier` section, plus our
    /// `jsonnet_courier` section.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// The message to send (a file, or - for standard input; either key style).
    #[arg(
        long,
        short,
        value_name = "FILE",
        required_unless_present = "template_type"
    )]
    message: Option<PathBuf>,
    /// Send the embedded sample of this template type instead (its recipient is an example.com
    /// address or a fictional phone number).
    #[arg(long = "type", value_name = "TEMPLATE_TYPE", value_parser = parse_type, conflicts_with = "message")]
    template_type: Option<TemplateType>,
    /// With --type: the SMS sample.
    #[arg(long, requires = "template_type")]
    sms: bool,
    /// Deliver through this channel instead of the message's own.
    #[arg(long, value_name = "ID")]
    channel: Option<String>,
}

pub(crate) async fn run(args: SendArgs) -> CmdResult {
    let config = Config::load(&args.config).map_err(Failure::usage)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let mut message = match (&args.message, args.template_type) {
        (Some(path), _) => {
            let bytes = read_input(path)?;
            Message::from_json(&bytes)
                .map_err(|e| Failure::usage(anyhow::anyhow!("--message {}: {e}", path.display())))?
        }
        (None, Some(t)) => sample(t, args.sms)?,
        (None, None) => return Err(Failure::usage(anyhow::anyhow!("give --message or --type"))),
    };
    if let Some(ch) = args.channel {
        message.channel = Some(ch);
    }
    if config.channel(message.channel()).is_none()
        && config.smtp_channel(message.channel()).is_none()
    {
        let known: Vec<&str> = config
            .channels
            .iter()
            .map(|c| c.id.as_str())
            .chain(config.smtp_channels.iter().map(|c| c.id.as_str()))
            .collect();
        return Err(Failure::usage(anyhow::anyhow!(
            "no channel {:?} in {} (configured: {})",
            message.channel(),
            args.config.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    let courier = Courier::new(config).await.map_err(Failure::usage)?;
    let report = courier.deliver(&message).await;
    let json = serde_json::to_string_pretty(&report).map_err(Failure::failed)?;
    println!("{json}");
    match report.outcome {
        Outcome::Delivered => Ok(()),
        other => Err(Failure::failed(anyhow::anyhow!(
            "not delivered: {} after {} attempt{}",
            serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            report.attempts.len(),
            if report.attempts.len() == 1 { "" } else { "s" }
        ))),
    }
}
