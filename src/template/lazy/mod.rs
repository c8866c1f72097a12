//! Lazy conversion of a JSON-text ctx into Jsonnet values.
//!
//! Templates read a handful of ctx fields, but a ctx carries much more (the whole identity, the
//! request headers, both bodies); converting all of it into jrsonnet values up front would be most
//! of the cost of a render. This module owns the JSON-text path of [`super::CtxRef::Json`]: the text
//! is validated once, copied once into a buffer shared through an `Rc`, and every JSON object
//! becomes a jrsonnet object whose fields are thunks over byte ranges of that buffer. A field is
//! converted only when the template (or the manifest writer) reads it, and an object read that
//! way is itself lazy. Arrays are converted when their field is read, element by element (object
//! elements are lazy objects); scalars are converted exactly as jrsonnet's own `Val::deserialize`
//! converts them. (`CtxRef::Value` stays eager: its text is already parsed.)
//!
//! The result must be indistinguishable from eager `Val::deserialize` of the same text, errors
//! included, so nothing may fail later, when a field is read. Validation therefore happens up
//! front and accepts exactly what serde_json accepts: a fast scanner (`plainly_valid`) passes
//! ordinary JSON, and anything it is unsure about (exponents, long numbers, surrogate escapes,
//! deep nesting, and every error) goes through a full serde_json parse that builds nothing but
//! reports exactly what eager conversion reported. Once the text is known to be valid, objects
//! and arrays are walked with a plain skipping scanner; numbers and strings with escapes are
//! still decoded by serde_json. The scanners live in `scan.rs`; this file holds the thunks.

use std::ops::Range;
use std::rc::Rc;

use jrsonnet_evaluator::error::{Error as JError, ErrorKind};
use jrsonnet_evaluator::val::ThunkValue;
use jrsonnet_evaluator::{IStr, ObjValueBuilder, Val};
use jrsonnet_gcmodule::Trace;
use serde::de::{Deserialize as _, Error as _};

pub(super) mod scan;

use scan::{plainly_valid, skip_string, skip_value, skip_ws, Validated};

/// Converts the JSON `text` into a Jsonnet value whose objects convert their fields on first
/// read.
///
/// # Errors
/// `text` is not JSON, or is JSON that eager conversion rejects (a number out of range, a lone
/// surrogate escape, nesting past serde_json's recursion limit): the error is serde_json's, with
/// its line and column, exactly as eager conversion reported it.
pub(super) fn ctx_from_json(text: &str) -> Result<Val, serde_json::Error> {
    let mut containers = Vec::new();
    if !plainly_valid(text.as_bytes(), &mut containers) {
        containers.clear();
        serde_json::from_str::<Validated>(text)?;
    }
    let start = skip_ws(text.as_bytes(), 0);
    let end = text.trim_end_matches([' ', '\t', '\n', '\r']).len();
    // Copied once per render: thunks outlive the borrowed text (the GC may keep them until the
    // next cycle collection), and an `Rc` lets every thunk share the copy.
    let src = Rc::new(Source {
        text: text.to_owned(),
        containers,
    });
    convert(&src, start..end)
}

/// The ctx text shared by every lazy value of one render.
struct Source {
    text: String,
    /// Where each object and array starts and ends, ordered by start, when the fast scanner
    /// saw the text (else empty, and containers are skipped by scanning them): without it,
    /// reading a field means scanning past every sibling, nested identity included.
    containers: Vec<(usize, usize)>,
}

impl Source {
    /// `text[range]`, as an error rather than a panic if the range is not on character
    /// boundaries (it always is for validated text: ranges start and end at ASCII delimiters).
    fn text(&self, range: Range<usize>) -> Result<&str, serde_json::Error> {
        self.text
            .get(range)
            .ok_or_else(|| serde_json::Error::custom("internal error: value range out of bounds"))
    }

    /// Past the value starting at `i` (validated text, no leading whitespace).
    fn skip_value(&self, i: usize) -> usize {
        match self
            .containers
            .binary_search_by_key(&i, |&(start, _)| start)
        {
            Ok(k) => self.containers.get(k).map_or(i, |&(_, end)| end),
            Err(_) => skip_value(self.text.as_bytes(), i),
        }
    }
}

/// Converts the JSON value at `range` of `src` (validated text, no surrounding whitespace).
fn convert(src: &Rc<Source>, range: Range<usize>) -> Result<Val, serde_json::Error> {
    let bytes = src.text.as_bytes();
    match bytes.get(range.start) {
        Some(b'{') => lazy_object(src, range.start),
        Some(b'[') => {
            let mut items = Vec::new();
            let mut i = skip_ws(bytes, range.start + 1);
            while bytes.get(i).is_some_and(|&b| b != b']') {
                let end = src.skip_value(i);
                items.push(convert(src, i..end)?);
                i = skip_ws(bytes, end);
                if bytes.get(i) == Some(&b',') {
                    i = skip_ws(bytes, i + 1);
                }
            }
            Ok(Val::arr(items))
        }
        Some(b'n') => Ok(Val::Null),
        Some(b't') => Ok(Val::Bool(true)),
        Some(b'f') => Ok(Val::Bool(false)),
        Some(b'"') if !bytes.get(range.clone()).is_some_and(|s| s.contains(&b'\\')) => {
            // Without escapes the string is its text between the quotes, which is also what
            // serde_json hands to the visitor.
            Ok(Val::string(
                src.text(range.start + 1..range.end.saturating_sub(1))?,
            ))
        }
        // Numbers and escaped strings: serde_json decodes them, as in eager conversion.
        _ => Val::deserialize(&mut serde_json::Deserializer::from_str(src.text(range)?)),
    }
}

/// A jrsonnet object over the JSON object starting at `start`: keys now, values on read.
fn lazy_object(src: &Rc<Source>, start: usize) -> Result<Val, serde_json::Error> {
    let bytes = src.text.as_bytes();
    let mut members: Vec<(IStr, Range<usize>)> = Vec::new();
    let mut i = skip_ws(bytes, start + 1);
    while bytes.get(i) == Some(&b'"') {
        let (key_end, escaped) = skip_string(bytes, i);
        let key = if escaped {
            IStr::from(serde_json::from_str::<String>(src.text(i..key_end)?)?)
        } else {
            IStr::from(src.text(i + 1..key_end.saturating_sub(1))?)
        };
        // Past the key, the whitespace and the colon.
        let value_start = skip_ws(bytes, skip_ws(bytes, key_end) + 1);
        let value_end = src.skip_value(value_start);
        members.push((key, value_start..value_end));
        i = skip_ws(bytes, value_end);
        if bytes.get(i) == Some(&b',') {
            i = skip_ws(bytes, i + 1);
        }
    }
    let mut builder = ObjValueBuilder::with_capacity(members.len());
    for (key, range) in members {
        // `thunk` replaces an earlier field of the same name, as eager conversion's `value`
        // does: with duplicate keys the last one wins.
        builder.field(key).thunk(LazyField {
            src: Rc::clone(src),
            range,
        });
    }
    Ok(Val::Obj(builder.build()))
}

/// A field of a lazy object: the byte range of its value in the ctx text.
#[derive(Trace)]
struct LazyField {
    #[trace(skip)]
    src: Rc<Source>,
    #[trace(skip)]
    range: Range<usize>,
}

impl ThunkValue for LazyField {
    type Output = Val;

    // Not memoised here: objects cache their field values, so this runs once per field read.
    fn get(&self) -> jrsonnet_evaluator::Result<Val> {
        convert(&self.src, self.range.clone()).map_err(|e| {
            // Unreachable for text that passed validation; kept as a clear error rather than a
            // panic.
            JError::from(ErrorKind::RuntimeError(
                format!("ctx is not valid JSON: {e}").into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ctx, samples, CtxStyle, MessageType, TemplateType};
    use crate::template::manifest::Writer;
    use crate::template::{default_template, Engine, Limits, RenderErrorKind, Template};

    /// A ctx exercising what conversion must preserve: escapes and unicode in keys and values,
    /// numbers, nulls, empty and nested containers, arrays of objects, duplicate keys,
    /// structurally equal parts, odd whitespace. The fast scanner accepts it; [`with_extra`]
    /// makes one that only serde_json can validate.
    const CTX: &str = r#" {
        "Recipient": "a@b.c",
        "Subject": "Héllo \"quoted\" \\ back\nslash \/ \u00e9 \u0001 tab\t 😀",
        "Body": "",
        "Num": {"int": 42, "neg": -7, "zero": 0, "negzero": -0, "negzerof": -0.0,
                "frac": 0.1, "huge": 12345678901234567890, "long": 0.30000000000000004,
                "i64": -9223372036854775808},
        "Flags": [true, false, null],
        "Null": null,
        "Empty": {}, "EmptyArr": [ ],
        "Nested": {"a": {"b": {"c": [1, [2, [3, {"d": "e"}]]], "f": []}}},
        "List": [{"id": 1, "tags": ["x"]}, {"id": 2, "tags": []}, {"id": 3}, [], {}],
        "Dup": {"k": 1, "k": 2, "j": {"x": 1}, "j": {"y": 2}},
        "Same1": {"a": [1, {"b": "c"}], "n": null},
        "Same2": {"n": null, "a": [1, {"b": "c"}]},
        "Esc\"aped \u006b\u0065y": "v", "": "empty key", "ключ": "юникод",
        "Identity": {"id": "x", "traits": {"email": "a@b.c", "name": {"first": "J"}},
                     "addresses": [{"value": "a@b.c", "verified": true}]}
    }
"#;

    /// `CTX` with numbers in exponent form and a surrogate pair escape, which the fast scanner
    /// leaves to serde_json.
    fn with_extra() -> String {
        let extra = r#""Extra": {"big": 1e300, "small": 1e-300, "exp": 2.5E+3,
            "max": 1.7976931348623157e308, "pair": "\ud83d\ude00 x"},"#;
        CTX.replacen("\"Recipient\"", &format!("{extra} \"Recipient\""), 1)
    }

    /// Both forms of the test ctx, each in its original layout, compact, pretty-printed, and
    /// with CRLF line ends and tabs.
    fn ctx_texts() -> Vec<String> {
        let mut texts = Vec::new();
        for text in [CTX.to_owned(), with_extra()] {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            texts.push(pretty.replace('\n', "\r\n\t"));
            texts.push(pretty);
            texts.push(serde_json::to_string(&value).unwrap());
            texts.push(text);
        }
        assert!(plainly_valid(CTX.as_bytes(), &mut Vec::new()));
        assert!(!plainly_valid(with_extra().as_bytes(), &mut Vec::new()));
        texts
    }

    const TEMPLATES: &[&str] = &[
        "function(ctx) ctx",
        "function(ctx) {m: std.manifestJson(ctx), x: std.manifestJsonEx(ctx, '  '), s: std.toString(ctx)}",
        "function(ctx) {f: std.objectFields(ctx), fa: std.objectFieldsAll(ctx), n: std.length(ctx), \
         l: std.length(ctx.List), le: std.length(ctx.Empty), la: std.length(ctx.EmptyArr), \
         d: std.length(ctx.Dup), df: std.objectFields(ctx.Dup)}",
        "function(ctx) {has: ['Subject' in ctx, 'Nope' in ctx, 'k' in ctx.Dup, \
         std.objectHas(ctx, 'Null'), std.objectHasAll(ctx, 'Empty'), std.objectHas(ctx.Empty, 'x'), \
         'id' in ctx.List[2], 'tags' in ctx.List[2]]}",
        "function(ctx) {eq: ctx.Same1 == ctx.Same2, ne: ctx.Same1 == ctx.Dup, me: ctx == ctx, \
         arr: ctx.List == ctx.List, parsed: ctx == std.parseJson(std.manifestJson(ctx)), \
         ids: std.map(function(x) std.get(x, 'id', null), ctx.List), \
         tags: [x.tags for x in ctx.List if std.isObject(x) && 'tags' in x]}",
        "function(ctx) {n: ctx.Num, sum: ctx.Num.int + ctx.Num.frac, \
         sign: [std.sign(ctx.Num.negzero), std.sign(ctx.Num.negzerof)], huge: ctx.Num.huge, \
         long: ctx.Num.long, t: std.type(ctx.Num.i64), vals: std.objectValues(ctx.Num), \
         extra: if 'Extra' in ctx then [std.toString(ctx.Extra.big), ctx.Extra.small, ctx.Extra.max, \
         ctx.Extra.exp, std.length(ctx.Extra.pair), ctx.Extra.pair] else null}",
        "function(ctx) {s: ctx.Subject, len: std.length(ctx.Subject), \
         cps: std.map(std.codepoint, std.stringChars(ctx.Subject)), k: ctx['Esc\"aped key'], \
         e: ctx[''], u: ctx['ключ'], flags: ctx.Flags, nul: ctx.Null, body: ctx.Body}",
        "function(ctx) {plus: ctx.Nested + {x: 1}, ext: ctx.Nested { a+: {z: 1} }, \
         patch: std.mergePatch(ctx.Dup, {j: null}), types: {[k]: std.type(ctx[k]) for k in std.objectFields(ctx)}, \
         pruned: std.prune(ctx), deep: ctx.Nested.a.b.c[1][1][1].d, kv: std.objectKeysValues(ctx.Same1)}",
        "function(ctx) {id: ctx.Identity.traits.name, addr: ctx.Identity.addresses[0].verified, \
         sorted: std.sort(std.objectFields(ctx.Identity)), dup: ctx.Dup}",
        "function(ctx) {missing: ctx.Missing}",
        "function(ctx) {missing: ctx.Identity.traits.nope}",
        "function(ctx) {bad: ctx.Subject + 1}",
    ];

    /// Renders `template` over `text` both lazily (JSON text) and eagerly (the parsed value)
    /// and asserts identical outcomes, errors included.
    fn assert_same_render(engine: &mut Engine, template: &str, text: &str) {
        let t = Template::new("t.jsonnet", template);
        let value: serde_json::Value = serde_json::from_str(text).expect("test ctx is JSON");
        let lazy = engine.render_json(&t, text).map_err(|e| e.to_string());
        let eager = engine.render(&t, &value).map_err(|e| e.to_string());
        assert_eq!(lazy, eager, "template {template}");
    }

    #[test]
    fn renders_like_eager_conversion() {
        let mut engine = Engine::new(Limits::default()).unwrap();
        for text in ctx_texts() {
            for template in TEMPLATES {
                assert_same_render(&mut engine, template, &text);
            }
        }
    }

    #[test]
    fn errors_in_fields_read_lazily_match_eager_ones() {
        let mut engine = Engine::new(Limits::default()).unwrap();
        let t = Template::new("t.jsonnet", "function(ctx) {missing: ctx.Missing}");
        let err = engine.render_json(&t, CTX).unwrap_err();
        assert_eq!(err.field(), Some("missing"));
        assert!(err.message().contains("no such field: Missing"), "{err}");
    }

    #[test]
    fn top_level_values_of_every_kind() {
        let mut engine = Engine::new(Limits::default()).unwrap();
        for text in [
            "[1, {\"a\": [2, {\"b\": null}]}, [], {}]",
            "\"str\\u00e9\"",
            "\"plain\"",
            "null",
            "true",
            "false",
            "3.5",
            "-0",
            "1e300",
            "{}",
            "[]",
            " \n {\"a\" : 1 , \"b\":[ 1 ,2 ] } \r\n",
        ] {
            assert_same_render(&mut engine, "function(ctx) {c: ctx}", text);
            assert_same_render(&mut engine, "function(ctx) std.manifestJson(ctx)", text);
        }
    }

    #[test]
    fn default_templates_render_like_eager_conversion() {
        let mut engine = Engine::new(Limits::default()).unwrap();
        for style in [CtxStyle::Pascal, CtxStyle::Snake] {
            let t = default_template(style);
            for kind in [
                TemplateType::RecoveryCodeValid,
                TemplateType::VerificationValid,
            ] {
                let Some(message) = samples::message(kind, MessageType::Email) else {
                    continue;
                };
                let text = ctx::to_json(&message, style);
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                let lazy = engine.render_json(&t, &text).unwrap();
                assert_eq!(lazy, engine.render(&t, &value).unwrap());
                assert_same_render(&mut engine, "function(ctx) ctx", &text);
            }
        }
    }

    /// The error eager conversion reported for `text`, if any.
    fn eager(text: &str) -> Result<Val, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        Val::deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| e.to_string())
    }

    fn manifest(val: &Val) -> String {
        let mut out = String::new();
        let mut writer = Writer::new(&mut out, 1 << 30);
        assert!(writer.write(val).is_ok(), "manifest failed");
        out
    }

    /// Lazy and eager conversion of `text` agree: same value, or same error.
    fn assert_same_conversion(text: &str) {
        let lazy = ctx_from_json(text).map_err(|e| e.to_string());
        match (eager(text), lazy) {
            (Ok(a), Ok(b)) => assert_eq!(manifest(&a), manifest(&b), "text {text:?}"),
            (Err(a), Err(b)) => assert_eq!(a, b, "text {text:?}"),
            (a, b) => panic!(
                "text {text:?}: eager {:?}, lazy {:?}",
                a.map(|v| manifest(&v)),
                b.map(|v| manifest(&v))
            ),
        }
    }

    const INVALID: &[&str] = &[
        "",
        "   ",
        "{",
        "}",
        "[1,]",
        "[1 2]",
        "{\"a\":}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{,}",
        "{'a': 1}",
        "{a: 1}",
        "{\"a\":1}x",
        "{\"a\":1} {}",
        "\"unterminated",
        "\"\\x\"",
        "\"\\u12G4\"",
        "\"\\ud800\"",
        "{\"a\": \"\\udc00\"}",
        "{\"a\": \"\\ud83d\\u0041\"}",
        "{\"a\": \"\\ud83d\"}",
        "{\"a\": \"raw \u{1} control\"}",
        "{\"a\": 1e400}",
        "{\"a\": -1e400}",
        "01",
        "{\"a\": 01}",
        "-",
        "1.",
        "1.e5",
        ".5",
        "+1",
        "1e",
        "1e+",
        "NaN",
        "Infinity",
        "tru",
        "nul",
        "falsey",
        "[true false]",
    ];

    #[test]
    fn invalid_json_fails_up_front_as_eager_conversion_did() {
        let deep_ok = format!("{}1{}", "[".repeat(127), "]".repeat(127));
        let too_deep = format!("{}1{}", "[".repeat(128), "]".repeat(128));
        let deep_obj = format!("{}1{}", "{\"a\":".repeat(130), "}".repeat(130));
        let mut engine = Engine::new(Limits::default()).unwrap();
        let t = Template::new("t.jsonnet", "function(ctx) {a: 1}");
        for text in INVALID
            .iter()
            .copied()
            .chain([too_deep.as_str(), deep_obj.as_str()])
        {
            let expected = eager(text).expect_err(text);
            assert_same_conversion(text);
            let err = engine.render_json(&t, text).unwrap_err();
            assert_eq!(err.kind(), RenderErrorKind::Runtime);
            assert_eq!(err.message(), format!("ctx is not valid JSON: {expected}"));
        }
        // Invalid content in a field the template never reads still fails.
        let err = engine
            .render_json(&t, "{\"a\": 1, \"unread\": [1, \"\\ud800\"]}")
            .unwrap_err();
        assert!(
            err.message().starts_with("ctx is not valid JSON: "),
            "{err}"
        );
        assert_same_conversion(&deep_ok);
    }

    #[test]
    fn converts_like_eager_conversion() {
        for text in ctx_texts() {
            assert_same_conversion(&text);
        }
        for text in [
            "{\"a\":{\"b\":[{\"c\":{}},[[]]]},\"d\":\"\\\"}\"}",
            "[{}, [{}]]",
        ] {
            assert_same_conversion(text);
        }
    }

    /// Writes a random JSON value: every kind, with keys that repeat, escapes of every form,
    /// numbers the fast scanner leaves to serde_json, and random whitespace.
    fn random_json(rng: &mut fastrand::Rng, depth: usize, out: &mut String) {
        const WS: &[&str] = &["", "", " ", "\n", "\t", "\r\n  "];
        const KEYS: &[&str] = &["a", "b", "id", "é", "", "k\\\"q", "\\u0041", "a"];
        const CHUNKS: &[&str] = &[
            "x",
            "hello",
            "é",
            "😀",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\u00e9",
            "\\ud83d\\ude00",
            "\\u0000",
            " ",
            "\\t",
            "}]",
            "\\b\\f\\r",
        ];
        const NUMBERS: &[&str] = &[
            "0",
            "-0",
            "1",
            "-7",
            "0.1",
            "-0.0",
            "42",
            "1e3",
            "1E-3",
            "2.5e+10",
            "1e300",
            "-1e-300",
            "0.30000000000000004",
            "12345678901234567890",
            "9007199254740993",
            "123456789012345678901234567890123456789012345",
            "1e-400",
        ];
        let ws = |rng: &mut fastrand::Rng| WS[rng.usize(..WS.len())];
        let kind = if depth > 4 { rng.u8(2..6) } else { rng.u8(..6) };
        match kind {
            0 | 1 => {
                let (open, close) = if kind == 0 { ('{', '}') } else { ('[', ']') };
                out.push(open);
                for n in 0..rng.usize(..5) {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(ws(rng));
                    if kind == 0 {
                        out.push('"');
                        out.push_str(KEYS[rng.usize(..KEYS.len())]);
                        out.push('"');
                        out.push_str(ws(rng));
                        out.push(':');
                        out.push_str(ws(rng));
                    }
                    random_json(rng, depth + 1, out);
                    out.push_str(ws(rng));
                }
                out.push(close);
            }
            2 => {
                out.push('"');
                for _ in 0..rng.usize(..4) {
                    out.push_str(CHUNKS[rng.usize(..CHUNKS.len())]);
                }
                out.push('"');
            }
            3 => out.push_str(NUMBERS[rng.usize(..NUMBERS.len())]),
            _ => out.push_str(["true", "false", "null"][rng.usize(..3)]),
        }
    }

    /// Random JSON, a third of it then damaged by one edit: the fast scanner must never accept
    /// what serde_json rejects, and lazy conversion must agree with eager conversion on every
    /// text (same value, or same error message).
    #[test]
    fn random_json_converts_like_eager_conversion() {
        const PIECES: &[&str] = &[
            "{", "}", "[", "]", "\"", ",", ":", "\\", " ", "0", "-", "+", ".", "e", "t", "\\u",
            "\\ud800", "\u{1}", "é", "1e400",
        ];
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let (mut plain, mut valid_count, total) = (0, 0, 3000);
        for _ in 0..total {
            let mut text = String::new();
            random_json(&mut rng, 0, &mut text);
            if rng.u8(..3) == 0 {
                let mut at = rng.usize(..=text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + rng.usize(..3)).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, PIECES[rng.usize(..PIECES.len())]);
            }
            let valid = serde_json::from_str::<Validated>(&text).is_ok();
            if plainly_valid(text.as_bytes(), &mut Vec::new()) {
                assert!(valid, "fast scanner accepted invalid {text:?}");
                plain += 1;
            }
            valid_count += usize::from(valid);
            assert_same_conversion(&text);
        }
        // Enough of each kind for the comparisons to mean something.
        assert!(
            plain > total / 10 && valid_count > plain + total / 10 && valid_count < total * 9 / 10,
            "{plain} plainly valid, {valid_count} valid of {total}"
        );
    }

    #[test]
    fn fast_scanner_records_container_bounds() {
        let text = " {\"a\": [1, {\"b\": \"]}\"}], \"c\": {}} ";
        let mut containers = Vec::new();
        assert!(plainly_valid(text.as_bytes(), &mut containers));
        for &(start, end) in &containers {
            assert_eq!(skip_value(text.as_bytes(), start), end, "{start}..{end}");
        }
        assert_eq!(containers.len(), 4);
    }
}
