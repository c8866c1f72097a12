//! `courier bench`: render-and-deliver throughput against an in-process sink, next to the ceiling
//! (a bare hyper client posting the same payloads pre-rendered to the same sink), in alternating
//! rounds of one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

mod service;
mod storage;

use super::{load_template, CmdResult, Failure, StyleArg};
use bytes::Bytes;
use courier_loadgen::{drive_run_with, Ceiling, LoadThread, Run, RunStats, Sink, Stash};
use jsonnet_courier::config::{ChannelConfig, Config};
use jsonnet_courier::delivery::{Courier, Outcome};
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
    #[arg(long, value_enum, default_value = "pascal")]
    style: StyleArg,
    /// Evaluator threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Rounds: the messages are split into this many, each run next to a ceiling round of the
    /// same size; the ratio reported is the median of the rounds'.
    #[arg(long, default_value_t = 6)]
    rounds: u64,
    /// Skip the ceiling run.
    #[arg(long)]
    no_ceiling: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Benchmark SMTP delivery instead: compose and send sample emails through the courier's
    /// pooled SMTP transport to an in-process SMTP sink, next to a bare lettre client sending a
    /// prebuilt mail to the same sink. Both use --concurrency (capped at 8) connections.
    #[arg(long, conflicts_with = "service")]
    smtp: bool,
    /// Benchmark the service instead: post messages to `courier serve`'s API and measure accepted
    /// and delivered msgs/s, then enqueue-to-delivered latency at a fixed offered rate. Runs an
    /// in-process service (on --database) unless --api points at a running one.
    #[arg(long)]
    service: bool,
    /// With --service or --storage: the store (default: SQLite in a temp dir).
    #[arg(long, value_name = "URL")]
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
    /// With --service: concurrent posters of the throughput run; a list runs it once per value.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    posters: Vec<usize>,
    /// With --service: offered rates of the latency runs, messages per second (a list runs one
    /// per value).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    rate: Vec<u64>,
    /// With --service: instead of the runs above, fill the store with N distinct queued
    /// messages, then start the service and measure the drain (rate and RSS over time).
    #[arg(long, value_name = "N", requires = "service", conflicts_with = "api")]
    backlog: Option<u64>,
    /// Instead of a throughput run: store N distinct copies of every sample (each recorded as
    /// delivered once) and report bytes per stored message, in SQLite or --database.
    #[arg(long, value_name = "N")]
    storage: Option<u64>,
    /// With --service: duration of the latency run, seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// With --service: instead of the runs above, what Standard Webhooks signing costs the
    /// service: N pairs of throughput runs (the first --posters value), unsigned and signed in
    /// alternating order, each on a fresh in-process service over the same store, compared on
    /// the service's CPU time per delivered message.
    #[arg(long, value_name = "N", requires = "service", conflicts_with_all = ["api", "backlog"])]
    signing_pairs: Option<u64>,
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
    if let Some(n) = args.storage {
        return storage::run(&args, n).await;
    }
    if args.service {
        return service::run(args).await;
    }
    if args.smtp {
        return run_smtp(args).await;
    }
    let style = CtxStyle::from(args.style);
    // Layout: the sink on a thread of its own and the client side (the courier, or the bare
    // client) on another, each with a single-threaded runtime: on the 2 cores the benches run on,
    // each side has a core, the same for both phases. In one multi-threaded runtime shared by
    // all three, tasks and their connections hop between the workers, and a process settled
    // into a faster or a slower mode (courier and ceiling alike) by where they landed.
    let sink_thread = LoadThread::start().map_err(Failure::failed)?;
    let sink = sink_thread.run(Sink::ok()).await.map_err(Failure::failed)?;
    let client = LoadThread::start().map_err(Failure::failed)?;
    let url = sink.url("/deliver");
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
        path: "bench".into(),
        body,
        ..ChannelConfig::default_post("email", &url)
    });
    let courier = Arc::new(Courier::new(config).await.map_err(Failure::usage)?);
    // Every sample, email and SMS, through the one channel.
    let messages: Vec<Message> = samples::all()
        .map(|(_, _, mut m)| {
            m.channel = Some("email".into());
            m
        })
        .collect();
    // The ceiling posts what the courier posts, pre-rendered: the channel's template over each
    // sample made distinct, in the order the courier cycles through them, so both post bodies
    // of the same sizes.
    let (template, style) = courier
        .channel_template("email")
        .unwrap_or_else(|| (jsonnet_courier::template::default_template(style), style));
    let payloads = Engine::new(Default::default())
        .and_then(|mut e| {
            (0..messages.len() as u64)
                .map(|i| {
                    let m = samples::distinct(&messages, i);
                    e.render(&template, &ctx::build(&m, style))
                        .map(Bytes::from)
                        .map_err(std::io::Error::other)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(Failure::failed)?;
    let ceiling = Ceiling::new(&url, payloads).map_err(Failure::failed)?;
    let messages = Samples::new(messages);
    let quiet = args.json;
    // What building the distinct messages costs the load generator (inside the courier figure).
    let built = std::time::Instant::now();
    let mut copies = messages.messages.to_vec();
    for i in 0..10_000u64 {
        let msg = &mut copies[(i % messages.messages.len() as u64) as usize];
        samples::distinct_into(msg, i);
        std::hint::black_box(msg);
    }
    let build_us = built.elapsed().as_secs_f64() * 1e6 / 10_000.0;
    let rounds = args.rounds.clamp(1, args.messages.max(1));
    if !quiet {
        eprintln!(
            "delivering {} distinct messages (each its own recipient and code, over the {} samples), \
             {} in flight, to an in-process sink at {} (a thread of its own; the client side on another), \
             in {rounds} rounds alternating with the ceiling; building one costs the load generator {build_us:.2} µs",
            args.messages, messages.messages.len(), args.concurrency, sink.addr
        );
    }
    // A warm-up of both sides fills their connection pools and the template caches.
    let warm = (args.messages / 50).clamp(100, 2000);
    let zero = || Arc::new(AtomicU64::new(0));
    client
        .run(courier_phase(
            &courier,
            &messages,
            0,
            warm,
            args.concurrency,
            &zero(),
        ))
        .await;
    if !args.no_ceiling {
        client
            .run(ceiling_phase(&ceiling, warm, args.concurrency, &zero()))
            .await;
    }

    // Rounds alternate the two sides (ceiling first in even rounds, courier first in odd ones),
    // so a slow spell of the machine falls on both; the ratio is the median of the rounds'.
    let total = if args.no_ceiling {
        args.messages
    } else {
        args.messages * 2
    };
    let (bar, count, ticker) = progress(total, "bench", quiet);
    let (mut ours, mut theirs) = (Run::default(), Run::default());
    let (mut ours_cpu, mut theirs_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut per_round = Vec::with_capacity(rounds as usize);
    let mut next = warm;
    for r in 0..rounds {
        // Round r's share of the messages: the first `messages % rounds` rounds take one more.
        let n = args.messages / rounds + u64::from(r < args.messages % rounds);
        let base = next;
        next += n;
        let deliver = || {
            client.run(courier_phase(
                &courier,
                &messages,
                base,
                n,
                args.concurrency,
                &count,
            ))
        };
        let bare = || client.run(ceiling_phase(&ceiling, n, args.concurrency, &count));
        let ((o, ocpu), t) = if args.no_ceiling {
            (deliver().await, None)
        } else if r % 2 == 0 {
            let t = bare().await;
            (deliver().await, Some(t))
        } else {
            let o = deliver().await;
            (o, Some(bare().await))
        };
        let (os, ts) = (o.stats(), t.as_ref().map(|(t, _)| t.stats()));
        let cpu_us = |cpu: Duration| cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
        per_round.push(serde_json::json!({
            "courier_per_second": os.per_second,
            "ceiling_per_second": ts.as_ref().map(|t| t.per_second),
            "ratio": ts.as_ref().map(|t| os.per_second / t.per_second.max(1e-9)),
            "courier_cpu_us_per_message": cpu_us(ocpu),
            "ceiling_cpu_us_per_message": t.as_ref().map(|(_, c)| cpu_us(*c)),
        }));
        ours.merge(o);
        ours_cpu += ocpu;
        if let Some((t, tcpu)) = t {
            theirs.merge(t);
            theirs_cpu += tcpu;
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let ours = ours.stats();
    let ceiling = (!args.no_ceiling).then(|| theirs.stats());
    let mut ratios: Vec<f64> = per_round
        .iter()
        .filter_map(|r| r["ratio"].as_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = median(&ratios);
    // Process CPU time per message (sink included): on a busy machine the wall-time figures
    // swing with the other processes, while this moves little; when the bench has the cores to
    // itself and both sides keep them busy, its ratio is the throughput ratio.
    let per_msg = |cpu: Duration| cpu.as_secs_f64() * 1e6 / args.messages.max(1) as f64;
    let (ours_cpu_us, theirs_cpu_us) = (per_msg(ours_cpu), per_msg(theirs_cpu));
    let cpu_ratio = ceiling
        .as_ref()
        .map(|_| theirs_cpu_us / ours_cpu_us.max(1e-9));
    if args.json {
        let out = serde_json::json!({
            "messages": args.messages, "concurrency": args.concurrency, "distinct": true,
            "build_message_us": build_us,
            "courier": ours, "ceiling": ceiling, "ratio": ratio,
            "ratio_of_totals": ceiling.as_ref().map(|c| ours.per_second / c.per_second.max(1e-9)),
            "courier_cpu_us_per_message": ours_cpu_us,
            "ceiling_cpu_us_per_message": ceiling.as_ref().map(|_| theirs_cpu_us),
            "cpu_ratio": cpu_ratio,
            "rounds": per_round,
        });
        println!("{out:#}");
    } else {
        println!("{}", line("courier", &ours));
        if let Some(c) = &ceiling {
            println!("{}", line("ceiling", c));
        }
        if let Some(r) = ratio {
            println!("ratio     {r:.2} of the ceiling (render + deliver vs a bare client posting the pre-rendered payloads; median of {rounds} rounds)");
            let each: Vec<String> = per_round
                .iter()
                .filter_map(|r| r["ratio"].as_f64())
                .map(|r| format!("{r:.2}"))
                .collect();
            println!("rounds    {}", each.join(" "));
        }
        match cpu_ratio {
            Some(r) => println!(
                "cpu       {ours_cpu_us:.2} µs per message, ceiling {theirs_cpu_us:.2} µs: ratio {r:.2} (process CPU time, sink included)"
            ),
            None => println!("cpu       {ours_cpu_us:.2} µs per message (process CPU time, sink included)"),
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

/// A courier phase ([`run_courier`]) and the process CPU time it took.
fn courier_phase(
    courier: &Arc<Courier>,
    messages: &Samples,
    base: u64,
    n: u64,
    concurrency: usize,
    progress: &Arc<AtomicU64>,
) -> impl std::future::Future<Output = (Run, Duration)> + Send + 'static {
    let (courier, messages, progress) = (courier.clone(), messages.clone(), progress.clone());
    async move {
        let cpu = process_cpu();
        let run = run_courier(&courier, &messages, base, n, concurrency, progress).await;
        (run, process_cpu().saturating_sub(cpu))
    }
}

/// A ceiling phase and the process CPU time it took.
fn ceiling_phase(
    ceiling: &Ceiling,
    n: u64,
    concurrency: usize,
    progress: &Arc<AtomicU64>,
) -> impl std::future::Future<Output = (Run, Duration)> + Send + 'static {
    let (ceiling, progress) = (ceiling.clone(), progress.clone());
    async move {
        let cpu = process_cpu();
        let run = ceiling.run(n, concurrency, progress).await;
        (run, process_cpu().saturating_sub(cpu))
    }
}

/// CPU time this process has used so far, all threads.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant the kernel knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The median of sorted `values`, if any.
fn median(values: &[f64]) -> Option<f64> {
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

async fn run_smtp(args: BenchArgs) -> CmdResult {
    use jsonnet_courier::message::MessageType;
    use jsonnet_courier::smtp::sink::{SinkOptions, SmtpSink};

    let conns = args.concurrency.clamp(1, 8);
    let sink = SmtpSink::start(([127, 0, 0, 1], 0).into(), SinkOptions::default())
        .await
        .map_err(Failure::failed)?;
    let yaml = format!(
        "courier:\n  delivery_strategy: smtp\n  smtp:\n    connection_uri: smtp://{}/?disable_starttls=true\n    from_address: bench@example.org\n",
        sink.addr()
    );
    let config = Config::parse(&yaml, false, None, &|_| None).map_err(Failure::usage)?;
    let mailer = jsonnet_courier::smtp::Mailer::new(
        config
            .smtp_channel("email")
            .ok_or_else(|| Failure::failed(anyhow::anyhow!("no smtp channel")))?,
        Default::default(),
    )
    .map_err(Failure::failed)?;
    let courier = Arc::new(Courier::new(config).await.map_err(Failure::usage)?);
    let messages: Vec<Message> = samples::all()
        .filter(|(_, kind, _)| *kind == MessageType::Email)
        .map(|(_, _, m)| m)
        .collect();
    let prepared = mailer.prepare(&messages[0]).map_err(Failure::failed)?;
    let mail = Arc::new(prepared.bytes);
    let messages = Samples::new(messages);
    let quiet = args.json;
    if !quiet {
        eprintln!(
            "sending {} mails over {conns} connections to an in-process SMTP sink at {}",
            args.messages,
            sink.addr()
        );
    }
    let warm = (args.messages / 50).clamp(100, 2000);
    let zero = || Arc::new(AtomicU64::new(0));
    run_courier(&courier, &messages, 0, warm, conns, zero()).await;
    let ceiling = if args.no_ceiling {
        None
    } else {
        let c = |n, p| {
            super::bench_smtp::ceiling(
                sink.addr(),
                prepared.envelope.clone(),
                mail.clone(),
                n,
                conns,
                p,
            )
        };
        c(warm, zero()).await;
        let (bar, count, ticker) = progress(args.messages, "ceiling", quiet);
        let s = c(args.messages, count).await;
        ticker.abort();
        bar.finish_and_clear();
        Some(s)
    };
    let (bar, count, ticker) = progress(args.messages, "courier", quiet);
    let ours = run_courier(&courier, &messages, 0, args.messages, conns, count)
        .await
        .stats();
    ticker.abort();
    bar.finish_and_clear();
    let ratio = ceiling
        .as_ref()
        .map(|c| ours.per_second / c.per_second.max(1e-9));
    if args.json {
        let out = serde_json::json!({
            "smtp": true, "messages": args.messages, "connections": conns,
            "courier": ours, "ceiling": ceiling, "ratio": ratio,
        });
        println!("{out:#}");
    } else {
        println!("{}", line("courier", &ours));
        if let Some(c) = &ceiling {
            println!("{}", line("ceiling", c));
        }
        if let Some(r) = ratio {
            println!("ratio     {r:.2} of the ceiling (compose + pooled send vs bare lettre connections sending a prebuilt mail)");
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

/// Delivers `total` distinct messages through `courier` with `concurrency` in flight: message
/// `base + i` is sample `base + i` (cycling through `samples`) with its own recipient and code,
/// so no cache keyed on the message can help. Making it is the load generator's cost, inside the
/// measured time: each worker keeps a copy of every sample and writes the recipient and codes of
/// the next message into the copy ([`samples::distinct_into`]), as a producer fills a prepared
/// message, instead of cloning and dropping a whole message per delivery.
async fn run_courier(
    courier: &Arc<Courier>,
    samples: &Samples,
    base: u64,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> Run {
    let (courier, samples) = (courier.clone(), samples.clone());
    drive_run_with(
        total,
        concurrency,
        progress,
        move || samples.stash.take_or(|| samples.messages.to_vec()),
        move |mut copies, i| {
            let courier = courier.clone();
            async move {
                let n = base + i;
                let len = copies.len() as u64;
                let msg = &mut copies[(n % len) as usize];
                samples::distinct_into(msg, n);
                let ok = courier.deliver(msg).await.outcome == Outcome::Delivered;
                (copies, ok)
            }
        },
    )
    .await
}

/// The sample messages the courier side delivers, and the copies its tasks make distinct
/// (kept across rounds: copying them is set-up, not the courier's work).
#[derive(Clone)]
struct Samples {
    messages: Arc<Vec<Message>>,
    stash: Stash<Vec<Message>>,
}

impl Samples {
    fn new(messages: Vec<Message>) -> Self {
        Samples {
            messages: Arc::new(messages),
            stash: Stash::new(),
        }
    }
}
