//! `courier bench`: render-and-deliver throughput against an in-process sink, next to the ceiling
//! (a bare hyper client posting a pre-rendered payload to the same sink), in one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{load_template, CmdResult, Failure, StyleArg};
use jsonnet_courier::bench::{run_ceiling, run_courier, RunStats, Sink};
use jsonnet_courier::config::{ChannelConfig, Config};
use jsonnet_courier::delivery::Courier;
use jsonnet_courier::message::{ctx, samples, CtxStyle, Message};
use jsonnet_courier::template::{source::Loader, Engine};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Messages to deliver (and requests for the ceiling run).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: u64,
    /// Deliveries in flight.
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Body template (default: the shipped default for --style).
    #[arg(long, value_name = "TEMPLATE")]
    template: Option<String>,
    /// Key style of the ctx.
    #[arg(long, value_enum, default_value_t)]
    style: StyleArg,
    /// Evaluator threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Skip the ceiling run.
    #[arg(long)]
    no_ceiling: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn progress(
    total: u64,
    label: &str,
    quiet: bool,
) -> (ProgressBar, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    let count = Arc::new(AtomicU64::new(0));
    // A ticker reads the shared counter, so the hot loop never touches the bar.
    let (b, c) = (bar.clone(), count.clone());
    let ticker = tokio::spawn(async move {
        loop {
            b.set_position(c.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (bar, count, ticker)
}

fn line(label: &str, s: &RunStats) -> String {
    format!(
        "{label:<9} {:>8} in {:>6.2} s = {:>9.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   failed {}",
        s.count, s.seconds, s.per_second, s.p50_ms, s.p99_ms, s.failed
    )
}

pub(crate) async fn run(args: BenchArgs) -> CmdResult {
    let style = CtxStyle::from(args.style);
    let sink = Sink::start().await.map_err(Failure::failed)?;
    let body = match &args.template {
        Some(t) => {
            // Validate early, with the CLI's path-or-URI rules.
            load_template(&Loader::new(None), t).await?;
            Some(if t.contains("://") {
                t.clone()
            } else {
                format!("file://{t}")
            })
        }
        None => Some(jsonnet_courier::config::DEFAULT_BODY.to_owned()),
    };
    let mut config = Config::default();
    config.settings.ctx_style = style;
    config.settings.template.threads = args.threads;
    config.channels.push(ChannelConfig {
        id: "email".into(),
        path: "bench".into(),
        url: sink.url("/deliver"),
        method: hyper::Method::POST,
        headers: Vec::new(),
        encoding: jsonnet_courier::encode::Encoding::Json,
        body,
        auth: None,
    });
    let courier = Arc::new(Courier::new(config).await.map_err(Failure::usage)?);
    // Every sample, email and SMS, through the one channel.
    let messages: Vec<Message> = samples::all()
        .map(|(_, _, mut m)| {
            m.channel = Some("email".into());
            m
        })
        .collect();
    let template = jsonnet_courier::template::default_template(style);
    let payload = Engine::new(Default::default())
        .and_then(|mut e| {
            e.render(&template, &ctx::build(&messages[0], style))
                .map_err(std::io::Error::other)
        })
        .map_err(Failure::failed)?;
    let messages = Arc::new(messages);
    let quiet = args.json;
    if !quiet {
        eprintln!(
            "delivering {} messages, {} in flight, to an in-process sink at {}",
            args.messages, args.concurrency, sink.addr
        );
    }
    // A short warm-up fills the connection pools and the template caches.
    let warm = (args.messages / 50).clamp(100, 2000);
    run_courier(
        courier.clone(),
        messages.clone(),
        warm,
        args.concurrency,
        Arc::new(AtomicU64::new(0)),
    )
    .await;

    let ceiling = if args.no_ceiling {
        None
    } else {
        run_ceiling(
            &sink.url("/deliver"),
            payload.clone().into(),
            warm,
            args.concurrency,
            Arc::new(AtomicU64::new(0)),
        )
        .await;
        let (bar, count, ticker) = progress(args.messages, "ceiling", quiet);
        let s = run_ceiling(
            &sink.url("/deliver"),
            payload.into(),
            args.messages,
            args.concurrency,
            count,
        )
        .await;
        ticker.abort();
        bar.finish_and_clear();
        Some(s)
    };
    let (bar, count, ticker) = progress(args.messages, "courier", quiet);
    let ours = run_courier(courier, messages, args.messages, args.concurrency, count).await;
    ticker.abort();
    bar.finish_and_clear();

    let ratio = ceiling
        .as_ref()
        .map(|c| ours.per_second / c.per_second.max(1e-9));
    if args.json {
        let out = serde_json::json!({
            "messages": args.messages, "concurrency": args.concurrency,
            "courier": ours, "ceiling": ceiling, "ratio": ratio,
        });
        println!("{out:#}");
    } else {
        println!("{}", line("courier", &ours));
        if let Some(c) = &ceiling {
            println!("{}", line("ceiling", c));
        }
        if let Some(r) = ratio {
            println!("ratio     {r:.2} of the ceiling (render + deliver vs a bare client posting a pre-rendered payload)");
        }
    }
    if ours.failed > 0 {
        return Err(Failure::failed(anyhow::anyhow!(
            "{} deliveries failed",
            ours.failed
        )));
    }
    Ok(())
}
