//! Delivery throughput: render + deliver of distinct messages (each its own recipient and code)
//! through `Courier` to an in-process sink on 127.0.0.1, and in the same run the ceiling, a bare
//! hyper client (its pool kept across iterations, as the courier's is) posting the same payloads
//! pre-rendered to the same sink at the same concurrency; the sink and the client side each on a
//! thread of their own, as in `courier bench`; and the
//! same delivery with Standard Webhooks signing and an idempotency key, beside the cost of one
//! signature alone. Run with `cargo bench --bench deliver`; a summary with the ratios prints
//! after criterion's report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};

use bytes::Bytes;
use courier_loadgen::{drive, Ceiling, LoadThread, RunStats, Sink};
use jsonnet_courier::config::{ChannelConfig, ChannelOptions, Config, Secret, Signing};
use jsonnet_courier::delivery::{Courier, Outcome};
use jsonnet_courier::message::{ctx, samples, CtxStyle, Message};
use jsonnet_courier::template::{default_template, Engine, Limits};
use jsonnet_courier::webhook::Signer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: u64 = 2000;
const CONCURRENCY: usize = 64;

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
    let mut signed_config = Config::default();
    signed_config.channels.push(ChannelConfig {
        options: ChannelOptions {
            signing: Some(Signing {
                secrets: secrets.clone(),
            }),
            idempotency_header: Some(hyper::header::HeaderName::from_static("idempotency-key")),
            ..ChannelOptions::default()
        },
        ..ChannelConfig::default_post("email", &sink.url("/deliver"))
    });
    let signed = Arc::new(rt.block_on(Courier::new(signed_config)).unwrap());
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
}

/// Numbers every message of the process, so that messages stay distinct across iterations.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Delivers `total` distinct messages through `courier` with `concurrency` in flight: each is a
/// sample with its own recipient and code ([`samples::distinct`]), built by the load generator
/// as `courier bench` does, and without an id (the courier makes one).
async fn run_courier(
    courier: Arc<Courier>,
    messages: Arc<Vec<Message>>,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    drive(total, concurrency, progress, move |_| {
        let (courier, messages) = (courier.clone(), messages.clone());
        async move {
            let msg = samples::distinct(&messages, NEXT.fetch_add(1, Ordering::Relaxed));
            courier.deliver(&msg).await.outcome == Outcome::Delivered
        }
    })
    .await
}
