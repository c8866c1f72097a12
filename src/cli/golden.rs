//! `courier test`: golden tests for users' CI. Each case is an input (`NAME.ctx.json` or
//! `NAME.message.json`) and an expected payload (`NAME.expected.json`); the template is
//! `NAME.jsonnet` or, for `T.CASE`, `T.jsonnet`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use super::{CmdResult, Failure, LimitArgs, StyleArg};
use jsonnet_courier::message::{ctx, CtxStyle, Message};
use jsonnet_courier::template::{source::Loader, style, Pool, Template};

#[derive(Debug, Args)]
pub(crate) struct GoldenArgs {
    /// Directory holding the cases.
    dir: PathBuf,
    /// Where to look for templates not found in DIR.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Key style of the ctx built from NAME.message.json (default: the style of the ctx names the
    /// template reads; templates named *.snake.jsonnet always get snake).
    #[arg(long, value_enum)]
    style: Option<StyleArg>,
    /// Write NAME.expected.json from the current output instead of comparing.
    #[arg(long)]
    update: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// One golden case found on disk.
pub(crate) struct Case {
    /// NAME, e.g. `mailgun.recovery_valid`.
    pub name: String,
    /// The input file and whether it is a message (else a verbatim ctx).
    pub input: PathBuf,
    pub is_message: bool,
    pub expected: PathBuf,
    pub template: PathBuf,
}

/// Finds the cases in `dir`, in name order. Inputs without an expected file are skipped unless
/// `with_missing_expected` (for `--update`).
pub(crate) fn discover(
    dir: &Path,
    templates: Option<&Path>,
    with_missing_expected: bool,
) -> Result<Vec<Case>, Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::usage(anyhow::anyhow!("reading {}: {e}", dir.display())))?;
    let mut cases = BTreeMap::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let (name, is_message) = if let Some(n) = file_name.strip_suffix(".message.json") {
            (n.to_owned(), true)
        } else if let Some(n) = file_name.strip_suffix(".ctx.json") {
            (n.to_owned(), false)
        } else {
            continue;
        };
        let expected = dir.join(format!("{name}.expected.json"));
        if !with_missing_expected && !expected.exists() {
            continue;
        }
        let template = find_template(&name, dir, templates).ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "{}: no template {name}.jsonnet (or a prefix of it before a dot) in {}{}",
                entry.path().display(),
                dir.display(),
                templates.map_or(String::new(), |t| format!(" or {}", t.display()))
            ))
        })?;
        cases.insert(
            name.clone(),
            Case {
                name,
                input: entry.path(),
                is_message,
                expected,
                template,
            },
        );
    }
    Ok(cases.into_values().collect())
}

fn find_template(name: &str, dir: &Path, extra: Option<&Path>) -> Option<PathBuf> {
    let mut stem = name;
    loop {
        for d in std::iter::once(dir).chain(extra) {
            let candidate = d.join(format!("{stem}.jsonnet"));
            if candidate.is_file() {
                return Some(candidate);
            }
        }
        stem = &stem[..stem.rfind('.')?];
    }
}

/// Renders one case; `Err` is a message explaining why it could not be rendered.
pub(crate) async fn render_case(
    case: &Case,
    template: &Template,
    pool: &Pool,
    style: Option<StyleArg>,
) -> Result<Value, String> {
    let bytes = std::fs::read(&case.input).map_err(|e| format!("{}: {e}", case.input.display()))?;
    let ctx = if case.is_message {
        let msg =
            Message::from_json(&bytes).map_err(|e| format!("{}: {e}", case.input.display()))?;
        let explicit = if template.name().ends_with(".snake.jsonnet") {
            Some((CtxStyle::Snake, "the template's name"))
        } else {
            style.map(|s| (CtxStyle::from(s), "--style"))
        };
        let choice = style::decide(template, explicit).map_err(|e| e.to_string())?;
        ctx::build(&msg, choice.style)
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: invalid JSON: {e}", case.input.display()))?
    };
    let json = pool
        .render(template, ctx)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| format!("the payload is not JSON: {e}"))
}

pub(crate) async fn run(args: GoldenArgs) -> CmdResult {
    let cases = discover(&args.dir, args.templates.as_deref(), args.update)?;
    if cases.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "no cases in {}: expected NAME.ctx.json or NAME.message.json with NAME.expected.json beside",
            args.dir.display()
        )));
    }
    let loader = Loader::new(None);
    let pool = Pool::with_default_threads(args.limits.limits())
        .map_err(|e| Failure::usage(anyhow::anyhow!("--import-dir: {e}")))?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &cases {
        let uri = format!("file://{}", case.template.display());
        let template = loader.load(&uri).await.map_err(Failure::usage)?;
        let outcome = render_case(case, &template, &pool, args.style).await;
        let label = format!("{} ({})", case.name, template.name());
        match outcome {
            Ok(actual) if args.update => {
                let text = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
                std::fs::write(&case.expected, text).map_err(|e| {
                    Failure::usage(anyhow::anyhow!("writing {}: {e}", case.expected.display()))
                })?;
                println!("updated {label}");
                passed += 1;
            }
            Ok(actual) => {
                let expected: Value = match std::fs::read(&case.expected)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                {
                    Ok(v) => v,
                    Err(e) => {
                        failed += 1;
                        println!("FAIL  {label}\n      {}: {e}", case.expected.display());
                        continue;
                    }
                };
                let diffs = diff(&expected, &actual);
                if diffs.is_empty() {
                    passed += 1;
                    println!("ok    {label}");
                } else {
                    failed += 1;
                    println!("FAIL  {label}");
                    for d in diffs {
                        println!("      {d}");
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {label}");
                for line in e.lines() {
                    println!("      {line}");
                }
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed > 0 {
        Err(Failure::quiet())
    } else {
        Ok(())
    }
}

/// The differences between two JSON values, one line each, by path:
/// `subject: expected "a", got "b"`, `html: missing (expected "...")`, `extra: unexpected 1`.
pub(crate) fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", expected, actual, &mut out);
    out
}

fn walk(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let at = |p: &str| {
        if p.is_empty() {
            "(top level)".to_owned()
        } else {
            p.to_owned()
        }
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = join(path, k);
                match a.get(k) {
                    Some(av) => walk(&p, ev, av, out),
                    None => out.push(format!("{p}: missing (expected {})", short(ev))),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("{}: unexpected {}", join(path, k), short(av)));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                walk(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        (Value::Array(e), Value::Array(a)) => out.push(format!(
            "{}: expected {} elements, got {}: expected {}, got {}",
            at(path),
            e.len(),
            a.len(),
            short(expected),
            short(actual)
        )),
        _ if expected == actual => {}
        _ => out.push(format!(
            "{}: expected {}, got {}",
            at(path),
            short(expected),
            short(actual)
        )),
    }
}

fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::diff;
    use serde_json::json;

    #[test]
    fn diff_names_paths() {
        let e = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": true});
        let a = json!({"a": 1, "b": {"c": [1, 3], "d": "y"}, "new key": null});
        assert_eq!(
            diff(&e, &a),
            vec![
                "b.c[1]: expected 2, got 3",
                "b.d: expected \"x\", got \"y\"",
                "gone: missing (expected true)",
                "[\"new key\"]: unexpected null",
            ]
        );
        assert!(diff(&e, &e).is_empty());
    }
}
