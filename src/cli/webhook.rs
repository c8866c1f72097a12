//! `courier webhook sign|verify`: Standard Webhooks signatures from the command line, so that a
//! receiver can check its verification against what the courier sends.

use std::io::Read as _;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};

use super::{CmdResult, Failure};
use jsonnet_courier::config::Secret;
use jsonnet_courier::webhook::{Signer, Verifier};

#[derive(Debug, Args)]
pub(crate) struct WebhookArgs {
    #[command(subcommand)]
    command: WebhookCommand,
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Sign the body on standard input and print the `webhook-signature` value.
    ///
    /// Example:
    ///   echo -n '{"test": 2432232314}' | courier webhook sign \
    ///     --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \
    ///     --id msg_p5jXN8AQM9LWM0D4loKWxJek --timestamp 1614265330
    #[command(verbatim_doc_comment)]
    Sign(SignArgs),
    /// Verify a `webhook-signature` value for the body on standard input. Exits 0 if a signature
    /// matches one of the secrets, 1 if not (the reason goes to standard error).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// A `whsec_` (HMAC-SHA256) or `whsk_` (Ed25519) secret; `verify` also takes a `whpk_` public
    /// key. Repeat for several (rotation). Prefer the environment variable: arguments are visible
    /// to other local users.
    #[arg(
        long = "secret",
        value_name = "SECRET",
        env = "COURIER_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ' ',
        required = true
    )]
    secrets: Vec<String>,
    /// The `webhook-id`.
    #[arg(long, value_name = "ID")]
    id: String,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The `webhook-timestamp` (Unix seconds); now when left out.
    #[arg(long, value_name = "UNIX_SECONDS")]
    timestamp: Option<u64>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The `webhook-timestamp` header as received.
    #[arg(long, value_name = "UNIX_SECONDS")]
    timestamp: String,
    /// The `webhook-signature` header as received (space-separated signatures).
    #[arg(long, value_name = "SIGNATURE")]
    signature: String,
    /// Largest accepted distance between the timestamp and now, in seconds; 0 skips the check.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    tolerance: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn body() -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| Failure::usage(anyhow::anyhow!("reading standard input: {e}")))?;
    Ok(buf)
}

fn secrets(key: &KeyArgs) -> Vec<Secret> {
    key.secrets
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(Secret::new)
        .collect()
}

pub(crate) async fn run(args: WebhookArgs) -> CmdResult {
    match args.command {
        WebhookCommand::Sign(a) => {
            let signer = Signer::new(&secrets(&a.key))
                .map_err(|e| Failure::usage(anyhow::anyhow!("--secret: {e}")))?;
            if a.key.id.is_empty() || a.key.id.contains('.') {
                return Err(Failure::usage(anyhow::anyhow!(
                    "--id must be non-empty and contain no '.'"
                )));
            }
            let body = body()?;
            println!(
                "{}",
                signer.sign(&a.key.id, a.timestamp.unwrap_or_else(now), &body)
            );
            Ok(())
        }
        WebhookCommand::Verify(a) => {
            let verifier = Verifier::new(&secrets(&a.key))
                .map_err(|e| Failure::usage(anyhow::anyhow!("--secret: {e}")))?;
            let body = body()?;
            verifier
                .verify(
                    &a.key.id,
                    &a.timestamp,
                    &body,
                    &a.signature,
                    now(),
                    a.tolerance,
                )
                .map_err(|e| Failure::failed(anyhow::anyhow!("invalid: {e}")))?;
            println!("valid");
            Ok(())
        }
    }
}
