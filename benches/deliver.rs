//! Delivery throughput: render + deliver of distinct messages (each its own recipient and code)
//! through `Courier` to an in-process sink on 127.0.0.1, and in the same run the ceiling, a bare
//! hyper client (its pool kept across iterations, as the courier's is) posting the same payloads
//! pre-rendered to the same sink at the same concurrency; the sink and the client side each on a
//! thread of their own, as in `courier bench`; and the
//! same delivery with Standard Webhooks signing and an idempotency key, beside the cost of one
//! signature alone. Run with `cargo bench --bench deliver`; a summary with the ratios prints
//! after criterion's report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, Throughput};

use bytes::Bytes;
use courier_loadgen::{drive_run_with, Ceiling, LoadThread, RunStats, Sink, Stash};
use hyper::header::HeaderMap;
use jsonnet_courier::config::{ChannelConfig, ChannelOptions, Config, Secret, Signing};
use jsonnet_courier::delivery::stamp::Stamp;
use jsonnet_courier::delivery::{Courier, Outcome, RequestTemplate};
use jsonnet_courier::message::{ctx, samples, CtxStyle, Message};
use jsonnet_courier::template::{default_template, Engine, Limits};
use jsonnet_courier::webhook::Signer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: u64 = 2000;
const CONCURRENCY: usize = 64;

/// The copies of the samples that the courier side's tasks make distinct (every courier run here
/// delivers the same samples: all of them, on the `email` channel).
static COPIES: std::sync::LazyLock<Stash<Vec<Message>>> = std::sync::LazyLock::new(Stash::new);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink_thread = LoadThread::start().unwrap();
    let sink = rt.block_on(sink_thread.run(Sink::ok())).unwrap();
    let client = LoadThread::start().unwrap();
    let mut config = Config::default();
    config
        .channels
        .push(ChannelConfig::default_post("email", &sink.url("/deliver")));
    let courier = Arc::new(rt.block_on(Courier::new(config)).unwrap());
    let secrets = vec![Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
    let signed_channel = |url: &str| ChannelConfig {
        options: ChannelOptions {
            signing: Some(Signing {
                secrets: secrets.clone(),
            }),
            idempotency_header: Some(hyper::header::HeaderName::from_static("idempotency-key")),
            ..ChannelOptions::default()
        },
        ..ChannelConfig::default_post("email", url)
    };
    let mut signed_config = Config::default();
    signed_config
        .channels
        .push(signed_channel(&sink.url("/deliver")));
    let signed = Arc::new(rt.block_on(Courier::new(signed_config)).unwrap());
    let unsigned_channel = ChannelConfig::default_post("email", &sink.url("/deliver"));
    let signed_channel = signed_channel(&sink.url("/deliver"));
    // The samples, from which every delivered message is made distinct (as `courier bench`).
    let messages: Vec<Message> = samples::all()
        .map(|(_, _, mut m)| {
            m.channel = Some("email".into());
            m
        })
        .collect();
    let mut engine = Engine::new(Limits::default()).unwrap();
    let mut render = |m: &Message| {
        engine
            .render(
                &default_template(CtxStyle::Pascal),
                &ctx::build(m, CtxStyle::Pascal),
            )
            .unwrap()
    };
    let payload = render(&messages[0]);
    // What the courier posts, pre-rendered: each sample made distinct, in the courier's order.
    let payloads: Vec<Bytes> = (0..messages.len() as u64)
        .map(|i| Bytes::from(render(&samples::distinct(&messages, i))))
        .collect();
    let messages = Arc::new(messages);
    let ceiling = Ceiling::new(&sink.url("/deliver"), payloads).unwrap();

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let mut g = c.benchmark_group("deliver");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("ceiling_bare_client", |b| {
        b.iter(|| {
            let ceiling = ceiling.clone();
            rt.block_on(client.run(async move {
                ceiling
                    .run(BATCH, CONCURRENCY, Arc::new(AtomicU64::new(0)))
                    .await
                    .stats()
            }))
        })
    });
    g.bench_function("courier_render_and_deliver", |b| {
        b.iter(|| {
            rt.block_on(client.run(run_courier(
                courier.clone(),
                messages.clone(),
                BATCH,
                CONCURRENCY,
                Arc::new(AtomicU64::new(0)),
            )))
        })
    });
    g.bench_function("courier_render_and_deliver_signed", |b| {
        b.iter(|| {
            rt.block_on(client.run(run_courier(
                signed.clone(),
                messages.clone(),
                BATCH,
                CONCURRENCY,
                Arc::new(AtomicU64::new(0)),
            )))
        })
    });
    g.finish();
    let signer = Signer::new(&secrets).unwrap();
    let mut g = c.benchmark_group("signing");
    g.bench_function("sign_hmac_payload", |b| {
        b.iter(|| {
            signer.sign(
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                1674087231,
                payload.as_bytes(),
            )
        })
    });
    // One request built for each kind of channel (the payload's copy in both), and the stamp
    // alone, so the signed path's extra cost is seen without the network.
    let unsigned_request =
        RequestTemplate::new(&unsigned_channel, "courier-bench").expect("unsigned channel");
    let signed_request =
        RequestTemplate::new(&signed_channel, "courier-bench").expect("signed channel");
    let msg_id = "0193a5c2-7f4e-7d38-9b1a-5c2f0e8d4a61";
    for (name, template) in [
        ("request_build_unsigned", &unsigned_request),
        ("request_build_signed", &signed_request),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| template.build_for(Some(payload.clone()), msg_id, 1674087231))
        });
    }
    let stamp = Stamp::new(&signed_channel.options).expect("signed channel");
    g.bench_function("stamp_apply", |b| {
        b.iter(|| {
            let mut h = HeaderMap::with_capacity(8);
            stamp.apply(&mut h, msg_id, 1674087231, payload.as_bytes());
            h
        })
    });
    g.finish();
    c.final_summary();

    let mean = |id: &str| -> Option<f64> {
        let text =
            std::fs::read_to_string(format!("target/criterion/deliver/{id}/new/estimates.json"))
                .ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["mean"]["point_estimate"].as_f64()
    };
    let rate = |ns: f64| BATCH as f64 * 1e9 / ns;
    if let (Some(ceiling), Some(ours)) = (
        mean("ceiling_bare_client"),
        mean("courier_render_and_deliver"),
    ) {
        println!(
            "\ndeliver summary (this run): ceiling {:.0}/s, courier {:.0}/s, ratio {:.2}",
            rate(ceiling),
            rate(ours),
            ceiling / ours
        );
        if let Some(signed) = mean("courier_render_and_deliver_signed") {
            println!(
                "signed: {:.0}/s, {:+.1}% time per message against unsigned",
                rate(signed),
                (signed / ours - 1.0) * 100.0
            );
        }
        let sign = std::fs::read_to_string(
            "target/criterion/signing/sign_hmac_payload/new/estimates.json",
        )
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["mean"]["point_estimate"].as_f64());
        if let Some(sign) = sign {
            println!(
                "one HMAC signature: {:.2} µs, {:.2}% of the courier's time per message",
                sign / 1e3,
                sign / (ours / BATCH as f64) * 100.0
            );
        }
    }
    let signing = |id: &str| -> Option<f64> {
        let text =
            std::fs::read_to_string(format!("target/criterion/signing/{id}/new/estimates.json"))
                .ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["mean"]["point_estimate"].as_f64()
    };
    if let (Some(u), Some(s), Some(stamp)) = (
        signing("request_build_unsigned"),
        signing("request_build_signed"),
        signing("stamp_apply"),
    ) {
        println!(
            "request build: unsigned {u:.0} ns, signed {s:.0} ns (+{:.0} ns); Stamp::apply alone {stamp:.0} ns",
            s - u
        );
    }
    // The criterion runs' runtime, clients and sink go: idle, they would still hold threads.
    drop((courier, signed, sink));
    drop(rt);
    let pairs = std::env::var("SIGNING_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    if pairs > 0 {
        signing_cost(&secrets, pairs);
    }
}

/// The signing target's measurement: the courier's own CPU time per message, signed against
/// unsigned. The sink runs on a runtime of its own whose threads' CPU clocks are read, so that
/// the receiver's work (which grows with every extra header) is not counted as the send path's;
/// the courier side is the rest of the process (its runtime, the render pool, the load
/// generator). Signed and unsigned batches alternate (A B, B A, ...) so that load drift on a
/// shared machine falls on both alike. Wall time per message is reported too.
fn signing_cost(secrets: &[Secret], pairs: usize) {
    let sink_clocks: Arc<Mutex<Vec<libc::clockid_t>>> = Arc::default();
    let clocks = sink_clocks.clone();
    let sink_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-sink")
        .on_thread_start(move || {
            let mut id: libc::clockid_t = 0;
            // SAFETY: pthread_self is the calling thread, alive while its clock is read (the
            // runtime outlives every read).
            if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) } == 0 {
                clocks.lock().unwrap().push(id);
            }
        })
        .enable_all()
        .build()
        .unwrap();
    let sink = sink_rt.block_on(Sink::ok()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = sink.url("/deliver");
    let channel = |sign: bool| ChannelConfig {
        options: ChannelOptions {
            signing: sign.then(|| Signing {
                secrets: secrets.to_vec(),
            }),
            // Signing alone: the target is about signing (the idempotency key is another option).
            ..ChannelOptions::default()
        },
        ..ChannelConfig::default_post("email", &url)
    };
    let courier = |sign: bool| {
        let mut config = Config::default();
        config.channels.push(channel(sign));
        Arc::new(rt.block_on(Courier::new(config)).unwrap())
    };
    let couriers = [courier(false), courier(true)];
    let messages: Arc<Vec<Message>> = Arc::new(
        samples::all()
            .map(|(_, _, mut m)| {
                m.channel = Some("email".into());
                m
            })
            .collect(),
    );
    let sink_cpu = || -> f64 {
        sink_clocks
            .lock()
            .unwrap()
            .iter()
            .map(|&c| cpu_seconds(c))
            .sum()
    };
    // One batch: (wall, courier CPU, sink CPU) in seconds.
    let batch = |courier: &Arc<Courier>| -> [f64; 3] {
        let (p0, s0) = (cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID), sink_cpu());
        let stats = rt.block_on(run_courier(
            courier.clone(),
            messages.clone(),
            BATCH,
            CONCURRENCY,
            Arc::new(AtomicU64::new(0)),
        ));
        assert_eq!(stats.failed, 0, "a delivery failed");
        let (p1, s1) = (cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID), sink_cpu());
        [stats.seconds, (p1 - p0) - (s1 - s0), s1 - s0]
    };
    for c in &couriers {
        batch(c);
        batch(c);
    }
    // Per side: the sums of each figure; per pair: signed / unsigned of each figure.
    let mut sums = [[0.0; 3]; 2];
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for pair in 0..pairs {
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut got = [[0.0; 3]; 2];
        for side in order {
            got[side] = batch(&couriers[side]);
        }
        for (side, figures) in got.iter().enumerate() {
            for (sum, f) in sums[side].iter_mut().zip(figures) {
                *sum += f;
            }
        }
        for (r, (s, u)) in ratios.iter_mut().zip(got[1].iter().zip(&got[0])) {
            r.push(s / u);
        }
    }
    let per_msg_us = |x: f64| x / (pairs as f64 * BATCH as f64) * 1e6;
    println!(
        "\nsigning cost ({pairs} interleaved pairs of {BATCH} messages, sink on its own runtime; \
         load average {}):",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    for (name, side) in [("unsigned", 0), ("signed", 1)] {
        let [wall, ours, sink] = sums[side].map(per_msg_us);
        println!(
            "  {name:<8} wall {wall:6.2} µs/msg   courier CPU {ours:6.2} µs/msg   sink CPU {sink:6.2} µs/msg"
        );
    }
    for (i, what) in [
        "wall time per message",
        "courier CPU per message (the target's figure)",
        "sink CPU per message (the receiver's, not ours)",
    ]
    .iter()
    .enumerate()
    {
        let r = &mut ratios[i];
        r.sort_by(f64::total_cmp);
        let q = |p: f64| (r[((r.len() - 1) as f64 * p).round() as usize] - 1.0) * 100.0;
        // The standard error of the pairs' mean ratio: how far the sums' figure may be off.
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        println!(
            "  signed {what}: {:+.2}% (sums), mean of pairs {:+.2}% ± {:.2}% (standard error), \
             median {:+.2}%, quartiles {:+.2}% .. {:+.2}%",
            (sums[1][i] / sums[0][i] - 1.0) * 100.0,
            (mean - 1.0) * 100.0,
            (var / n).sqrt() * 100.0,
            q(0.5),
            q(0.25),
            q(0.75)
        );
    }
}

/// A CPU clock's reading in seconds. Per-thread clocks, not `/proc`'s ticks (as
/// `courier_loadgen::cpu` reads): a batch takes ~0.1 s, and ticks are 10 ms.
fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Numbers every message of the process, so that messages stay distinct across iterations.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Delivers `total` distinct messages through `courier` with `concurrency` in flight: each is a
/// sample with its own recipient and code, without an id (the courier makes one), made by the
/// load generator inside the measured time as `courier bench` makes them: each worker keeps a
/// copy of every sample and writes the next message's recipient and codes into it
/// ([`samples::distinct_into`]).
async fn run_courier(
    courier: Arc<Courier>,
    messages: Arc<Vec<Message>>,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    drive_run_with(
        total,
        concurrency,
        progress,
        // The tasks' copies are kept across iterations: copying them is set-up, not the
        // courier's work.
        move || COPIES.take_or(|| messages.to_vec()),
        move |mut copies, _| {
            let courier = courier.clone();
            async move {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let len = copies.len() as u64;
                let msg = &mut copies[(n % len) as usize];
                samples::distinct_into(msg, n);
                let ok = courier.deliver(msg).await.outcome == Outcome::Delivered;
                (copies, ok)
            }
        },
    )
    .await
    .stats()
}
