//! `courier bench`: render-and-deliver throughput against an in-process sink, next to the ceiling
//! (a bare hyper client posting a pre-rendered payload to the same sink), in one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{load_template, CmdResult, Failure, StyleArg};
use courier_loadgen::{drive, run_ceiling, RunStats, Sink};
use jsonnet_courier::config::{ChannelConfig, Config};
use jsonnet_courier::delivery::{Courier, Outcome};
use jsonnet_courier::message::{ctx, samples, CtxStyle, Message, MessageType, TemplateType};
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
    #[arg(long, value_enum, default_value = "pascal")]
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
    /// Benchmark the service instead: post messages to `courier serve`'s API and measure accepted
    /// and delivered msgs/s, then enqueue-to-delivered latency at a fixed offered rate. Runs an
    /// in-process service (on --database) unless --api points at a running one.
    #[arg(long)]
    service: bool,
    /// With --service: the store of the in-process service (default: SQLite in a temp dir).
    #[arg(long, value_name = "URL", requires = "service")]
    database: Option<String>,
    /// With --service: a running service's API (http://host:port). Configure its email channel
    /// to deliver to --sink.
    #[arg(long, value_name = "URL", requires = "service")]
    api: Option<String>,
    /// With --service --api: where the recording sink listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4481")]
    sink: std::net::SocketAddr,
    /// With --service: bearer token for the API.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "COURIER_BENCH_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// With --service: messages per POST.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// With --service: offered rate of the latency run, messages per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// With --service: duration of the latency run, seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
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
    if args.service {
        return run_service(args).await;
    }
    let style = CtxStyle::from(args.style);
    let sink = Sink::ok().await.map_err(Failure::failed)?;
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
    config.settings.ctx_style = Some(style);
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

async fn run_service(args: BenchArgs) -> CmdResult {
    use courier_loadgen::service::{
        run_service_latency, run_service_throughput, MessageMaker, RecordingSink, Target,
    };
    use jsonnet_courier::service::Service;

    let sink_addr = if args.api.is_some() {
        args.sink
    } else {
        ([127, 0, 0, 1], 0).into()
    };
    let sink = RecordingSink::start(sink_addr)
        .await
        .map_err(Failure::failed)?;
    let tmp = tempfile_dir().map_err(Failure::failed)?;
    let (api, stop, task, store_shown) = match &args.api {
        Some(api) => (api.clone(), None, None, "external".to_owned()),
        None => {
            let db = args
                .database
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", tmp.join("bench.db").display()));
            let mut config = Config::default();
            config.settings.template.threads = args.threads;
            config.settings.serve.listen = ([127, 0, 0, 1], 0).into();
            config.settings.serve.concurrency = args.concurrency;
            config.channels.push(ChannelConfig::default_post(
                "email",
                &sink.sink.url("/deliver"),
            ));
            let store = jsonnet_courier::store::open(&db)
                .await
                .map_err(Failure::usage)?;
            let service = Service::new(config, store).await.map_err(Failure::usage)?;
            let listener = service.bind().await.map_err(Failure::usage)?;
            let addr = listener.local_addr().map_err(Failure::failed)?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(service.run(listener, rx));
            let shown = jsonnet_courier::config::mask_url(&db);
            (format!("http://{addr}"), Some(tx), Some(task), shown)
        }
    };
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let sample = samples::message(TemplateType::RecoveryCodeValid, MessageType::Email)
        .ok_or_else(|| Failure::failed(anyhow::anyhow!("no recovery_code_valid email sample")))?;
    let maker = MessageMaker::new(serde_json::to_value(sample).map_err(Failure::failed)?);
    let target = |kind: &str| Target {
        api: api.clone(),
        token: args.token.clone(),
        prefix: format!("bench-{run_id}-{kind}-"),
        messages: maker.clone(),
    };
    if !args.json {
        eprintln!(
            "service bench: {} messages in arrays of {} to {api} (store {store_shown}), then {} msg/s for {} s",
            args.messages, args.batch, args.rate, args.seconds
        );
    }
    let wait = Duration::from_secs(300);
    let throughput =
        run_service_throughput(&target("t"), &sink, args.messages, args.batch, 8, wait).await;
    let latency = run_service_latency(
        &target("l"),
        &sink,
        args.rate,
        args.seconds,
        Duration::from_secs(60),
    )
    .await;
    if let (Some(tx), Some(task)) = (stop, task) {
        let _ = tx.send(true);
        let _ = task.await;
    }
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({"store": store_shown, "throughput": throughput, "latency": latency})
        );
    } else {
        println!(
            "accepted   {:>9.0} msgs/s\ndelivered  {:>9.0} msgs/s   (duplicates {}, missing {})",
            throughput.accepted_per_second,
            throughput.delivered_per_second,
            throughput.duplicates,
            throughput.missing
        );
        println!(
            "latency    at {} msgs/s: p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms   (missing {})",
            latency.rate, latency.p50_ms, latency.p99_ms, latency.max_ms, latency.missing
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if throughput.missing > 0 || latency.missing > 0 {
        return Err(Failure::failed(anyhow::anyhow!(
            "some messages were not delivered"
        )));
    }
    Ok(())
}

/// Delivers `total` messages (cycling through `messages`) through `courier` with `concurrency`
/// in flight: the whole path, ctx to rendered payload to HTTP response.
async fn run_courier(
    courier: Arc<Courier>,
    messages: Arc<Vec<Message>>,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    drive(total, concurrency, progress, move |i| {
        let (courier, messages) = (courier.clone(), messages.clone());
        async move {
            let msg = &messages[(i as usize) % messages.len()];
            courier.deliver(msg).await.outcome == Outcome::Delivered
        }
    })
    .await
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("courier-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
