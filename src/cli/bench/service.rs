//! `courier bench --service`: drives `courier serve` through its API (throughput per number of
//! concurrent posters, latency per offered rate), or with `--backlog N` fills a store with N
//! queued messages and measures the service draining it (rate and RSS over time), or with
//! `--signing-pairs N` ([`signing`]) compares the service's CPU per message unsigned and signed.

use std::sync::Arc;
use std::time::Duration;

use courier_loadgen::cpu::CpuClock;
use courier_loadgen::drain::{rss_bytes, watch_drain, DrainSample, DrainSink};
use courier_loadgen::service::{
    run_service_latency, run_service_throughput, MessageMaker, RecordingSink, Target,
};
use courier_loadgen::LoadThread;
use jsonnet_courier::config::{ChannelConfig, Config, Secret, Signing};
use jsonnet_courier::message::{samples, Message, MessageType, TemplateType};
use jsonnet_courier::service::Service;
use jsonnet_courier::store::MessageStore;

use super::BenchArgs;

mod signing;
use crate::cli::{CmdResult, Failure};

/// Messages per insert while filling a backlog.
const FILL_BATCH: u64 = 1000;

pub(super) async fn run(args: BenchArgs) -> CmdResult {
    if let Some(n) = args.backlog {
        return run_backlog(&args, n).await;
    }
    if let Some(pairs) = args.signing_pairs {
        return signing::run(&args, pairs).await;
    }
    let sink_addr = if args.api.is_some() {
        args.sink
    } else {
        ([127, 0, 0, 1], 0).into()
    };
    // The posters and the sink run on a thread of their own, apart from the service's runtime,
    // so that the CPU time of each can be reported.
    let load = LoadThread::start().map_err(Failure::failed)?;
    let sink = Arc::new(
        load.run(RecordingSink::start(sink_addr))
            .await
            .map_err(Failure::failed)?,
    );
    let tmp = tempfile_dir().map_err(Failure::failed)?;
    let (api, running, store_shown) = match &args.api {
        Some(api) => (api.clone(), None, "external".to_owned()),
        None => {
            let db = database(&args, &tmp);
            let store = jsonnet_courier::store::open(&db)
                .await
                .map_err(Failure::usage)?;
            let (api, running) = start(&args, store, &sink.sink.url("/deliver"), false).await?;
            (api, Some(running), jsonnet_courier::config::mask_url(&db))
        }
    };
    let postgres = counts_postgres(&args);
    let run_id = run_id();
    let maker = maker()?;
    let target = |kind: &str| Target {
        api: api.clone(),
        token: args.token.clone(),
        prefix: format!("bench-{run_id}-{kind}-"),
        messages: maker.clone(),
    };
    if !args.json {
        eprintln!(
            "service bench: {} distinct messages in arrays of {} to {api} (store {store_shown}) per \
             poster count {:?}, then latency at {:?} msgs/s for {} s each",
            args.messages, args.batch, args.posters, args.rate, args.seconds
        );
    }
    let wait = Duration::from_secs(300);
    let mut throughput = Vec::new();
    for &posters in &args.posters {
        let (target, sink2, n, batch) = (
            target(&format!("t{posters}")),
            Arc::clone(&sink),
            args.messages,
            args.batch,
        );
        let clock = CpuClock::start(postgres);
        let t =
            load.run(async move {
                run_service_throughput(&target, &sink2, n, batch, posters, wait).await
            })
            .await;
        let cpu = clock.stop();
        if !args.json {
            println!(
                "posters {posters:>3}  accepted {:>9.0} msgs/s   delivered {:>9.0} msgs/s   (duplicates {}, missing {})",
                t.accepted_per_second, t.delivered_per_second, t.duplicates, t.missing
            );
            println!("            {cpu}");
        }
        throughput.push(
            serde_json::json!({"posters": posters, "batch": args.batch, "stats": t, "cpu": cpu}),
        );
    }
    let mut latency = Vec::new();
    for &rate in &args.rate {
        let (target, sink2, seconds) =
            (target(&format!("l{rate}")), Arc::clone(&sink), args.seconds);
        let clock = CpuClock::start(postgres);
        let l = load
            .run(async move {
                run_service_latency(&target, &sink2, rate, seconds, Duration::from_secs(60)).await
            })
            .await;
        let cpu = clock.stop();
        if !args.json {
            println!(
                "latency    at {} msgs/s: p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms   (missing {})",
                l.rate, l.p50_ms, l.p99_ms, l.max_ms, l.missing
            );
            println!("            {cpu}");
        }
        let mut entry = serde_json::to_value(&l).map_err(Failure::failed)?;
        entry["cpu"] = serde_json::to_value(&cpu).map_err(Failure::failed)?;
        latency.push(entry);
    }
    if let Some(running) = running {
        running.stop().await;
    }
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({"store": store_shown, "throughput": throughput, "latency": latency})
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let missing = throughput
        .iter()
        .filter_map(|t| t["stats"]["missing"].as_u64())
        .sum::<u64>()
        + latency
            .iter()
            .filter_map(|l| l["missing"].as_u64())
            .sum::<u64>();
    if missing > 0 {
        return Err(Failure::failed(anyhow::anyhow!(
            "{missing} messages were not delivered"
        )));
    }
    Ok(())
}

/// Fills the store with `n` queued messages (the service not running yet), then starts the
/// service and samples the drain every second.
async fn run_backlog(args: &BenchArgs, n: u64) -> CmdResult {
    let tmp = tempfile_dir().map_err(Failure::failed)?;
    let db = database(args, &tmp);
    let store = jsonnet_courier::store::open(&db)
        .await
        .map_err(Failure::usage)?;
    let prefix = format!("backlog-{}-", run_id());
    let maker = maker()?;
    if !args.json {
        eprintln!(
            "backlog bench: filling {} with {n} distinct queued messages",
            jsonnet_courier::config::mask_url(&db)
        );
    }
    let filling = std::time::Instant::now();
    let mut from = 0;
    while from < n {
        let to = (from + FILL_BATCH).min(n);
        let batch = (from..to)
            .map(|i| Message::from_json(maker.nth(&prefix, i).as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::failed)?;
        store.insert(&batch).await.map_err(Failure::failed)?;
        from = to;
    }
    let fill_s = filling.elapsed().as_secs_f64();
    let load = LoadThread::start().map_err(Failure::failed)?;
    let sink = {
        let prefix = prefix.clone();
        load.run(async move { DrainSink::start(&prefix, n).await })
            .await
            .map_err(Failure::failed)?
    };
    let rss_before = rss_bytes();
    if !args.json {
        eprintln!(
            "filled in {fill_s:.1} s ({:.0} msgs/s); RSS {:.1} MB; draining:",
            n as f64 / fill_s.max(1e-9),
            mb(rss_before)
        );
        println!(
            "{:>7} {:>10} {:>10} {:>8}",
            "time s", "delivered", "msgs/s", "RSS MB"
        );
    }
    let (_, running) = start(args, store, &sink.sink.url("/deliver"), false).await?;
    let postgres = counts_postgres(args);
    let clock = CpuClock::start(postgres);
    let quiet = args.json;
    let samples = watch_drain(
        &sink,
        n,
        Duration::from_secs(1),
        Duration::from_secs(30),
        |s| {
            if !quiet {
                println!(
                    "{:>7.1} {:>10} {:>10.0} {:>8.1}",
                    s.at_s,
                    s.delivered,
                    s.rate,
                    mb(s.rss_bytes)
                );
            }
        },
    )
    .await;
    let cpu = clock.stop();
    running.stop().await;
    let _ = std::fs::remove_dir_all(&tmp);
    let summary = summarize(&samples, n);
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "store": jsonnet_courier::config::mask_url(&db), "messages": n,
                "fill_per_second": n as f64 / fill_s.max(1e-9), "rss_before_bytes": rss_before,
                "summary": summary, "duplicates": sink.duplicates(), "foreign": sink.foreign(),
                "cpu": cpu,
                "samples": samples,
            })
        );
    } else {
        println!(
            "drained {} of {n} in {:.1} s = {:.0} msgs/s; first quarter {:.0}/s, last quarter {:.0}/s; \
             RSS max {:.1} MB (sink bitset {:.1} MB); duplicates {}",
            summary.delivered,
            summary.seconds,
            summary.per_second,
            summary.first_quarter,
            summary.last_quarter,
            mb(summary.rss_max),
            mb(sink.footprint() as u64),
            sink.duplicates()
        );
        println!("{cpu}");
    }
    if summary.delivered < n {
        return Err(Failure::failed(anyhow::anyhow!(
            "{} messages were not delivered",
            n - summary.delivered
        )));
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct DrainSummary {
    delivered: u64,
    seconds: f64,
    per_second: f64,
    /// Rate over the samples of the first and last quarter of the messages.
    first_quarter: f64,
    last_quarter: f64,
    rss_max: u64,
}

fn summarize(samples: &[DrainSample], n: u64) -> DrainSummary {
    let last = samples.last();
    let delivered = last.map_or(0, |s| s.delivered);
    // The drain ends at the sample that saw the last message, not at the stall timeout.
    let end = samples
        .iter()
        .find(|s| s.delivered >= delivered)
        .map_or(0.0, |s| s.at_s);
    // From the last sample before `lo` (or the start) to the first at or past `hi`.
    let rate_between = |lo: u64, hi: u64| {
        let a = samples
            .iter()
            .rev()
            .find(|s| s.delivered < lo.max(1))
            .map_or((0.0, 0), |s| (s.at_s, s.delivered));
        let b = samples.iter().find(|s| s.delivered >= hi);
        match b {
            Some(b) if b.at_s > a.0 => (b.delivered - a.1) as f64 / (b.at_s - a.0),
            _ => 0.0,
        }
    };
    DrainSummary {
        delivered,
        seconds: end,
        per_second: delivered as f64 / end.max(1e-9),
        first_quarter: rate_between(1, (n / 4).max(1)),
        last_quarter: rate_between(n - n / 4, n),
        rss_max: samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A running in-process service.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the service over `store`, delivering to `sink_url` (with Standard Webhooks signatures
/// if `signed`); returns its API base URL.
async fn start(
    args: &BenchArgs,
    store: Arc<dyn MessageStore>,
    sink_url: &str,
    signed: bool,
) -> Result<(String, Running), Failure> {
    let mut config = Config::default();
    config.settings.template.threads = args.threads;
    config.settings.serve.listen = ([127, 0, 0, 1], 0).into();
    config.settings.serve.concurrency = args.concurrency;
    let mut channel = ChannelConfig::default_post("email", sink_url);
    if signed {
        channel.options.signing = Some(Signing {
            secrets: vec![Secret::new(signing::BENCH_SECRET)],
        });
    }
    config.channels.push(channel);
    let service = Service::new(config, store).await.map_err(Failure::usage)?;
    let listener = service.bind().await.map_err(Failure::usage)?;
    let addr = listener.local_addr().map_err(Failure::failed)?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(service.run(listener, rx));
    Ok((format!("http://{addr}"), Running { stop, task }))
}

/// Whether PostgreSQL's server processes are part of what is measured.
fn counts_postgres(args: &BenchArgs) -> bool {
    args.database
        .as_deref()
        .is_some_and(|d| d.starts_with("postgres"))
}

fn database(args: &BenchArgs, tmp: &std::path::Path) -> String {
    args.database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.join("bench.db").display()))
}

fn maker() -> Result<MessageMaker, Failure> {
    let sample = samples::message(TemplateType::RecoveryCodeValid, MessageType::Email)
        .ok_or_else(|| Failure::failed(anyhow::anyhow!("no recovery_code_valid email sample")))?;
    Ok(MessageMaker::new(
        serde_json::to_value(sample).map_err(Failure::failed)?,
    ))
}

fn run_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("courier-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
