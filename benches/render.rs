//! Render throughput: the engine and the pool against the bare jrsonnet floor, in one run.
//!
//! Run with `cargo bench --bench render`. After criterion's own report, a summary prints each
//! variant's renders per second and its ratio to the floor (one cached jrsonnet function call plus
//! JSON conversion in a plain loop on one thread), all from this run's measurements.
//!
//! `engine_fast_path` is the compiled fast path (the default template qualifies);
//! `*_ctx_and_render` against `*_ctx_as_sent_and_render` is what the typed ctx (the reference's
//! model with its zero values) costs per message, on the evaluator and on the fast path;
//! `engine_cached` and `engine_cold_compile_and_render` are the evaluator alone. The pool
//! variants take the fast path on the calling task, as callers get it. `pool_evaluator_2_threads`
//! and `pool_process_2_children` render the default template made to miss the fast path (a
//! parameter default), on evaluator threads and on evaluator processes (template isolation,
//! the `courier` binary of this build): their ratio is the cost of isolation per render.

use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, Criterion, Throughput};
use jrsonnet_evaluator::function::NativeFn;
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{State, Val};
use serde::Deserialize as _;
use serde_json::Value;

use jsonnet_courier::message::{ctx, samples, CtxStyle};
use jsonnet_courier::template::{
    default_template, CtxRef, Engine, Isolation, Limits, Pool, PoolOptions, ProcessOptions,
    Template, DEFAULT_PASCAL,
};

/// Renders per pool iteration, and the number of callers issuing them concurrently.
const BATCH: usize = 2000;
const CALLERS: usize = 64;

/// The ctx of every sample message (20, email and SMS), as JSON text: the form the pool moves
/// between threads.
fn ctxs() -> Vec<String> {
    samples::all()
        .map(|(_, _, m)| ctx::to_json(&m, CtxStyle::Pascal))
        .collect()
}

fn floor(c: &mut Criterion, ctxs: &[String]) {
    let mut b = State::builder();
    b.context_initializer(jrsonnet_stdlib::ContextInitializer::new(
        PathResolver::FileName,
    ));
    let state = b.build();
    let _entered = state.enter();
    let prepared = state
        .prepare_snippet("default.jsonnet", DEFAULT_PASCAL)
        .unwrap();
    let Val::Func(f) = state.evaluate_prepared_snippet(&prepared).unwrap() else {
        panic!("the default template is a function")
    };
    let func = NativeFn::<(Val, Val)>::try_from(f).unwrap();
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("floor_bare_jrsonnet", |b| {
        b.iter(|| {
            i = (i + 1) % ctxs.len();
            let mut de = serde_json::Deserializer::from_str(&ctxs[i]);
            let val = func.call(Val::deserialize(&mut de).unwrap()).unwrap();
            black_box(serde_json::to_string(&val).unwrap())
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion, ctxs: &[String]) {
    let mut fast = Engine::new(Limits::default()).unwrap();
    // The evaluator alone: the fast path off.
    let mut engine = Engine::new(Limits::default()).unwrap();
    engine.set_fast_path(false);
    let template = default_template(CtxStyle::Pascal);
    assert_eq!(template.fast_path(), Ok(()));
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    let mut out = String::new();
    g.bench_function("engine_fast_path", |b| {
        b.iter(|| {
            i = (i + 1) % ctxs.len();
            fast.render_into(&template, CtxRef::Json(&ctxs[i]), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("engine_cached", |b| {
        b.iter(|| {
            i = (i + 1) % ctxs.len();
            engine
                .render_into(&template, CtxRef::Json(&ctxs[i]), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    // The whole per-message path: the message's ctx written as JSON text, then rendered.
    let messages: Vec<_> = samples::all().map(|(_, _, m)| m).collect();
    g.bench_function("engine_ctx_and_render", |b| {
        b.iter(|| {
            i = (i + 1) % messages.len();
            let text = ctx::to_json(&messages[i], CtxStyle::Pascal);
            engine
                .render_into(&template, CtxRef::Json(&text), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    // The same without the typed model (template data as sent): what the model costs.
    g.bench_function("engine_ctx_as_sent_and_render", |b| {
        b.iter(|| {
            i = (i + 1) % messages.len();
            let text = ctx::to_json_as_sent(&messages[i], CtxStyle::Pascal);
            engine
                .render_into(&template, CtxRef::Json(&text), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    // The same pair on the fast path (the default template's path in production).
    g.bench_function("fast_ctx_and_render", |b| {
        b.iter(|| {
            i = (i + 1) % messages.len();
            let text = ctx::to_json(&messages[i], CtxStyle::Pascal);
            fast.render_into(&template, CtxRef::Json(&text), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("fast_ctx_as_sent_and_render", |b| {
        b.iter(|| {
            i = (i + 1) % messages.len();
            let text = ctx::to_json_as_sent(&messages[i], CtxStyle::Pascal);
            fast.render_into(&template, CtxRef::Json(&text), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("engine_cold_compile_and_render", |b| {
        b.iter(|| {
            i = (i + 1) % ctxs.len();
            // A new identity each time: compiled from source, then rendered.
            let t = Template::new("default.jsonnet", DEFAULT_PASCAL);
            engine
                .render_into(&t, CtxRef::Json(&ctxs[i]), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

fn pool(c: &mut Criterion, ctxs: &[String], threads: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::new(threads, Limits::default()).unwrap();
    let template = default_template(CtxStyle::Pascal);
    bench_pool(
        c,
        &rt,
        &format!("pool_{threads}_threads"),
        &pool,
        &template,
        ctxs,
    );
}

/// The evaluator behind a pool, in process and isolated.
fn isolation(c: &mut Criterion, ctxs: &[String]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let source = DEFAULT_PASCAL.replacen("function(ctx)", "function(ctx={})", 1);
    let template = Template::new("default.jsonnet", source);
    assert!(template.fast_path().is_err());
    let threads = Pool::new(2, Limits::default()).unwrap();
    bench_pool(
        c,
        &rt,
        "pool_evaluator_2_threads",
        &threads,
        &template,
        ctxs,
    );
    report_renders("pool_evaluator_2_threads", &threads);
    drop(threads);
    let processes = Pool::with_options(
        Limits::default(),
        PoolOptions {
            threads: 2,
            isolation: Isolation::Process(ProcessOptions {
                program: Some(env!("CARGO_BIN_EXE_courier").into()),
                ..ProcessOptions::default()
            }),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    bench_pool(
        c,
        &rt,
        "pool_process_2_children",
        &processes,
        &template,
        ctxs,
    );
    report_renders("pool_process_2_children", &processes);
}

/// Renders a pool answered in this run: the divisor for per-render counts taken from outside
/// (`perf stat -e context-switches`, `strace -c -f`) on a run filtered to one variant.
fn report_renders(id: &str, pool: &Pool) {
    let renders = pool.stats().renders;
    if renders > 0 {
        println!("{id}: {renders} renders on the pool");
    }
}

/// `BATCH` renders of `template` per iteration, from `CALLERS` concurrent tasks.
fn bench_pool(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    id: &str,
    pool: &Pool,
    template: &Template,
    ctxs: &[String],
) {
    let ctxs: std::sync::Arc<Vec<String>> = std::sync::Arc::new(ctxs.to_vec());
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(id, |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for caller in 0..CALLERS {
                    let (pool, template, ctxs) = (pool.clone(), template.clone(), ctxs.clone());
                    set.spawn(async move {
                        let mut n = 0;
                        for k in (caller..BATCH).step_by(CALLERS) {
                            n += pool
                                .render(&template, ctxs[k % ctxs.len()].clone())
                                .await
                                .unwrap()
                                .len();
                        }
                        n
                    });
                }
                while let Some(n) = set.join_next().await {
                    black_box(n.unwrap());
                }
            })
        })
    });
    g.finish();
}

/// Mean nanoseconds per iteration of `render/<id>` from criterion's saved estimates.
fn mean_ns(id: &str) -> Option<f64> {
    let path = format!("target/criterion/render/{id}/new/estimates.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// What the typed ctx costs: each typed ctx+render against the same with data as sent.
fn typed_summary() {
    for (typed, as_sent) in [
        ("engine_ctx_and_render", "engine_ctx_as_sent_and_render"),
        ("fast_ctx_and_render", "fast_ctx_as_sent_and_render"),
    ] {
        if let (Some(t), Some(a)) = (mean_ns(typed), mean_ns(as_sent)) {
            println!(
                "typed ctx / as sent, time per ctx+render: {:.3} ({typed}: {:.2} µs vs {:.2} µs)",
                t / a,
                t / 1e3,
                a / 1e3
            );
        }
    }
}

fn summary() {
    typed_summary();
    let Some(floor) = mean_ns("floor_bare_jrsonnet") else {
        return;
    };
    let floor_rate = 1e9 / floor;
    println!("\nrender summary (this run; ratio = renders/s relative to the floor)");
    println!(
        "{:<34} {:>12} {:>10} {:>7}",
        "variant", "renders/s", "µs/render", "ratio"
    );
    for (id, per_iter) in [
        ("floor_bare_jrsonnet", 1.0),
        ("engine_fast_path", 1.0),
        ("engine_cached", 1.0),
        ("engine_ctx_and_render", 1.0),
        ("engine_ctx_as_sent_and_render", 1.0),
        ("fast_ctx_and_render", 1.0),
        ("fast_ctx_as_sent_and_render", 1.0),
        ("engine_cold_compile_and_render", 1.0),
        ("pool_1_threads", BATCH as f64),
        ("pool_2_threads", BATCH as f64),
        ("pool_evaluator_2_threads", BATCH as f64),
        ("pool_process_2_children", BATCH as f64),
    ] {
        if let Some(ns) = mean_ns(id) {
            let rate = 1e9 * per_iter / ns;
            println!(
                "{id:<34} {rate:>12.0} {:>10.2} {:>7.2}",
                1e6 / rate,
                rate / floor_rate
            );
        }
    }
    if let (Some(fast), Some(evaluator)) = (mean_ns("engine_fast_path"), mean_ns("engine_cached")) {
        println!(
            "fast path / evaluator (engine_cached), time per render: {:.3} ({:.2} µs vs {:.2} µs)",
            fast / evaluator,
            fast / 1e3,
            evaluator / 1e3
        );
    }
}

fn isolation_summary() {
    if let (Some(threads), Some(processes)) = (
        mean_ns("pool_evaluator_2_threads"),
        mean_ns("pool_process_2_children"),
    ) {
        println!(
            "evaluator processes / evaluator threads, time per render: {:.3} ({:.2} µs vs {:.2} µs)",
            processes / threads,
            processes / BATCH as f64 / 1e3,
            threads / BATCH as f64 / 1e3
        );
    }
}

fn main() {
    let ctxs = ctxs();
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    floor(&mut c, &ctxs);
    engine(&mut c, &ctxs);
    pool(&mut c, &ctxs, 1);
    pool(&mut c, &ctxs, 2);
    isolation(&mut c, &ctxs);
    c.final_summary();
    summary();
    isolation_summary();
}
