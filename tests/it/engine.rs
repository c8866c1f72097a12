//! The render engine and pool: limits, outcomes and error reporting, through the public API.

use std::time::{Duration, Instant};

use jsonnet_courier::template::{Engine, Limits, Pool, RenderErrorKind, Template, TopLevel};
use serde_json::json;

fn render(
    src: &str,
    ctx: serde_json::Value,
    limits: Limits,
) -> Result<String, jsonnet_courier::template::RenderError> {
    Engine::new(limits)
        .unwrap()
        .render(&Template::new("t.jsonnet", src), &ctx)
}

#[test]
fn renders_sorted_compact_json() {
    let out = render(
        "function(ctx) {b: ctx.x, a: [1, 2.5, 'é\"'], c: null}",
        json!({"x": true}),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(out, r#"{"a":[1,2.5,"é\""],"b":true,"c":null}"#);
}

#[test]
fn top_level_values_render_as_is_and_functions_must_take_ctx() {
    // As go-jsonnet: a top-level argument a value cannot take is ignored.
    let out = render(
        "{text: 'ping'}",
        json!({"recipient": "x"}),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(out, r#"{"text":"ping"}"#);
    let err = render("function(a, b) {}", json!({}), Limits::default()).unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::NotAFunction);
    assert!(err.to_string().contains("function(ctx)"), "{err}");
    // A top level that is `error "cancel"` cancels every message; it is not a load error.
    let mut engine = Engine::new(Limits::default()).unwrap();
    let t = Template::new("c.jsonnet", "error 'cancel'");
    assert_eq!(engine.compile(&t).unwrap(), TopLevel::CancelsAll);
    for _ in 0..2 {
        assert!(engine.render(&t, &json!({})).unwrap_err().is_cancelled());
    }
    let t = Template::new("v.jsonnet", "[1, 2]");
    assert_eq!(engine.compile(&t).unwrap(), TopLevel::IgnoresCtx);
}

#[test]
fn recursion_depth_is_go_jsonnets() {
    let source =
        "function(ctx)\n  local f(n) = if n == 0 then 0 else 1 + f(n - 1);\n  {depth: f(ctx.n)}";
    let out = render(source, json!({"n": 450}), Limits::default()).unwrap();
    assert_eq!(out, r#"{"depth":450}"#);
    let err = render(source, json!({"n": 600}), Limits::default()).unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::StackOverflow);
    let text = err.to_string();
    assert!(
        text.starts_with("t.jsonnet:2:"),
        "names template and line: {text}"
    );
    assert!(text.contains("stack overflow"), "{text}");
}

/// The same depths on the render pool's evaluator threads, as deliveries render.
#[tokio::test]
async fn recursion_depth_is_go_jsonnets_on_the_pool() {
    let pool = Pool::new(1, Limits::default()).unwrap();
    let t = Template::new(
        "deep.jsonnet",
        "function(ctx)\n  local f(n) = if n == 0 then 0 else 1 + f(n - 1);\n  {depth: f(ctx.n)}",
    );
    let out = pool.render(&t, r#"{"n": 450}"#.to_owned()).await.unwrap();
    assert_eq!(out, r#"{"depth":450}"#);
    let err = pool
        .render(&t, r#"{"n": 600}"#.to_owned())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::StackOverflow);
    assert!(err.to_string().starts_with("deep.jsonnet:2:"), "{err}");
}

#[test]
fn cancel_is_its_own_outcome() {
    let err = render("function(ctx) error 'cancel'", json!({}), Limits::default()).unwrap_err();
    assert!(err.is_cancelled());
    let err = render(
        "function(ctx) {a: error 'cancel'}",
        json!({}),
        Limits::default(),
    )
    .unwrap_err();
    assert!(err.is_cancelled(), "a cancel raised in a field counts too");
    let err = render(
        "function(ctx) error 'cancelled by policy'",
        json!({}),
        Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::Runtime);
}

#[test]
fn errors_name_template_location_and_field() {
    let err = render(
        "function(ctx) {\n  subject: ctx.Subject,\n}",
        json!({"subject": "x", "recipient": "a@b.c"}),
        Limits::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.field(), Some("subject"));
    assert!(
        text.starts_with("t.jsonnet:2:16: no such field: Subject"),
        "{text}"
    );
    assert!(
        text.contains("    2 |   subject: ctx.Subject,\n      |                ^"),
        "source line and caret: {text}"
    );
    assert!(text.ends_with("\n      = output field: subject"), "{text}");
    assert!(
        text.contains(
            "Subject is the pascal-style name, but the ctx is in snake style, where it is subject"
        ),
        "style hint: {text}"
    );

    let err = render(
        "function(ctx) {\n  a: {b: [1, std.parseInt('x')]},\n}",
        json!({}),
        Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("a.b[1]"));
    assert_eq!(err.location().map(|l| l.0), Some(2), "{err}");

    let err = render(
        "function(ctx) {\n  a: 1 +,\n}",
        json!({}),
        Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::Syntax);
    assert_eq!(err.location(), Some((2, 9)));
    assert!(
        err.to_string().starts_with("t.jsonnet:2:9: syntax error"),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("    2 |   a: 1 +,\n      |         ^"),
        "{err}"
    );
}

#[test]
fn stack_depth_is_limited_and_configurable() {
    let src = "function(ctx) local f(n) = if n == 0 then 0 else 1 + f(n - 1); {d: f(ctx.n)}";
    let err = render(src, json!({"n": 1000}), Limits::default()).unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::StackOverflow);
    let deep = Limits {
        max_stack: 5000,
        ..Limits::default()
    };
    assert_eq!(
        render(src, json!({"n": 1000}), deep).unwrap(),
        r#"{"d":1000}"#
    );
    let shallow = Limits {
        max_stack: 20,
        ..Limits::default()
    };
    assert_eq!(
        render(src, json!({"n": 50}), shallow).unwrap_err().kind(),
        RenderErrorKind::StackOverflow
    );
}

#[test]
fn output_is_capped_while_writing() {
    let src = "function(ctx) {items: [std.repeat('x', 1000) for i in std.range(1, ctx.n)]}";
    let err = render(src, json!({"n": 300}), Limits::default()).unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::OutputTooLarge);
    assert!(err.to_string().contains("262144"), "{err}");
    let small = Limits {
        max_output_bytes: 10_000,
        ..Limits::default()
    };
    assert_eq!(
        render(src, json!({"n": 11}), small.clone())
            .unwrap_err()
            .kind(),
        RenderErrorKind::OutputTooLarge
    );
    assert!(render(src, json!({"n": 9}), small).is_ok());
    // A lazily infinite structure stops at the cap (or the nesting bound) instead of hanging.
    let err = render(
        "function(ctx) local f() = {a: f()}; f()",
        json!({}),
        Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            RenderErrorKind::OutputTooLarge | RenderErrorKind::Runtime
        ),
        "{err}"
    );
}

#[test]
fn imports_are_denied_by_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.libsonnet"), "{x: 1}").unwrap();
    let src = format!(
        "function(ctx) (import '{}/lib.libsonnet')",
        dir.path().display()
    );
    let err = render(&src, json!({}), Limits::default()).unwrap_err();
    assert!(err.to_string().contains("imports are disabled"), "{err}");
    let err = render(
        "function(ctx) {h: importstr '/etc/hostname'}",
        json!({}),
        Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("denied"), "{err}");
}

#[test]
fn imports_are_jailed_to_the_library_directory() {
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("lib");
    std::fs::create_dir_all(lib.join("sub")).unwrap();
    std::fs::write(
        lib.join("sub/helpers.libsonnet"),
        "{greet(n): 'hi ' + n, v: import '../version.libsonnet'}",
    )
    .unwrap();
    std::fs::write(lib.join("version.libsonnet"), "'1.2'").unwrap();
    std::fs::write(root.path().join("secret.txt"), "s3cret").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), lib.join("link.txt")).unwrap();
    let limits = Limits {
        import_dir: Some(lib.clone()),
        ..Limits::default()
    };

    // Allowed: a library file, which may itself import a sibling by a plain relative name.
    std::fs::write(
        lib.join("sub/h2.libsonnet"),
        "{v: import 'inner.libsonnet'}",
    )
    .unwrap();
    std::fs::write(lib.join("sub/inner.libsonnet"), "7").unwrap();
    let out = render(
        "local h = import 'sub/h2.libsonnet'; function(ctx) {v: h.v}",
        json!({}),
        limits.clone(),
    )
    .unwrap();
    assert_eq!(out, r#"{"v":7}"#);

    for (src, why) in [
        ("function(ctx) {s: importstr '../secret.txt'}", "'..'"),
        (
            &*format!(
                "function(ctx) {{s: importstr '{}'}}",
                root.path().join("secret.txt").display()
            ),
            "'..'",
        ),
        (
            "function(ctx) {s: importstr 'link.txt'}",
            "outside the import directory",
        ),
        (
            "local h = import 'sub/helpers.libsonnet'; function(ctx) {v: h.v}",
            "'..'",
        ),
    ] {
        let err = render(src, json!({}), limits.clone()).unwrap_err();
        assert!(err.to_string().contains(why), "{src}: {err}");
        assert!(!err.to_string().contains("s3cret"));
    }
}

#[test]
fn compiled_templates_are_reused_and_errors_do_not_stick() {
    let mut engine = Engine::new(Limits::default()).unwrap();
    let t = Template::new(
        "t.jsonnet",
        "local cache = {}; function(ctx) {v: if ctx.fail then error 'no' else ctx.v}",
    );
    assert_eq!(
        engine.render(&t, &json!({"fail": false, "v": 1})).unwrap(),
        r#"{"v":1}"#
    );
    assert!(engine.render(&t, &json!({"fail": true, "v": 1})).is_err());
    assert_eq!(
        engine.render(&t, &json!({"fail": false, "v": 2})).unwrap(),
        r#"{"v":2}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_renders_concurrently() {
    let pool = Pool::new(2, Limits::default()).unwrap();
    let t = Template::new("t.jsonnet", "function(ctx) {n: ctx.n * 2}");
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let (pool, t) = (pool.clone(), t.clone());
            tokio::spawn(async move { pool.render(&t, json!({"n": n})).await })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), format!("{{\"n\":{}}}", n * 2));
    }
    assert_eq!(pool.stats().renders, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_render_times_out_at_the_deadline_and_the_pool_keeps_its_capacity() {
    let limits = Limits {
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let pool = Pool::new(1, limits).unwrap();
    // Seconds of work in a debug build, tenths in release: far past the 100 ms deadline either way.
    let slow = Template::new(
        "slow.jsonnet",
        "function(ctx) {n: std.foldl(function(a, b) a + b, std.range(0, ctx.n), 0)}",
    );
    // Outside the compiled fast path's subset, so that it needs an evaluator thread.
    let quick = Template::new("quick.jsonnet", "function(ctx) {ok: std.isBoolean(true)}");
    let started = Instant::now();
    let err = pool
        .render(&slow, json!({"n": 3_000_000}))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), RenderErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("slow.jsonnet"));
    assert!(
        waited < Duration::from_millis(1500),
        "answered at {waited:?}, not at the deadline"
    );
    // The only worker is still stuck in the slow render; its replacement serves this at once.
    let quick_started = Instant::now();
    assert_eq!(
        pool.render(&quick, json!({})).await.unwrap(),
        r#"{"ok":true}"#
    );
    assert!(quick_started.elapsed() < Duration::from_millis(1000));
    let stats = pool.stats();
    assert_eq!((stats.threads, stats.timeouts), (1, 1));
}

#[test]
fn a_blocking_caller_gets_the_same_answers() {
    let pool = Pool::new(1, Limits::default()).unwrap();
    let t = Template::new("t.jsonnet", "function(ctx) {a: ctx.a}");
    assert_eq!(
        pool.render_blocking(&t, json!({"a": "x"})).unwrap(),
        r#"{"a":"x"}"#
    );
    let err = pool.render_blocking(&t, json!({})).unwrap_err();
    assert_eq!(err.field(), Some("a"));
}

/// jrsonnet's parser recurses on the native stack: a template nested far past any real one is
/// refused with its location, and one nested deep but within the limit compiles, on the small
/// stacks of evaluator and runtime threads alike.
#[test]
fn deeply_nested_templates_are_refused_not_a_crash() {
    let deep = jsonnet_courier::template::nesting::MAX_DEPTH;
    let within = format!(
        "function(ctx) {}1{}",
        "[".repeat(deep - 5),
        "]".repeat(deep - 5)
    );
    let bomb = format!(
        "function(ctx)\n{}1{}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let chain = format!("function(ctx) {}1", "local a = 1; ".repeat(450));
    let top_chain = format!("{}function(ctx) a", "local a = 1;\n".repeat(450));
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut engine = Engine::new(Limits::default()).unwrap();
            for (name, src) in [("within", &within), ("chain", &chain), ("top", &top_chain)] {
                let t = Template::new(name, src.as_str());
                engine.compile(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
                // The ctx-style scan and the fast path's compiler walk the same tree.
                let _ = jsonnet_courier::template::style::reads(&t);
                let _ = t.fast_path();
            }
            let err = engine
                .compile(&Template::new("bomb.jsonnet", bomb.as_str()))
                .unwrap_err();
            assert_eq!(err.kind(), RenderErrorKind::Syntax);
            assert!(
                err.to_string()
                    .starts_with(&format!("bomb.jsonnet:2:{}: nested more than", deep + 1)),
                "{err}"
            );
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The deepest chains the nesting bound lets through: `ctx.recipient + ...` over `terms` terms,
/// and `terms / 2` chained `if ... then ... else` (`ctx.recipient == 'r400'` gives 400).
pub(crate) fn deep_chains() -> (usize, String, String) {
    let terms = jsonnet_courier::template::nesting::MAX_LEVELS - 50;
    let concat = format!(
        "function(ctx) {{ s: {} }}",
        vec!["ctx.recipient"; terms].join(" + ")
    );
    let ifs = format!(
        "function(ctx) {{ n: {} -1 }}",
        (0..terms / 2)
            .map(|i| format!("if ctx.recipient == 'r{i}' then {i} else"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    (terms, concat, ifs)
}

/// jrsonnet's evaluator recurses on the native stack once per chained binary operator: a long
/// chain within the limit renders on an evaluator thread (a debug build included), and one past
/// it is refused with its location instead of overflowing the thread's stack and aborting.
#[test]
fn long_operator_chains_render_or_are_refused_never_a_crash() {
    let (terms, concat, ifs) = deep_chains();
    let pool = Pool::new(1, Limits::default()).unwrap();
    let out = pool
        .render_blocking(&Template::new("concat", concat), json!({"recipient": "ab"}))
        .unwrap();
    assert_eq!(out, format!(r#"{{"s":"{}"}}"#, "ab".repeat(terms)));
    let out = pool
        .render_blocking(&Template::new("ifs", ifs), json!({"recipient": "r400"}))
        .unwrap();
    assert_eq!(out, r#"{"n":400}"#);
    let bomb = format!(
        "function(ctx)\n{{ s: {} }}",
        vec!["ctx.recipient"; 50_000].join(" + ")
    );
    let err = pool
        .render_blocking(
            &Template::new("bomb.jsonnet", bomb),
            json!({"recipient": "ab"}),
        )
        .unwrap_err();
    assert_eq!(err.kind(), RenderErrorKind::Syntax);
    assert!(
        err.to_string().starts_with("bomb.jsonnet:2:") && err.to_string().contains("levels deep"),
        "{err}"
    );
    // The pool still serves.
    let ok = pool
        .render_blocking(&Template::new("ok", "function(ctx) {a: 1}"), json!({}))
        .unwrap();
    assert_eq!(ok, r#"{"a":1}"#);
}
