//! Differential tests: the fast path against the evaluator, over the shipped templates and the
//! samples, and over generated templates of the supported subset with random ctx values.

use std::path::Path;

use serde_json::Value;

use crate::message::{ctx, samples, CtxStyle, Message};
use crate::template::{CtxRef, Engine, Limits, RenderError, Template};

/// The evaluator alone, and the engine as callers get it (fast path first).
pub(crate) struct Pair {
    evaluator: Engine,
    engine: Engine,
}

impl Pair {
    pub(crate) fn new(limits: Limits) -> Self {
        let mut evaluator = Engine::new(limits.clone()).unwrap();
        evaluator.set_fast_path(false);
        Self {
            evaluator,
            engine: Engine::new(limits).unwrap(),
        }
    }

    /// `template` over `message`'s ctx in `style`: the evaluator's payload from the ctx text
    /// (`None` when it fails), and the fast path's from the message's view.
    fn over_message(
        &mut self,
        template: &Template,
        message: &Message,
        style: CtxStyle,
    ) -> (Option<String>, Result<String, super::Fallback>) {
        let text = ctx::to_json(message, style);
        let mut expected = String::new();
        let expected = self
            .evaluator
            .render_into(template, CtxRef::Json(&text), &mut expected)
            .ok()
            .map(|()| expected);
        let program = template.fast_program().expect("a fast-path template");
        let mut got = String::new();
        let fast = super::render_message(program, message, style, &mut got, self.engine.limits())
            .map(|()| got);
        (expected, fast)
    }

    /// Renders with both and asserts the same outcome; returns whether the fast path answered.
    pub(crate) fn check(
        &mut self,
        template: &Template,
        ctx: CtxRef<'_>,
        what: &dyn Fn() -> String,
    ) -> bool {
        let mut expected = String::new();
        let expected = self
            .evaluator
            .render_into(template, ctx, &mut expected)
            .map(|()| expected);
        let mut fast_out = String::new();
        let fast = template
            .fast_program()
            .ok()
            .is_some_and(|p| super::render(p, ctx, &mut fast_out, self.engine.limits()).is_ok());
        if fast {
            match &expected {
                Ok(exp) => assert_eq!(&fast_out, exp, "fast output differs: {}", what()),
                Err(e) => panic!(
                    "fast path succeeded ({fast_out}) where the evaluator failed ({e}): {}",
                    what()
                ),
            }
        }
        let mut got = String::new();
        let got = self
            .engine
            .render_into(template, ctx, &mut got)
            .map(|()| got);
        match (&got, &expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{}", what()),
            (Err(g), Err(e)) => assert_same_error(g, e, what),
            _ => panic!("outcomes differ: {got:?} vs {expected:?}: {}", what()),
        }
        fast
    }
}

fn assert_same_error(got: &RenderError, expected: &RenderError, what: &dyn Fn() -> String) {
    assert_eq!(got.kind(), expected.kind(), "{}", what());
    assert_eq!(got.field(), expected.field(), "{}", what());
    assert_eq!(got.location(), expected.location(), "{}", what());
    assert_eq!(got.to_string(), expected.to_string(), "{}", what());
}

fn shipped() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("jsonnet");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonnet"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 7, "shipped templates not found");
    out
}

#[test]
fn every_shipped_template_takes_the_fast_path() {
    for (name, source) in shipped() {
        let t = Template::new(&name, source);
        assert_eq!(t.fast_path(), Ok(()), "{name}");
    }
}

/// Each distinct ctx path is numbered once, however often the template reads or tests it; a
/// test of a path whose parent is missing or not an object declines, as reading it does.
#[test]
fn ctx_paths_are_numbered_once_and_tested_like_reads() {
    let default = Template::new("default.jsonnet", crate::template::DEFAULT_PASCAL);
    // Recipient, TemplateType, Subject, Body, TemplateData and the seven fields it tests.
    assert_eq!(default.fast_program().unwrap().paths.len(), 12);
    let template = Template::new(
        "paths.jsonnet",
        r#"function(ctx) {
          a: "k" in ctx.a, b: std.objectHas(ctx.a, "k"), c: std.objectHasAll(ctx.a, "k"),
          d: if "x" in ctx then ctx.x else null, e: if "k" in ctx.a then ctx.a.k,
        }"#,
    );
    assert_eq!(template.fast_program().unwrap().paths.len(), 3);
    let mut pair = Pair::new(Limits::default());
    for (ctx, expected) in [
        (
            r#"{"a":{"k":1}}"#,
            Some(r#"{"a":true,"b":true,"c":true,"d":null,"e":1}"#),
        ),
        (
            r#"{"a":{},"x":[1]}"#,
            Some(r#"{"a":false,"b":false,"c":false,"d":[1],"e":null}"#),
        ),
        (r#"{"a":1}"#, None),
        (r#"{"a":null}"#, None),
        (r#"{}"#, None),
        (r#"[]"#, None),
    ] {
        let mut out = String::from("stale");
        let program = template.fast_program().unwrap();
        let fast = super::render(program, CtxRef::Json(ctx), &mut out, &Limits::default());
        match expected {
            Some(e) => assert_eq!(out, e, "{ctx}"),
            None => assert_eq!((fast, out.as_str()), (Err(super::Fallback), ""), "{ctx}"),
        }
        let answered = pair.check(&template, CtxRef::Json(ctx), &|| ctx.to_owned());
        assert_eq!(answered, expected.is_some(), "{ctx}");
    }
}

#[test]
fn shipped_templates_over_every_sample_match_the_evaluator() {
    let mut pair = Pair::new(Limits::default());
    let mut renders = 0;
    for (name, source) in shipped() {
        let template = Template::new(&name, source);
        for (t, kind, message) in samples::all() {
            for style in [CtxStyle::Pascal, CtxStyle::Snake] {
                let value = ctx::build(&message, style);
                let text = ctx::to_json(&message, style);
                let what = || format!("{name} over {} {} ({style:?})", t.as_str(), kind.as_str());
                let a = pair.check(&template, CtxRef::Value(&value), &what);
                let b = pair.check(&template, CtxRef::Json(&text), &what);
                assert_eq!(a, b, "{}", what());
                // A template written for one style over a ctx of that style must render fast.
                let pascal_template = !name.contains("snake");
                if pascal_template == (style == CtxStyle::Pascal) && !name.contains("slack") {
                    assert!(a, "the fast path declined: {}", what());
                }
                renders += 1;
            }
        }
    }
    assert!(renders >= 7 * 20 * 2, "{renders}");
}

#[test]
fn constructs_outside_the_subset_are_named_with_their_location() {
    let cases = [
        (
            "function(ctx) { local o = 'a', [o]: 1 }",
            "an unknown name (o)",
        ),
        ("function(ctx) { a: std.sort(ctx.x) }", "std.sort"),
        ("function(ctx) { a: self.b, b: 1 }", "self"),
        (
            "function(ctx) { a: [x for x in ctx.l], b: {[k]: 1 for k in ['a']} }",
            "an object comprehension",
        ),
        (
            "local f(x) = f(x); function(ctx) f(ctx)",
            "a local used before its value (f)",
        ),
        ("{ a: 1 }", "a top level that is not `function(ctx) ...`"),
    ];
    for (source, construct) in cases {
        let t = Template::new("t.jsonnet", source);
        let why = t.fast_path().expect_err(source);
        assert_eq!(why.construct, construct, "{source}");
        if source.starts_with("function") || source.starts_with("local") {
            assert!(why.location.is_some(), "{source}: {why}");
        }
    }
    // Such templates still render (or fail) through the evaluator.
    let mut pair = Pair::new(Limits::default());
    let value = serde_json::json!({"x": [2, 1], "l": [1]});
    for (source, _) in cases {
        let t = Template::new("t.jsonnet", source);
        pair.check(&t, CtxRef::Value(&value), &|| source.to_owned());
    }
}

#[test]
fn bad_json_in_fields_the_template_never_reads_fails_as_in_the_evaluator() {
    let mut pair = Pair::new(Limits::default());
    let template = Template::new("default.jsonnet", crate::template::DEFAULT_PASCAL);
    let good =
        r#"{"Recipient":"a@b","TemplateType":"stub","Subject":"s","Body":"b","Junk":{"x":[1,2]}}"#;
    assert!(pair.check(&template, CtxRef::Json(good), &|| good.to_owned()));
    for junk in [
        r#"1e400"#,
        r#""\ud800""#,
        r#""tab	inside""#,
        r#"[1,]"#,
        r#"{"a":1,"a":2}"#,
        r#"01"#,
        r#"tru"#,
    ] {
        let text = good.replace(r#"{"x":[1,2]}"#, junk);
        pair.check(&template, CtxRef::Json(&text), &|| text.clone());
    }
    let trailing = format!("{good} x");
    assert!(!pair.check(&template, CtxRef::Json(&trailing), &|| trailing.clone()));
}

/// Random templates of the fast subset, as Jsonnet text.
struct Gen {
    rng: fastrand::Rng,
    locals: Vec<String>,
    next_local: usize,
    has_fn: bool,
}

const KEYS: &[&str] = &["a", "b", "To", "x y", "é", "c_1", ""];

impl Gen {
    fn key(&mut self) -> &'static str {
        KEYS[self.rng.usize(..KEYS.len())]
    }

    fn str_lit(&mut self) -> String {
        const LITS: &[&str] = &["a", "b", "To", "x y", "", "é\\n\\u0001\\\"", "\\t", "ünï"];
        let s = LITS[self.rng.usize(..LITS.len())];
        if self.rng.bool() {
            format!("\"{s}\"")
        } else {
            format!("'{s}'")
        }
    }

    fn path(&mut self) -> String {
        let mut p = String::from("ctx");
        for _ in 0..[0, 1, 1, 1, 2, 2, 3][self.rng.usize(..7)] {
            let k = self.key();
            match self.rng.usize(0..4) {
                0 => p.push_str(&format!("[{k:?}]")),
                1 => p.push_str(&format!("[{}]", self.rng.usize(0..3))),
                _ if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !k.is_empty() => {
                    p.push_str(&format!(".{k}"))
                }
                _ => p.push_str(&format!("[{k:?}]")),
            }
        }
        p
    }

    fn obj(&mut self, depth: usize) -> String {
        let mut s = String::from("{");
        let mark = self.locals.len();
        if self.rng.u8(..6) == 0 {
            let name = format!("o{}", self.next_local);
            self.next_local += 1;
            let v = self.expr(depth + 1);
            s.push_str(&format!("local {name} = {v}, "));
            self.locals.push(name);
        }
        let mut used = Vec::new();
        for _ in 0..self.rng.usize(0..5) {
            let mut k = self.key();
            if used.contains(&k) && self.rng.u8(..8) != 0 {
                continue;
            }
            used.push(k);
            let sep = match self.rng.u8(..8) {
                0 => "::",
                1 => ":::",
                _ => ":",
            };
            // Field names are evaluated outside the object: its locals are not in scope.
            let inner = self.locals.split_off(mark);
            let name = match self.rng.u8(..6) {
                0 => {
                    let c = self.cond(depth + 1);
                    format!("[if {c} then {k:?}]")
                }
                1 => {
                    k = "dyn";
                    let e = self.expr(depth + 1);
                    format!("[{e}]")
                }
                _ => format!("{k:?}"),
            };
            self.locals.extend(inner);
            let v = self.expr(depth + 1);
            s.push_str(&format!("{name}{sep} {v}, "));
        }
        s.push('}');
        self.locals.truncate(mark);
        s
    }

    fn cond(&mut self, depth: usize) -> String {
        let k = self.str_lit();
        match self.rng.u8(..10) {
            0 => format!("{k} in {}", self.path()),
            1 => format!("std.objectHas({}, {k})", self.path()),
            2 => format!("std.objectHasAll({}, {k})", self.expr(depth + 1)),
            3 => format!("({} == {})", self.expr(depth + 1), self.expr(depth + 1)),
            4 => format!("({} != {})", self.expr(depth + 1), self.expr(depth + 1)),
            5 => format!("({} && {})", self.cond(depth + 1), self.cond(depth + 1)),
            6 => format!("({} || {})", self.cond(depth + 1), self.cond(depth + 1)),
            7 => format!("!{}", self.cond(depth + 1)),
            8 => ["true", "false"][self.rng.usize(..2)].to_owned(),
            _ => format!("{k} in ctx"),
        }
    }

    fn expr(&mut self, depth: usize) -> String {
        if depth > 4 {
            return match self.rng.u8(..3) {
                0 => self.str_lit(),
                _ => self.path(),
            };
        }
        match self.rng.u8(..24) {
            0..=5 => self.path(),
            6 | 7 => self.str_lit(),
            8 => [
                "null",
                "true",
                "false",
                "0",
                "-3",
                "1.5",
                "1e3",
                "0.1",
                "12345678901234567890",
            ][self.rng.usize(..9)]
            .to_owned(),
            9 => format!("({} + {})", self.expr(depth + 1), self.expr(depth + 1)),
            10 => format!("({} + {})", self.str_lit(), self.path()),
            11 | 12 => {
                let c = self.cond(depth + 1);
                let t = self.expr(depth + 1);
                if self.rng.u8(..4) == 0 {
                    format!("(if {c} then {t})")
                } else {
                    format!("(if {c} then {t} else {})", self.expr(depth + 1))
                }
            }
            13 => {
                let k = self.str_lit();
                match self.rng.u8(..3) {
                    0 => format!("std.get({}, {k})", self.path()),
                    1 => format!("std.get({}, {k}, {})", self.path(), self.expr(depth + 1)),
                    _ => format!(
                        "std.get({}, {k}, {}, {})",
                        self.obj(depth + 1),
                        self.expr(depth + 1),
                        self.cond(depth + 1)
                    ),
                }
            }
            14 | 15 => {
                let items: Vec<String> = (0..self.rng.usize(0..3))
                    .map(|_| self.expr(depth + 1))
                    .collect();
                format!("[{}]", items.join(", "))
            }
            16..=18 => self.obj(depth),
            19 => self.cond(depth),
            20 if !self.locals.is_empty() => {
                self.locals[self.rng.usize(..self.locals.len())].clone()
            }
            20 | 21 => {
                let name = format!("l{}", self.next_local);
                self.next_local += 1;
                let v = self.expr(depth + 1);
                let mark = self.locals.len();
                self.locals.push(name.clone());
                let body = self.expr(depth + 1);
                self.locals.truncate(mark);
                format!("(local {name} = {v}; {body})")
            }
            22 => match self.rng.u8(..10) {
                3 => {
                    let x = format!("x{}", self.next_local);
                    self.next_local += 1;
                    let over = if self.rng.bool() {
                        self.path()
                    } else {
                        self.expr(depth + 1)
                    };
                    let mark = self.locals.len();
                    self.locals.push(x.clone());
                    let c = self.cond(depth + 1);
                    let body = self.expr(depth + 1);
                    self.locals.truncate(mark);
                    format!("[{body} for {x} in {over} if {c}]")
                }
                4 if self.rng.bool() => format!("std.length({})", self.expr(depth + 1)),
                4 => format!(
                    "(std.length({}) > {})",
                    self.expr(depth + 1),
                    self.rng.u8(..3)
                ),
                5 => format!("std.strReplace({}, 'a', '<&>')", self.expr(depth + 1)),
                6 => format!(
                    "std.join({}, [{}, {}])",
                    self.str_lit(),
                    self.expr(depth + 1),
                    self.str_lit()
                ),
                7 => format!(
                    "std.format('%s-%s %% x', [{}, {}])",
                    self.expr(depth + 1),
                    self.path()
                ),
                8 if self.has_fn => format!("esc({})", self.expr(depth + 1)),
                9 => format!("({} <= {})", self.expr(depth + 1), self.expr(depth + 1)),
                0 => "error 'cancel'".to_owned(),
                1 => format!("error ('bad ' + {})", self.path()),
                _ => format!(
                    "(assert {}; {})",
                    self.cond(depth + 1),
                    self.expr(depth + 1)
                ),
            },
            _ => format!("{}[{}]", self.path(), self.expr(depth + 1)),
        }
    }

    fn template(&mut self) -> String {
        self.locals.clear();
        self.has_fn = self.rng.u8(..3) == 0;
        let body = if self.rng.u8(..4) == 0 {
            self.expr(0)
        } else {
            self.obj(0)
        };
        let prelude = if self.has_fn {
            "local esc(s) = std.strReplace(std.strReplace(s, 'a', '&'), '<', 'é');\n"
        } else {
            ""
        };
        if self.rng.u8(..4) == 0 {
            let v = self.str_lit();
            self.locals.push("top".into());
            let body = if self.rng.bool() {
                body
            } else {
                format!("{{ t: top, r: {body} }}")
            };
            format!("{prelude}local top = {v};\nfunction(ctx)\n  {body}\n")
        } else {
            format!("{prelude}function(ctx)\n  {body}\n")
        }
    }
}

fn random_json(rng: &mut fastrand::Rng, depth: usize) -> Value {
    match rng.u8(..if depth > 3 { 6 } else { 10 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => serde_json::json!(rng.i64(-1000..1000)),
        3 => serde_json::json!([0.5, 1e21, -0.0, 123456789012345680000.0, 1.0e-7][rng.usize(..5)]),
        4 | 5 => {
            const S: &[&str] = &["a", "To", "", "é\n\u{1}\"\\", "x y", "<tag> & 'q'"];
            Value::String(S[rng.usize(..S.len())].to_owned())
        }
        6 | 7 => Value::Array(
            (0..rng.usize(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.usize(0..6) {
                m.insert(
                    KEYS[rng.usize(..KEYS.len())].to_owned(),
                    random_json(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// A ctx whose paths often resolve: every key present at the top, mostly objects of objects.
fn random_ctx(rng: &mut fastrand::Rng) -> Value {
    fn obj(rng: &mut fastrand::Rng, depth: usize) -> Value {
        let mut m = serde_json::Map::new();
        for k in KEYS {
            if rng.u8(..5) != 0 {
                let v = if depth < 2 && rng.u8(..3) != 0 {
                    obj(rng, depth + 1)
                } else {
                    random_json(rng, depth + 1)
                };
                m.insert((*k).to_owned(), v);
            }
        }
        Value::Object(m)
    }
    obj(rng, 0)
}

/// `COURIER_FAST_CASES` sets the number of generated cases (default 3000); `COURIER_FAST_SEED`
/// the seed.
#[test]
fn generated_templates_match_the_evaluator() {
    let cases: usize = std::env::var("COURIER_FAST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("COURIER_FAST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut gen = Gen {
        rng: fastrand::Rng::with_seed(seed),
        locals: Vec::new(),
        next_local: 0,
        has_fn: false,
    };
    let mut ctx_rng = fastrand::Rng::with_seed(seed ^ 0xc7c7);
    let mut pair = Pair::new(Limits::default());
    let mut small = Pair::new(Limits {
        max_output_bytes: 60,
        ..Limits::default()
    });
    let (mut compiled, mut fast, mut renders) = (0, 0, 0);
    for case in 0..cases {
        let source = gen.template();
        let template = Template::new(format!("gen{case}.jsonnet"), source.clone());
        if let Err(e) = template.fast_path() {
            panic!("generated template outside the subset ({e}):\n{source}");
        }
        compiled += 1;
        for _ in 0..3 {
            let value = random_ctx(&mut ctx_rng);
            let text = value.to_string();
            let what = || format!("case {case} (seed {seed})\n{source}\nctx: {text}");
            let p = if ctx_rng.u8(..8) == 0 {
                &mut small
            } else {
                &mut pair
            };
            let a = p.check(&template, CtxRef::Value(&value), &what);
            let b = p.check(&template, CtxRef::Json(&text), &what);
            assert_eq!(a, b, "{}", what());
            // The ctx built by serializing the value (as deliveries build a message's).
            let mut via_view = String::new();
            let program = template.fast_program().unwrap();
            let c = super::render_serialize(program, &value, &mut via_view, p.engine.limits());
            assert_eq!(c.is_ok(), a, "{}", what());
            if c.is_ok() {
                let mut expected = String::new();
                p.evaluator
                    .render_into(&template, CtxRef::Value(&value), &mut expected)
                    .unwrap();
                assert_eq!(via_view, expected, "{}", what());
            }
            fast += usize::from(a);
            renders += 1;
        }
    }
    // The comparison means something only if many renders took the fast path, and many did not.
    eprintln!(
        "{cases} templates, {renders} ctx values in three forms (value, text, serialized): {fast} rendered by the fast path"
    );
    assert_eq!(compiled, cases);
    assert!(
        fast * 4 > renders,
        "only {fast} of {renders} renders were fast"
    );
    assert!(fast < renders, "no render needed the evaluator");
}

/// JSON text with the forms a scanner can get wrong: numbers of every shape and length,
/// escapes (surrogate pairs included), odd whitespace, duplicate keys, deep nesting.
fn random_text(rng: &mut fastrand::Rng, depth: usize, out: &mut String) {
    const WS: &[&str] = &["", "", "", " ", "\n", "\t", "\r\n  "];
    let ws = |rng: &mut fastrand::Rng, out: &mut String| out.push_str(WS[rng.usize(..WS.len())]);
    ws(rng, out);
    let deep = rng.u8(..50) == 0;
    match rng.u8(..if depth > 3 && !deep { 5 } else { 7 }) {
        0 => out.push_str(["null", "true", "false"][rng.usize(..3)]),
        1 | 2 => {
            const NUMS: &[&str] = &[
                "0",
                "-0",
                "7",
                "-12",
                "123456789012345",
                "1234567890123456",
                "9007199254740993",
                "-9223372036854775808",
                "18446744073709551615",
                "18446744073709551616",
                "123456789012345678901234567890",
                "0.5",
                "-0.0",
                "1.7976931348623157e308",
                "1e400",
                "-1e400",
                "2.5E-3",
                "1e+2",
                "4e-400",
                "0.1000000000000000055511151231257827",
                "3.14159265358979323846264338",
                "00",
                "01",
                "1.",
                ".5",
                "-",
                "1e",
                "+1",
                "1.5e+",
                "0x10",
            ];
            out.push_str(NUMS[rng.usize(..NUMS.len())]);
        }
        3 | 4 => {
            const STRS: &[&str] = &[
                "a",
                "",
                "To",
                "é",
                "x y",
                r"\n",
                r#"\""#,
                r"\\",
                r"\/",
                r"\u00e9",
                r"\u0000",
                r"\ud83d\ude00",
                r"\ud800",
                r"\udc00x",
                r"\u12",
                r"\x",
                "\u{1}",
                "\u{7f}",
                r"\b\f\r\t",
                "tab\tin",
            ];
            out.push('"');
            for _ in 0..rng.usize(0..3) {
                out.push_str(STRS[rng.usize(..STRS.len())]);
            }
            out.push('"');
        }
        5 => {
            let n = if deep { 70 } else { rng.usize(0..4) };
            out.push('[');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                random_text(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.usize(0..5) {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                out.push('"');
                out.push_str(KEYS[rng.usize(..KEYS.len())]);
                out.push('"');
                ws(rng, out);
                out.push(':');
                random_text(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
    ws(rng, out);
}

fn random_need(rng: &mut fastrand::Rng, depth: usize) -> super::need::Need {
    use super::need::Need;
    if depth > 2 || rng.u8(..4) == 0 {
        return Need::Full;
    }
    Need::Keys(
        (0..rng.usize(0..3))
            .map(|_| {
                (
                    KEYS[rng.usize(..KEYS.len())].into(),
                    random_need(rng, depth + 1),
                )
            })
            .collect(),
    )
}

/// Node equality with numbers compared by their bits (`-0.0` is not `0.0` here).
fn same_node(a: &super::node::Node<'_>, b: &super::node::Node<'_>) -> bool {
    use super::node::Node;
    match (a, b) {
        (Node::Num(x), Node::Num(y)) => x.to_bits() == y.to_bits(),
        (Node::Arr(x), Node::Arr(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_node(p, q))
        }
        (Node::Obj(x), Node::Obj(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, p), (l, q))| k == l && same_node(p, q))
        }
        _ => a == b,
    }
}

/// The fast scanner against serde_json (the road it steps aside for): whenever the scanner
/// answers, serde_json accepts the same text and builds the same tree, numbers bit for bit.
/// Texts are generated, then sometimes broken by one edit. `COURIER_FAST_CASES` scales it.
#[test]
fn the_ctx_scanner_agrees_with_serde_json() {
    use serde::de::DeserializeSeed as _;
    let cases: usize = std::env::var("COURIER_FAST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
        * 5;
    let mut rng = fastrand::Rng::with_seed(0x5ca9);
    let (mut answered, mut valid) = (0, 0);
    for case in 0..cases {
        let mut text = String::new();
        random_text(&mut rng, 0, &mut text);
        if rng.u8(..4) == 0 && !text.is_empty() {
            // One edit at an ASCII position: delete, or insert a structural character.
            let ascii: Vec<usize> = text
                .char_indices()
                .filter(|(_, c)| c.is_ascii())
                .map(|(i, _)| i)
                .collect();
            if let Some(&at) = ascii.get(rng.usize(..ascii.len().max(1))) {
                if rng.bool() {
                    text.remove(at);
                } else {
                    let c = [',', ':', '"', '\\', '{', ']', '-', 'e', '0', ' '][rng.usize(..10)];
                    text.insert(at, c);
                }
            }
        }
        let need = random_need(&mut rng, 0);
        let mut de = serde_json::Deserializer::from_str(&text);
        let reference = super::node::Seed(&need)
            .deserialize(&mut de)
            .and_then(|n| de.end().map(|()| n));
        valid += usize::from(reference.is_ok());
        if let Some(node) = super::scan::parse(&text, &need) {
            answered += 1;
            match &reference {
                Ok(r) => assert!(
                    same_node(&node, r),
                    "case {case}: {node:?} vs serde_json's {r:?}\n{text}"
                ),
                Err(e) => {
                    panic!("case {case}: scanner accepted what serde_json refuses ({e}):\n{text}")
                }
            }
        }
    }
    eprintln!("{cases} texts, {valid} valid, {answered} answered by the scanner");
    // Most valid texts are plain enough for the scanner.
    assert!(answered * 2 > valid, "{answered} of {valid}");
}

/// The samples' ctx text (what deliveries render from) is all plain: the scanner reads it.
#[test]
fn the_scanner_reads_every_sample_ctx() {
    let template = Template::new("default.jsonnet", crate::template::DEFAULT_PASCAL);
    let program = template.fast_program().unwrap();
    for (name, _, message) in samples::all() {
        for style in [CtxStyle::Pascal, CtxStyle::Snake] {
            let text = ctx::to_json(&message, style);
            assert!(
                super::scan::parse(&text, &program.need).is_some(),
                "{name} ({style:?})"
            );
        }
    }
}

/// A ctx read from the message's view (no JSON text) is the tree read from its text, for every
/// sample in both styles, distinct variants, and every shipped template's need or the whole.
#[test]
fn the_ctx_built_from_a_message_is_the_ctx_read_from_its_text() {
    let samples: Vec<_> = samples::all().map(|(_, _, m)| m).collect();
    let mut needs = vec![super::need::Need::Full];
    for (name, source) in shipped() {
        needs.push(
            Template::new(name, source)
                .fast_program()
                .unwrap()
                .need
                .clone(),
        );
    }
    for i in 0..samples.len() as u64 * 2 {
        let message = samples::distinct(&samples, i);
        for style in [CtxStyle::Pascal, CtxStyle::Snake] {
            let text = ctx::to_json(&message, style);
            for need in &needs {
                let built = super::build::from_serialize(&ctx::view(&message, style), need, true)
                    .expect("a sample's view is plain");
                let read = super::scan::parse(&text, need).unwrap();
                assert!(same_node(&built, &read), "sample {i} ({style:?})");
            }
        }
    }
}

/// Rendering from the message's view gives the evaluator's payload, for every shipped template
/// over every sample; a ctx nested past the scanner's depth is declined (the text road decides).
#[test]
fn rendering_from_a_message_matches_the_evaluator() {
    let mut pair = Pair::new(Limits::default());
    for (name, source) in shipped() {
        let template = Template::new(name.clone(), source);
        for (ty, kind, message) in samples::all() {
            for style in [CtxStyle::Pascal, CtxStyle::Snake] {
                let (expected, fast) = pair.over_message(&template, &message, style);
                let what = format!("{name} over {ty:?}/{kind:?} ({style:?})");
                match (fast, expected) {
                    (Ok(got), Some(expected)) => assert_eq!(got, expected, "{what}"),
                    (Ok(_), None) => {
                        panic!("fast path rendered where the evaluator failed: {what}")
                    }
                    (Err(_), ok) => {
                        assert!(ok.is_none(), "fast path declined a good render: {what}")
                    }
                }
            }
        }
    }
    let (_, _, mut message) = samples::all().next().unwrap();
    let mut deep = Value::Null;
    for _ in 0..70 {
        deep = serde_json::json!({ "a": deep });
    }
    message
        .request_headers
        .get_or_insert_with(Default::default)
        .insert("x".into(), deep);
    let template = Template::new("default.jsonnet", crate::template::DEFAULT_PASCAL);
    let view = ctx::view(&message, CtxStyle::Pascal);
    let need = &template.fast_program().unwrap().need;
    assert!(super::build::from_serialize(&view, need, true).is_none());
}

/// A message whose JSON values nest within the bound renders from its view without walking the
/// unread ones, as the evaluator renders it; past the bound they are walked, and one nested
/// deeper than the build takes is declined (the text road decides).
#[test]
fn message_values_nested_near_the_bound_render_as_the_evaluator_does() {
    let mut pair = Pair::new(Limits::default());
    let template = Template::new("default.jsonnet", crate::template::DEFAULT_PASCAL);
    let (_, _, sample) = samples::all().next().unwrap();
    let bound = super::VALUE_LEVELS;
    for levels in [0, 1, bound - 1, bound, bound + 1, bound + 2, bound + 3, 70] {
        let mut deep = Value::Null;
        for _ in 0..levels {
            deep = serde_json::json!({ "a": deep });
        }
        let mut message = sample.clone();
        message
            .request_headers
            .get_or_insert_with(Default::default)
            .insert("x".into(), deep);
        assert_eq!(ctx::values_within(&message, bound), levels <= bound);
        let (expected, fast) = pair.over_message(&template, &message, CtxStyle::Pascal);
        match &fast {
            Ok(got) => {
                let expected = expected.unwrap_or_else(|| {
                    panic!("the evaluator failed at {levels} levels");
                });
                assert_eq!(got, &expected, "{levels} levels");
            }
            Err(_) => assert!(levels > bound, "declined at {levels} levels"),
        }
        if levels == 70 {
            assert!(fast.is_err(), "nested past what the build takes");
        }
    }
}
