//! Template isolation with real evaluator processes (`courier template-worker`): runaway,
//! memory-hungry and deeply recursive templates, a hundred of each, while ordinary renders keep
//! their answers; and the in-process cap on written-off threads.

use std::time::{Duration, Instant};

use jsonnet_courier::template::{
    Isolation, Limits, Pool, PoolOptions, ProcessOptions, RenderErrorKind, Template,
};
use serde_json::json;

/// Loops until killed (no recursion, so no stack limit stops it).
pub(crate) const LOOP: &str =
    "function(ctx) {n: std.foldl(function(a, b) a + b, std.range(0, 1000000000), 0)}";
/// Doubles a string 30 times (8 GiB): far past a 256 MiB cap.
pub(crate) const MEMORY_BOMB: &str =
    "local f(s, n) = if n == 0 then s else f(s + s, n - 1);\nfunction(ctx) {n: std.md5(f('xxxxxxxx', 30))}";
/// Unbounded recursion.
pub(crate) const STACK_BOMB: &str = "local f(n) = f(n + 1) + 1;\nfunction(ctx) {n: f(0)}";
/// An ordinary template outside the compiled fast path, so that it is evaluated by a worker.
pub(crate) const NORMAL: &str = "function(ctx) {to: ctx.to, n: ctx.n * 2, ok: std.isBoolean(true)}";

fn process_pool(children: usize, timeout: Duration) -> Pool {
    Pool::with_options(
        Limits {
            timeout,
            ..Limits::default()
        },
        PoolOptions {
            threads: children,
            isolation: Isolation::Process(ProcessOptions {
                program: Some(env!("CARGO_BIN_EXE_courier").into()),
                max_memory_bytes: 256 * 1024 * 1024,
                ..ProcessOptions::default()
            }),
            ..PoolOptions::default()
        },
    )
    .unwrap()
}

/// Renders `normal` over `n` and checks the answer.
async fn check_normal(pool: &Pool, normal: &Template, n: u64) {
    let to = format!("user{n}@example.com");
    let out = pool
        .render(normal, json!({"to": to, "n": n}))
        .await
        .unwrap_or_else(|e| panic!("normal render {n} failed: {e}"));
    assert_eq!(out, format!(r#"{{"n":{},"ok":true,"to":"{to}"}}"#, n * 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evaluator_processes_contain_loops_memory_and_stack_bombs_while_normal_renders_flow() {
    let pool = process_pool(3, Duration::from_millis(100));
    let normal = Template::new("normal.jsonnet", NORMAL);
    let bombs = [
        (
            Template::new("loop.jsonnet", LOOP),
            RenderErrorKind::Timeout,
        ),
        (
            Template::new("memory.jsonnet", MEMORY_BOMB),
            RenderErrorKind::Crashed,
        ),
        (
            Template::new("stack.jsonnet", STACK_BOMB),
            RenderErrorKind::StackOverflow,
        ),
    ];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        for (t, kind) in &bombs {
            let (pool, t, kind) = (pool.clone(), t.clone(), *kind);
            tasks.push(tokio::spawn(async move {
                let err = pool.render(&t, json!({"i": i})).await.unwrap_err();
                assert_eq!(err.kind(), kind, "{err}");
                assert_eq!(err.template(), t.name());
                Some(err)
            }));
        }
        let (pool, normal) = (pool.clone(), normal.clone());
        tasks.push(tokio::spawn(async move {
            check_normal(&pool, &normal, i).await;
            None
        }));
    }
    let mut memory_error = None;
    for task in tasks {
        if let Some(err) = task.await.unwrap() {
            if err.kind() == RenderErrorKind::Crashed {
                memory_error = Some(err);
            }
        }
    }
    let err = memory_error.unwrap();
    assert!(err.to_string().starts_with("memory.jsonnet: "), "{err}");
    assert!(err.message().contains("memory limit is 256 MiB"), "{err}");
    assert!(err.message().contains("memory allocation"), "{err}");

    // Ordinary renders still flow, on replaced children.
    for n in 1000..1050 {
        check_normal(&pool, &normal, n).await;
    }
    let stats = pool.stats();
    assert_eq!(stats.timeouts, 100, "{stats:?}");
    assert!(stats.replaced >= 200, "{stats:?}");
    assert_eq!(stats.processes, 3, "{stats:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// The `courier_template_renders_refused_total` sample for `template`, from a metrics scrape.
fn refused_metric(template: &str) -> Option<u64> {
    let text = jsonnet_courier::metrics::Metrics::new()
        .render(&jsonnet_courier::store::StoreStats::default());
    let prefix = format!("courier_template_renders_refused_total{{template=\"{template}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_off_threads_are_capped_and_their_template_is_refused_until_they_finish() {
    let pool = Pool::with_options(
        Limits {
            timeout: Duration::from_millis(30),
            ..Limits::default()
        },
        PoolOptions {
            threads: 1,
            max_written_off: 2,
            isolation: Isolation::Thread,
        },
    )
    .unwrap();
    // About a tenth of a second of work in a release build, a second or two in a debug one:
    // past the deadline, then it ends.
    let slow = Template::new(
        "capped-slow.jsonnet",
        "function(ctx) {n: std.foldl(function(a, b) a + b, std.range(0, ctx.n), 0)}",
    );
    let normal = Template::new("capped-normal.jsonnet", NORMAL);
    for _ in 0..2 {
        let err = pool.render(&slow, json!({"n": 400_000})).await.unwrap_err();
        assert_eq!(err.kind(), RenderErrorKind::Timeout, "{err}");
    }
    assert_eq!(pool.stats().written_off, 2, "{:?}", pool.stats());

    // At the cap: refused at once, naming the template and the reason, and counted.
    let before = refused_metric("capped-slow.jsonnet").unwrap_or(0);
    let started = Instant::now();
    let err = pool.render(&slow, json!({"n": 1})).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(err.kind(), RenderErrorKind::Refused, "{err}");
    let text = err.to_string();
    assert!(text.starts_with("capped-slow.jsonnet: render refused: 2 evaluator thread(s)"), "{text}");
    assert!(text.contains("timed out") && text.contains("max_written_off"), "{text}");
    assert_eq!(refused_metric("capped-slow.jsonnet"), Some(before + 1));
    let stats = pool.stats();
    assert_eq!((stats.refused, stats.threads), (1, 1), "{stats:?}");

    // Other templates are not held back.
    check_normal(&pool, &normal, 7).await;

    // The written-off threads end with their evaluations; the template is admitted again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.stats().written_off > 0 {
        assert!(Instant::now() < deadline, "written-off threads never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pool.render(&slow, json!({"n": 3})).await.unwrap(), r#"{"n":6}"#);
    assert_eq!(pool.stats().refused, 1);
}
