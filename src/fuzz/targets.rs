//! The fuzz targets and their properties, one `#[test]` each.

use serde_json::Value;

use super::run;
use crate::config::Config;
use crate::encode;
use crate::message::{ctx, samples, CtxStyle, Message};
use crate::service::api::parse_messages;
use crate::smtp::SmtpUri;
use crate::template::{Engine, Limits, RenderErrorKind, Template};

const JSON_DICT: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "null",
    "true",
    "1e400",
    "-0",
    "\\u0000",
    "\\ud800",
    "\"recipient\":",
    "\"Recipient\":",
    "\"template_type\":",
    "\"TemplateType\":",
    "\"template_data\":{",
    "\"TemplateData\":{",
    "\"message_type\":\"sms\"",
    "\"request_headers\":",
    "\"stub\"",
    "\"login_code_valid\"",
    "\"identity\":",
];

/// Every sample message in both ctx styles and as stored.
fn sample_texts() -> Vec<Vec<u8>> {
    samples::all()
        .flat_map(|(_, _, m)| {
            [
                ctx::to_json(&m, CtxStyle::Snake).into_bytes(),
                ctx::to_json(&m, CtxStyle::Pascal).into_bytes(),
            ]
        })
        .collect()
}

/// Messages in either key style: an error or a message whose ctx, in either style, is JSON that
/// reads back as the same ctx; and a message survives its own serialization.
#[test]
fn fuzz_message() {
    run("message", JSON_DICT, sample_texts(), || {
        Box::new(|input| {
            let m = match Message::from_json(input) {
                Ok(m) => m,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return;
                }
            };
            for style in [CtxStyle::Snake, CtxStyle::Pascal] {
                let text = ctx::to_json(&m, style);
                let value: Value = serde_json::from_str(&text).expect("a ctx is JSON");
                assert_eq!(value, ctx::build(&m, style), "to_json and build agree");
                let back = Message::from_json(text.as_bytes()).expect("a ctx reads back");
                assert_eq!(
                    ctx::to_json(&back, style),
                    text,
                    "the ctx of a ctx read back is the same ctx"
                );
            }
            let stored = serde_json::to_vec(&m).expect("a message serializes");
            let again = Message::from_json(&stored).expect("a serialized message reads back");
            assert_eq!(again, m);
        })
    });
}

/// The API's request bodies: a clear error, or messages with recipients; a message accepted
/// alone is accepted the same inside an array.
#[test]
fn fuzz_api_request() {
    run("api_request", JSON_DICT, sample_texts(), || {
        Box::new(|input| match parse_messages(input) {
            Err(e) => assert!(!e.is_empty()),
            Ok((messages, single)) => {
                assert!(messages.iter().all(|m| !m.recipient.trim().is_empty()));
                if single {
                    assert_eq!(messages.len(), 1);
                    let mut array = b"[".to_vec();
                    array.extend_from_slice(input);
                    array.push(b']');
                    match parse_messages(&array) {
                        Ok((again, single)) => {
                            assert!(!single);
                            assert_eq!(again, messages);
                        }
                        // The array is one level deeper than serde_json's nesting limit allows.
                        Err(e) if e.contains("recursion limit exceeded") => {}
                        Err(e) => panic!("one message in an array is refused: {e}"),
                    }
                }
            }
        })
    });
}

const CONFIG_DICT: &[&str] = &[
    "courier:\n",
    "  channels:\n",
    "    - id: sms\n",
    "      type: http\n",
    "      request_config:\n",
    "        url: ",
    "http://127.0.0.1:1/x",
    "        body: ",
    "base64://ZnVuY3Rpb24oY3R4KSBjdHg=",
    "file://./x.jsonnet",
    "  smtp:\n",
    "    connection_uri: ",
    "smtps://u:p@h:465/",
    "  delivery_strategy: ",
    "jsonnet_courier:\n",
    "  template:\n",
    "    max_stack: ",
    "${VAR}",
    "${}",
    "_file: ",
    ": ",
    "- ",
    "&a ",
    "*a",
    "!!binary ",
    "'",
    "\"",
    "\n",
    "  ",
    "{",
    "}",
    "[",
    "]",
    "~",
    "null",
    "-1",
    "1e400",
    "0x10",
];

/// Configuration text, YAML and JSON: loads, or fails with key-path errors; never panics.
#[test]
fn fuzz_config() {
    let seeds = samples_of_config();
    run("config", CONFIG_DICT, seeds, || {
        Box::new(|input| {
            let text = String::from_utf8_lossy(input);
            let json = text.trim_start().starts_with('{');
            let env = |name: &str| (name == "VAR").then(|| "value".to_owned());
            if let Err(e) = Config::parse(&text, json, None, &env) {
                assert!(!e.to_string().is_empty());
            }
        })
    });
}

/// The configs shipped with the tests, as extra seeds.
fn samples_of_config() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    ["golden", "compose"]
        .iter()
        .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        })
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() < 16 * 1024)
        .collect()
}

/// Form encoding: an error, or `k=v` pairs that decode to the object's strings, sorted by key.
#[test]
fn fuzz_form() {
    run("form", JSON_DICT, Vec::new(), || {
        Box::new(|input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            let encoded = match encode::form(text) {
                Ok(e) => e,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return;
                }
            };
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
                panic!("encoded something that is not an object");
            };
            let mut want: Vec<(String, String)> = map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    Value::Null => (k, String::new()),
                    other => panic!("encoded a field of kind {other}"),
                })
                .collect();
            want.sort();
            assert!(encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~%+=&".contains(&b)));
            let got: Vec<(String, String)> = url::form_urlencoded::parse(encoded.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if want.is_empty() {
                assert_eq!(encoded, "");
            } else {
                assert_eq!(got, want, "{encoded}");
            }
        })
    });
}

/// Templates that read the ctx in different ways: whole, by field list, one field, deep.
const LAZY_TEMPLATES: &[&str] = &[
    "function(ctx) ctx",
    "function(ctx) if std.isObject(ctx) then std.objectFields(ctx) else [ctx]",
    "function(ctx) if std.isObject(ctx) && 'a' in ctx then {a: ctx.a} else {}",
    "function(ctx) if std.isObject(ctx) && 'Recipient' in ctx then {to: ctx.Recipient, d: ctx.TemplateData} else {n: std.length(std.toString(ctx))}",
    "function(ctx) std.manifestJsonEx(ctx, ' ')",
];

/// The lazy ctx (JSON text) against eager conversion (the parsed value): the same output or
/// the same error, for every template; text that is not JSON is refused as such.
#[test]
fn fuzz_lazy_ctx() {
    let mut seeds = sample_texts();
    seeds.push(br#"{"a": {"b": [1, 2.5, -0, 1e300, "\u00e9\ud83d\ude00"], "a": null}}"#.to_vec());
    run("lazy_ctx", JSON_DICT, seeds, || {
        let mut engine = Engine::new(Limits::default()).expect("an engine");
        let templates: Vec<Template> = LAZY_TEMPLATES
            .iter()
            .enumerate()
            .map(|(i, t)| Template::new(format!("t{i}.jsonnet"), *t))
            .collect();
        Box::new(move |input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            let value = serde_json::from_str::<Value>(text);
            for t in &templates {
                let lazy = engine.render_json(t, text);
                match &value {
                    Ok(v) => {
                        let eager = engine.render(t, v).map_err(|e| e.to_string());
                        assert_eq!(lazy.map_err(|e| e.to_string()), eager, "{}", t.source());
                    }
                    Err(_) => {
                        let e = lazy.expect_err("invalid JSON is refused");
                        assert_eq!(e.kind(), RenderErrorKind::Runtime);
                        assert!(e.message().starts_with("ctx is not valid JSON: "), "{e}");
                    }
                }
            }
        })
    });
}

const SMTP_DICT: &[&str] = &[
    "smtp://",
    "smtps://",
    "://",
    "@",
    ":",
    "[::1]",
    "127.0.0.1",
    "%40",
    "%",
    "%zz",
    "?",
    "&",
    "=",
    "skip_ssl_verify=true",
    "disable_starttls=true",
    "server_name=",
    "legacy_ssl=",
    "65536",
    "0",
    "#",
    "/",
    "user",
    "Pa55w0rd-S3cret",
];

/// SMTP connection URIs: an error or a URI; neither the error nor the URI as displayed shows
/// the password; a URI without password reads back from its display as itself.
#[test]
fn fuzz_smtp_uri() {
    run("smtp_uri", SMTP_DICT, Vec::new(), || {
        Box::new(|input| {
            let text = String::from_utf8_lossy(input);
            let password = url::Url::parse(text.trim())
                .ok()
                .and_then(|u| u.password().map(str::to_owned))
                // Only a password that appears nowhere else in the URI (not in the host, say)
                // can be told apart in what is shown.
                .filter(|p| p.len() >= 6 && text.matches(p.as_str()).count() == 1);
            match SmtpUri::parse(&text) {
                Err(e) => {
                    assert!(!e.0.is_empty());
                    if let Some(p) = &password {
                        assert!(
                            !e.0.contains(p.as_str()),
                            "the error shows the password: {e}"
                        );
                    }
                }
                Ok((uri, _)) => {
                    let shown = uri.to_string();
                    if let Some(p) = &password {
                        assert!(!shown.contains(p.as_str()), "{shown}");
                    }
                    if uri.password.is_none() {
                        let (again, _) = SmtpUri::parse(&shown)
                            .unwrap_or_else(|e| panic!("{shown} does not read back: {e}"));
                        assert_eq!(again, uri, "{shown}");
                    }
                }
            }
        })
    });
}

const JSONNET_DICT: &[&str] = &[
    "function(ctx) ",
    "ctx.",
    "ctx.template_data.",
    "ctx[\"recipient\"]",
    "local x = ",
    "; ",
    "if ",
    " then ",
    " else ",
    " + ",
    " == ",
    " && ",
    " in ",
    "!",
    "-",
    "std.get(",
    "std.objectHas(",
    "std.length(",
    "error \"cancel\"",
    "null",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    "::",
    "+:",
    "\"",
    "'",
    "|||\n",
    "1e400",
    "[x for x in ",
    "self",
    "$",
];

/// Template sources: the engine (fast path first) and the evaluator alone give the same output
/// or the same error (kind, field, location, message) over sample ctx in both styles, and where
/// the fast path answers, it answers as the evaluator. No source crashes either.
#[test]
fn fuzz_template() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jsonnet");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the shipped templates")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonnet"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    seeds.sort();
    let ctxs: Vec<String> = samples::all()
        .take(3)
        .flat_map(|(_, _, m)| {
            [
                ctx::to_json(&m, CtxStyle::Snake),
                ctx::to_json(&m, CtxStyle::Pascal),
            ]
        })
        .collect();
    run("template", JSONNET_DICT, seeds, move || {
        let mut pair = crate::template::fast::tests::Pair::new(Limits::default());
        Box::new(move |input| {
            let Ok(source) = std::str::from_utf8(input) else {
                return;
            };
            let template = Template::new("fuzz.jsonnet", source);
            for ctx in &ctxs {
                pair.check(&template, crate::template::CtxRef::Json(ctx), &|| {
                    format!("template {source:?} over {ctx}")
                });
            }
        })
    });
}
