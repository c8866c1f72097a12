//! `courier bench --service --signing-pairs N`: what Standard Webhooks signing costs the
//! service, as its CPU time per delivered message, unsigned against signed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use courier_loadgen::cpu::{CpuClock, CpuReport};
use courier_loadgen::service::{run_service_throughput, RecordingSink, ServiceStats, Target};
use courier_loadgen::LoadThread;

use super::{counts_postgres, database, maker, run_id, start, tempfile_dir, BenchArgs};
use crate::cli::{CmdResult, Failure};

/// The Standard Webhooks specification's published test secret: the bench's signatures protect
/// nothing, they only cost what a real secret's would.
pub(super) const BENCH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One side of a signing pair.
#[derive(Debug, serde::Serialize)]
struct SigningRun {
    signed: bool,
    stats: ServiceStats,
    /// Deliveries that arrived with a `webhook-signature` header.
    signed_requests: u64,
    /// The service's CPU time (runtime, store, evaluators; PostgreSQL's server when counted)
    /// per delivered message, microseconds.
    service_cpu_us_per_message: f64,
    cpu: CpuReport,
}

/// `--signing-pairs`: unsigned and signed throughput runs in alternating order (A B, B A, …),
/// each on a fresh service over one store, so that drift in the machine or the store's size
/// falls on both sides alike.
pub(super) async fn run(args: &BenchArgs, pairs: u64) -> CmdResult {
    let load = LoadThread::start().map_err(Failure::failed)?;
    let sink = Arc::new(
        load.run(RecordingSink::start(([127, 0, 0, 1], 0).into()))
            .await
            .map_err(Failure::failed)?,
    );
    let tmp = tempfile_dir().map_err(Failure::failed)?;
    let db = database(args, &tmp);
    let store = jsonnet_courier::store::open(&db)
        .await
        .map_err(Failure::usage)?;
    let postgres = counts_postgres(args);
    let posters = args.posters.first().copied().unwrap_or(8);
    let (run_id, maker) = (run_id(), maker()?);
    if !args.json {
        eprintln!(
            "signing cost: {pairs} pairs of {} distinct messages in arrays of {} from {posters} \
             posters (store {}), unsigned and signed alternating",
            args.messages,
            args.batch,
            jsonnet_courier::config::mask_url(&db)
        );
    }
    let mut runs: Vec<SigningRun> = Vec::new();
    for pair in 0..pairs.max(1) {
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for signed in order {
            let (api, running) =
                start(args, Arc::clone(&store), &sink.sink.url("/deliver"), signed).await?;
            let target = Target {
                api,
                token: None,
                prefix: format!("bench-{run_id}-s{pair}{}-", u8::from(signed)),
                messages: maker.clone(),
            };
            let (sink2, n, batch) = (Arc::clone(&sink), args.messages, args.batch);
            let signed_before = sink.signed.load(Ordering::Relaxed);
            let clock = CpuClock::start(postgres);
            let stats = load
                .run(async move {
                    run_service_throughput(
                        &target,
                        &sink2,
                        n,
                        batch,
                        posters,
                        Duration::from_secs(300),
                    )
                    .await
                })
                .await;
            let cpu = clock.stop();
            running.stop().await;
            let delivered = stats.messages.saturating_sub(stats.missing).max(1);
            let run = SigningRun {
                signed,
                signed_requests: sink.signed.load(Ordering::Relaxed) - signed_before,
                service_cpu_us_per_message: cpu.service_seconds() * 1e6 / delivered as f64,
                stats,
                cpu,
            };
            if !args.json {
                println!(
                    "pair {pair:>3} {:<8} delivered {:>8.0} msgs/s   service CPU {:>7.2} µs/msg   (missing {})",
                    if signed { "signed" } else { "unsigned" },
                    run.stats.delivered_per_second,
                    run.service_cpu_us_per_message,
                    run.stats.missing
                );
            }
            runs.push(run);
        }
    }
    let summary = summary(&runs);
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({"store": jsonnet_courier::config::mask_url(&db), "runs": runs, "summary": summary})
        );
    } else {
        println!("{summary}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let missing: u64 = runs.iter().map(|r| r.stats.missing).sum();
    if missing > 0 {
        return Err(Failure::failed(anyhow::anyhow!(
            "{missing} messages were not delivered"
        )));
    }
    Ok(())
}

/// Signed against unsigned over all pairs.
#[derive(Debug, serde::Serialize)]
struct SigningSummary {
    pairs: usize,
    unsigned_cpu_us_per_message: f64,
    signed_cpu_us_per_message: f64,
    /// Signed over unsigned total CPU per message, as a percentage change.
    cpu_change_percent: f64,
    /// The mean of the pairs' changes and its standard error: how far the first figure may
    /// be off on a noisy machine.
    pairs_mean_percent: f64,
    pairs_standard_error_percent: f64,
    /// Delivered msgs/s, signed over unsigned, as a percentage change of the means.
    delivered_change_percent: f64,
}

impl std::fmt::Display for SigningSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "signing: service CPU per delivered message {:.2} → {:.2} µs = {:+.2}% \
             (pairs' mean {:+.2}% ± {:.2}% standard error, {} pairs); delivered msgs/s {:+.2}%",
            self.unsigned_cpu_us_per_message,
            self.signed_cpu_us_per_message,
            self.cpu_change_percent,
            self.pairs_mean_percent,
            self.pairs_standard_error_percent,
            self.pairs,
            self.delivered_change_percent
        )
    }
}

fn summary(runs: &[SigningRun]) -> SigningSummary {
    let side = |signed: bool| runs.iter().filter(move |r| r.signed == signed);
    let mean = |signed: bool, f: &dyn Fn(&SigningRun) -> f64| {
        let (sum, n) = side(signed).fold((0.0, 0usize), |(s, n), r| (s + f(r), n + 1));
        sum / n.max(1) as f64
    };
    let cpu = |r: &SigningRun| r.service_cpu_us_per_message;
    let rate = |r: &SigningRun| r.stats.delivered_per_second;
    let (unsigned, signed) = (mean(false, &cpu), mean(true, &cpu));
    // Runs come in pairs, one of each.
    let changes: Vec<f64> = runs
        .chunks(2)
        .filter_map(|p| match p {
            [a, b] => {
                let (u, s) = if a.signed { (b, a) } else { (a, b) };
                Some((cpu(s) / cpu(u).max(1e-9) - 1.0) * 100.0)
            }
            _ => None,
        })
        .collect();
    let n = changes.len().max(1) as f64;
    let pairs_mean = changes.iter().sum::<f64>() / n;
    let var = changes
        .iter()
        .map(|c| (c - pairs_mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    SigningSummary {
        pairs: changes.len(),
        unsigned_cpu_us_per_message: unsigned,
        signed_cpu_us_per_message: signed,
        cpu_change_percent: (signed / unsigned.max(1e-9) - 1.0) * 100.0,
        pairs_mean_percent: pairs_mean,
        pairs_standard_error_percent: (var / n).sqrt(),
        delivered_change_percent: (mean(true, &rate) / mean(false, &rate).max(1e-9) - 1.0) * 100.0,
    }
}
