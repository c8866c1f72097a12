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
/// A 1 GB string: the host has the memory, the 256 MiB cap refuses it.
pub(crate) const MEMORY_BOMB: &str = "function(ctx) {n: std.length(std.repeat('x', 1000000000))}";
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

#[tokio::test]
async fn evaluator_processes_render_chains_as_deep_as_the_nesting_bound_allows() {
    // What the in-process pool renders (tests/it/engine.rs) renders in an evaluator process
    // too, where renders run on the main thread (8 MiB) under the address-space cap: the
    // deepest chains the nesting bound lets through fit, in a debug build as well. (A 64 MiB
    // evaluator thread there would not: with the parse's 64 MiB stack segment it left too
    // little of the 256 MiB cap, and the parse failed to map its stack.)
    let (terms, concat, ifs) = crate::engine::deep_chains();
    let pool = process_pool(1, Duration::from_secs(30));
    let out = pool
        .render(&Template::new("concat", concat), json!({"recipient": "ab"}))
        .await
        .unwrap();
    assert_eq!(out, format!(r#"{{"s":"{}"}}"#, "ab".repeat(terms)));
    let out = pool
        .render(&Template::new("ifs", ifs), json!({"recipient": "r400"}))
        .await
        .unwrap();
    assert_eq!(out, r#"{"n":400}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evaluator_processes_contain_loops_memory_and_stack_bombs_while_normal_renders_flow() {
    // Generous for ordinary renders on a loaded machine; loops use all of it.
    let pool = process_pool(4, Duration::from_millis(250));
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
                // On a loaded machine a bomb may reach the deadline before its limit.
                assert!(
                    err.kind() == kind || err.kind() == RenderErrorKind::Timeout,
                    "{err}"
                );
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
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    let count = |kind| errors.iter().filter(|e| e.kind() == kind).count();
    assert!(count(RenderErrorKind::Timeout) >= 100);
    assert!(
        count(RenderErrorKind::Crashed) >= 50,
        "{}",
        count(RenderErrorKind::Crashed)
    );
    assert!(count(RenderErrorKind::StackOverflow) >= 50);
    let err = errors
        .iter()
        .find(|e| e.kind() == RenderErrorKind::Crashed)
        .unwrap();
    assert!(err.to_string().starts_with("memory.jsonnet: "), "{err}");
    assert!(err.message().contains("memory limit is 256 MiB"), "{err}");
    assert!(err.message().contains("memory allocation"), "{err}");

    // Ordinary renders still flow, on replaced children.
    for n in 1000..1050 {
        check_normal(&pool, &normal, n).await;
    }
    let stats = pool.stats();
    assert_eq!(
        stats.timeouts as usize,
        count(RenderErrorKind::Timeout),
        "{stats:?}"
    );
    assert!(stats.replaced >= 200, "{stats:?}");
    assert_eq!(stats.processes, 4, "{stats:?}");
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
    assert!(
        text.starts_with("capped-slow.jsonnet: render refused: 2 evaluator thread(s)"),
        "{text}"
    );
    assert!(
        text.contains("timed out") && text.contains("max_written_off"),
        "{text}"
    );
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
    assert_eq!(
        pool.render(&slow, json!({"n": 3})).await.unwrap(),
        r#"{"n":6}"#
    );
    assert_eq!(pool.stats().refused, 1);
}

#[cfg(target_os = "linux")]
/// One channel template that misbehaves by recipient: loops, allocates without bound, recurses
/// without bound, or renders normally.
const DISPATCH: &str = r#"
local loop() = std.foldl(function(a, b) a + b, std.range(0, 1000000000), 0);
local deep(n) = deep(n + 1) + 1;
function(ctx)
  if ctx.Recipient == 'loop' then {n: loop()}
  else if ctx.Recipient == 'memory' then {n: std.length(std.repeat('x', 1000000000))}
  else if ctx.Recipient == 'stack' then {n: deep(0)}
  else {to: ctx.Recipient, ok: std.isBoolean(true)}
"#;

#[cfg(target_os = "linux")]
/// `Name:` field of /proc/PID/status, as a number (kB for memory).
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[cfg(target_os = "linux")]
/// Children of `pid`: (pid, state letter), from /proc/*/stat.
fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if ppid.parse::<u32>().ok() == Some(pid) {
            let child = head.split_whitespace().next().and_then(|p| p.parse().ok());
            if let Some(child) = child {
                out.push((child, state.chars().next().unwrap_or('?')));
            }
        }
    }
    out
}

#[cfg(target_os = "linux")]
/// Kills the service when the test ends, pass or fail.
struct Service(std::process::Child);

#[cfg(target_os = "linux")]
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Reads the service's threads, memory and children from /proc.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_with_process_isolation_stays_bounded_under_a_hundred_of_each_bomb() {
    use crate::support::{get, post_json, wait_for, Server, Start as _};
    use base64::Engine as _;

    let sink = Server::status(200).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "courier:\n  message_retries: 0\n  http:\n    request_config:\n      url: {}\n      body: base64://{}\n\
         jsonnet_courier:\n  template:\n    isolation: process\n    threads: 3\n    timeout: 250ms\n    max_memory_bytes: 268435456\n\
         \x20 serve:\n    listen: 127.0.0.1:{port}\n    poll_interval: 20ms\n    database: sqlite://{}\n",
        sink.url("/send"),
        base64::engine::general_purpose::STANDARD.encode(DISPATCH),
        dir.path().join("courier.db").display(),
    );
    let path = dir.path().join("courier.yaml");
    std::fs::write(&path, config).unwrap();
    let service = Service(
        std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
            .args(["serve", "--config"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = service.0.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the service to answer", Duration::from_secs(30), || async {
        let r = crate::support::try_http_request(
            addr,
            "GET",
            "/health/ready",
            &[],
            bytes::Bytes::new(),
            false,
        )
        .await;
        r.ok().filter(|r| r.status == 200).map(|_| ())
    })
    .await;
    let first_children: Vec<u32> = children_of(pid).iter().map(|c| c.0).collect();
    assert_eq!(first_children.len(), 3, "{first_children:?}");
    let threads_at_start = proc_status(pid, "Threads");

    // 100 of each bomb and 100 ordinary messages, interleaved, 40 per request.
    let mut messages = Vec::new();
    for i in 0..100 {
        for to in ["loop", "memory", "stack"] {
            messages.push(
                json!({"recipient": to, "template_type": "stub", "subject": "s", "body": "b"}),
            );
        }
        messages.push(json!({"recipient": format!("user{i}@example.com"), "template_type": "stub", "subject": "s", "body": "b"}));
    }
    for chunk in messages.chunks(40) {
        let r = post_json(
            addr,
            "/messages",
            &[],
            serde_json::Value::from(chunk.to_vec()).to_string(),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.text());
    }

    // Until every message is settled, the service's threads and memory stay bounded.
    let mut max_threads = 0;
    let mut max_rss_kb = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        max_threads = max_threads.max(proc_status(pid, "Threads"));
        max_rss_kb = max_rss_kb.max(proc_status(pid, "VmRSS"));
        let text = get(addr, "/metrics", &[]).await.text();
        if text.contains("courier_messages{status=\"sent\"} 100")
            && text.contains("courier_messages{status=\"abandoned\"} 300")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after 120 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("service threads: {threads_at_start} at start, {max_threads} at most; RSS at most {max_rss_kb} kB");
    assert!(
        max_threads <= threads_at_start + 8,
        "threads grew from {threads_at_start} to {max_threads}"
    );
    assert!(
        max_rss_kb < 300 * 1024,
        "the service's RSS reached {max_rss_kb} kB"
    );
    // Each loop cost one process; each memory bomb one too (or, on a loaded machine, a few of
    // them reach the deadline first).
    let replaced = |reason: &str| -> u64 {
        let prefix = format!("courier_template_processes_replaced_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let (timeout, crashed) = (replaced("timeout"), replaced("crashed"));
    assert!(
        timeout >= 100 && crashed >= 50 && timeout + crashed >= 200,
        "{timeout} {crashed}"
    );

    // Every ordinary message reached the sink, rendered correctly.
    let mut got: Vec<String> = (0..sink.count()).map(|n| sink.request(n).text()).collect();
    got.sort();
    let mut want: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"ok":true,"to":"user{i}@example.com"}}"#))
        .collect();
    want.sort();
    assert_eq!(got, want);

    // Three evaluator processes, replacements of the first three, and no zombie left behind.
    let children = children_of(pid);
    assert_eq!(children.len(), 3, "{children:?}");
    assert!(
        children.iter().all(|(_, state)| *state != 'Z'),
        "{children:?}"
    );
    assert!(
        children.iter().all(|(c, _)| !first_children.contains(c)),
        "{children:?} {first_children:?}"
    );
}
