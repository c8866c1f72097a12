//! The `courier` command line: argument parsing (clap) and the exit-code convention
//! (0 success, 1 a template, render or delivery failure, 2 bad usage, input or configuration).

mod bench;
mod bench_smtp;
mod check;
mod compose;
mod config;
mod golden;
mod render;
mod send;
mod serve;
mod sink;
mod watch;
mod webhook;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use jsonnet_courier::message::CtxStyle;
use jsonnet_courier::template::{source::Loader, Limits, Template};

/// Deliver identity-server courier messages over HTTP or SMTP, with Jsonnet payload templates and
/// Go message templates.
///
/// Templates are Jsonnet functions of one argument, the message's ctx:
/// `function(ctx) { to: ctx.Recipient, subject: ctx.Subject, body: ctx.Body }`.
/// TEMPLATE arguments are a path or a URI: file://, base64://, http://, https://.
#[derive(Debug, Parser)]
#[command(
    name = "courier",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render a template over a ctx, a message or an embedded sample, and print the payload.
    ///
    /// Examples:
    ///   courier render jsonnet/default.jsonnet --type recovery_code_valid
    ///   courier render body.jsonnet --type login_code_valid --sms --pretty
    ///   courier render body.jsonnet --message msg.json --style snake
    ///   echo '{"to":"+1555","body":"hi"}' | courier render sms.jsonnet --ctx - --format form
    #[command(verbatim_doc_comment)]
    Render(render::RenderArgs),
    /// Render a template against the sample of every template type, email and SMS, and print a
    /// table of the results. Exits 1 if any render fails.
    ///
    /// A render that ends in `error "cancel"` is reported as cancelled, not as a failure: templates
    /// use it on purpose to skip messages.
    Check(check::CheckArgs),
    /// Run golden tests: for every NAME.ctx.json or NAME.message.json in DIR with a
    /// NAME.expected.json beside it, render the template and compare the JSON.
    ///
    /// The template for NAME is NAME.jsonnet, or, for NAME = T.CASE, T.jsonnet (so several cases
    /// can share one template), looked up in DIR and then in --templates. Messages are turned into
    /// a ctx in --style (unset: the style of the ctx names the template reads), except for
    /// templates named *.snake.jsonnet, which always get snake.
    /// Prints a diff per mismatch and exits 1 if any case fails; --update rewrites the expected
    /// files from the current output instead.
    #[command(name = "test")]
    Golden(golden::GoldenArgs),
    /// Render and deliver one message through a configured channel, with retries, and print the
    /// delivery report (every attempt: time, status or error, latency, response body) as JSON.
    ///
    /// Exits 0 if delivered, 1 if not (abandoned, cancelled, or failed permanently), 2 on bad
    /// input or configuration.
    ///
    /// Example:
    ///   courier send --config courier.yaml --type recovery_code_valid
    #[command(verbatim_doc_comment)]
    Send(send::SendArgs),
    /// Show a whole message as it is composed from message templates (Go templates): subject,
    /// plain-text and HTML body, or SMS text, with the configured templates (or the built-ins)
    /// over a type's sample or a message. Exits 1 if a custom template failed and the built-in
    /// one was used.
    ///
    /// Examples:
    ///   courier preview --type recovery_code_valid --html-out /tmp/mail.html
    ///   courier preview --config courier.yaml --type login_code_valid --sms
    ///   courier preview --config courier.yaml --message msg.json
    #[command(verbatim_doc_comment)]
    Preview(compose::PreviewArgs),
    /// Work with configuration files.
    Config(config::ConfigArgs),
    /// Run the delivery service: an HTTP API that stores messages durably (SQLite by default,
    /// PostgreSQL for several processes) and a worker that delivers them with persisted retries.
    ///
    /// Examples:
    ///   courier serve --deliver-to http://127.0.0.1:8080/send
    ///   courier serve --config courier.yaml --database postgres://courier@db/courier
    #[command(verbatim_doc_comment)]
    Serve(serve::ServeArgs),
    /// A local HTTP endpoint that prints every request it receives (secrets in headers masked):
    /// a stand-in provider for trying `courier send` and `courier serve`.
    Sink(sink::SinkArgs),
    /// Measure render-and-deliver throughput against an in-process HTTP sink on 127.0.0.1, and in
    /// the same run the ceiling: a bare hyper client posting a pre-rendered payload to the same
    /// sink at the same concurrency. Prints msgs/s, p50/p99 latency and the ratio.
    Bench(bench::BenchArgs),
    /// Sign and verify Standard Webhooks signatures (`webhook-signature`), as receivers check them.
    Webhook(webhook::WebhookArgs),
    /// An evaluator process of template isolation, started by the render pool: renders requests
    /// from stdin to stdout (a length-prefixed protocol), not for interactive use.
    #[command(name = "template-worker", hide = true)]
    TemplateWorker,
}

/// Sandbox settings shared by every subcommand that renders.
#[derive(Debug, Args, Clone)]
pub(crate) struct LimitArgs {
    /// Allow `import`/`importstr` of files below this directory (imports are denied otherwise).
    #[arg(long, value_name = "DIR")]
    import_dir: Option<PathBuf>,
    /// Maximum Jsonnet stack depth.
    #[arg(long, value_name = "FRAMES", default_value_t = Limits::default().max_stack)]
    max_stack: usize,
    /// Maximum payload size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_output_bytes)]
    max_output: usize,
    /// Maximum evaluation time per render, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = Limits::default().timeout.as_millis() as u64)]
    timeout_ms: u64,
}

impl LimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_stack: self.max_stack,
            max_output_bytes: self.max_output,
            timeout: Duration::from_millis(self.timeout_ms),
            import_dir: self.import_dir.clone(),
            trace_to_stderr: true,
        }
    }
}

/// The ctx key style, as a flag value. Unset, each template gets the style of the ctx names it
/// reads (snake when it reads none, as the reference sends).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum StyleArg {
    /// ctx.Recipient, ctx.TemplateData.RecoveryCode (the form the seeds document)
    Pascal,
    /// ctx.recipient, ctx.template_data.recovery_code
    Snake,
}

/// The style `template` gets with `--style` set to `flag`, and why; a template that reads both
/// styles with no flag is a usage error.
pub(crate) fn style_for(
    template: &Template,
    flag: Option<StyleArg>,
) -> Result<jsonnet_courier::template::StyleChoice, Failure> {
    let explicit = flag.map(|f| (CtxStyle::from(f), "--style"));
    jsonnet_courier::template::style::decide(template, explicit).map_err(Failure::usage)
}

impl From<StyleArg> for CtxStyle {
    fn from(s: StyleArg) -> Self {
        match s {
            StyleArg::Pascal => CtxStyle::Pascal,
            StyleArg::Snake => CtxStyle::Snake,
        }
    }
}

/// A failed command and the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Bad usage, input or configuration: exit 2.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }
    /// A template, render or delivery failure: exit 1.
    pub(crate) fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }
    /// Exit 1 with nothing more to print (the command already reported).
    pub(crate) fn quiet() -> Self {
        Self::failed(anyhow::anyhow!(""))
    }
}

pub(crate) type CmdResult = Result<(), Failure>;

impl Cli {
    /// Whether this command runs the long-lived service.
    pub fn is_service(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    // No async runtime for an evaluator process: its threads would only take address space
    // from under the memory cap.
    if let Command::TemplateWorker = cli.command {
        return match jsonnet_courier::template::run_worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("courier template-worker: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("courier: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Render(args) => render::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Golden(args) => golden::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Config(args) => config::run(args).await,
            Command::Preview(args) => compose::preview(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Sink(args) => sink::run(args).await,
            Command::Webhook(args) => webhook::run(args).await,
            Command::TemplateWorker => unreachable!("served before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            let text = format!("{error:#}");
            if !text.is_empty() {
                eprintln!("courier: {text}");
            }
            ExitCode::from(code)
        }
    }
}

/// Loads TEMPLATE: a URI, or a plain path (no deprecation warning on the command line).
pub(crate) async fn load_template(loader: &Loader, arg: &str) -> Result<Template, Failure> {
    let uri = if arg.contains("://") {
        arg.to_owned()
    } else {
        format!("file://{arg}")
    };
    loader.load(&uri).await.map_err(Failure::usage)
}

/// Which way a template renders: the compiled fast path, or the evaluator and why.
pub(crate) fn render_path(template: &Template) -> String {
    match template.fast_path() {
        Ok(()) => "compiled fast path (no evaluator; errors are reported by the evaluator)".into(),
        Err(why) => format!("evaluator ({why} is outside the fast path's subset)"),
    }
}

/// Reads a file, or standard input for `-`.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::usage(anyhow::anyhow!("reading standard input: {e}")))?;
        Ok(buf)
    } else {
        std::fs::read(path)
            .map_err(|e| Failure::usage(anyhow::anyhow!("reading {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
