//! Sprig's regex functions. The `regex` crate is RE2-like, as Go's `regexp`
//! is; the one difference that matters is that Go's `\d`, `\w`, `\s` and `\b`
//! are ASCII-only, so patterns are rewritten to those ASCII classes first.
//! Compiled patterns are cached: templates run the same ones on every render.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gotmpl::{Result, Value};
use regex::Regex;

use crate::value::{fail, int_arg, s, str_arg, strings, want};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[
    ("regexMatch", |a| regex_match("regexMatch", a, false)),
    ("mustRegexMatch", |a| regex_match("mustRegexMatch", a, true)),
    ("regexFind", |a| find("regexFind", a)),
    ("mustRegexFind", |a| find("mustRegexFind", a)),
    ("regexFindAll", |a| find_all("regexFindAll", a)),
    ("mustRegexFindAll", |a| find_all("mustRegexFindAll", a)),
    ("regexReplaceAll", |a| replace("regexReplaceAll", a, false)),
    ("mustRegexReplaceAll", |a| {
        replace("mustRegexReplaceAll", a, false)
    }),
    ("regexReplaceAllLiteral", |a| {
        replace("regexReplaceAllLiteral", a, true)
    }),
    ("mustRegexReplaceAllLiteral", |a| {
        replace("mustRegexReplaceAllLiteral", a, true)
    }),
    ("regexSplit", |a| split("regexSplit", a)),
    ("mustRegexSplit", |a| split("mustRegexSplit", a)),
    ("regexQuoteMeta", |a| {
        want("regexQuoteMeta", a, 1)?;
        Ok(s(quote_meta(str_arg("regexQuoteMeta", a, 0)?)))
    }),
];

/// Rewrites Perl classes to Go's ASCII meanings.
fn go_syntax(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push(c);
                    break;
                };
                let (inner, negated) = match n {
                    'd' => ("0-9", false),
                    'D' => ("0-9", true),
                    'w' => ("0-9A-Za-z_", false),
                    'W' => ("0-9A-Za-z_", true),
                    's' => ("\\t\\n\\f\\r ", false),
                    'S' => ("\\t\\n\\f\\r ", true),
                    'b' if !in_class => {
                        out.push_str("(?-u:\\b)");
                        continue;
                    }
                    'B' if !in_class => {
                        out.push_str("(?-u:\\B)");
                        continue;
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                        continue;
                    }
                };
                if in_class && !negated {
                    out.push_str(inner);
                } else if in_class {
                    // A negated class inside a class: keep Perl's meaning.
                    out.push('\\');
                    out.push(n);
                } else {
                    out.push('[');
                    if negated {
                        out.push('^');
                    }
                    out.push_str(inner);
                    out.push(']');
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A leading `]` (or `^]`) is a literal member of the class.
                let rest = chars.as_str();
                if let Some(r) = rest.strip_prefix("^]") {
                    out.push_str("^]");
                    chars = r.chars();
                } else if let Some(r) = rest.strip_prefix(']') {
                    out.push(']');
                    chars = r.chars();
                }
            }
            '[' if in_class && chars.as_str().starts_with(':') => {
                // A POSIX class such as [:alpha:].
                out.push(c);
                let rest = chars.as_str();
                if let Some(end) = rest.find(":]") {
                    out.push_str(&rest[..end + 2]);
                    chars = rest[end + 2..].chars();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn compile(name: &str, pattern: &str) -> Result<Arc<Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return Ok(re);
    }
    let re = Regex::new(&go_syntax(pattern))
        .map(Arc::new)
        .map_err(|e| fail(name, format!("error parsing regexp: {e}")))?;
    if let Ok(mut c) = cache.lock() {
        if c.len() > 512 {
            c.clear();
        }
        c.insert(pattern.to_string(), Arc::clone(&re));
    }
    Ok(re)
}

fn regex_match(name: &str, a: &[Value], must: bool) -> Result<Value> {
    want(name, a, 2)?;
    let subject = str_arg(name, a, 1)?;
    match compile(name, str_arg(name, a, 0)?) {
        Ok(re) => Ok(Value::Bool(re.is_match(subject))),
        Err(e) if must => Err(e),
        Err(_) => Ok(Value::Bool(false)),
    }
}

fn find(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 2)?;
    let re = compile(name, str_arg(name, a, 0)?)?;
    Ok(s(re.find(str_arg(name, a, 1)?).map_or("", |m| m.as_str())))
}

/// Go's `FindAll*` matches: an empty match right after a previous match is skipped.
fn go_matches<'t>(re: &Regex, text: &'t str, n: i64) -> Vec<regex::Match<'t>> {
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let mut prev_end: Option<usize> = None;
    for m in re.find_iter(text) {
        if m.start() == m.end() && prev_end == Some(m.start()) {
            continue;
        }
        prev_end = Some(m.end());
        out.push(m);
        if n > 0 && out.len() as i64 >= n {
            break;
        }
    }
    out
}

fn find_all(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 3)?;
    let re = compile(name, str_arg(name, a, 0)?)?;
    let text = str_arg(name, a, 1)?;
    let n = int_arg(name, a, 2)?;
    Ok(strings(
        go_matches(&re, text, n)
            .iter()
            .map(|m| m.as_str().to_string()),
    ))
}

fn replace(name: &str, a: &[Value], literal: bool) -> Result<Value> {
    want(name, a, 3)?;
    let re = compile(name, str_arg(name, a, 0)?)?;
    let (text, repl) = (str_arg(name, a, 1)?, str_arg(name, a, 2)?);
    Ok(s(if literal {
        re.replace_all(text, regex::NoExpand(repl)).into_owned()
    } else {
        re.replace_all(text, repl).into_owned()
    }))
}

fn split(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 3)?;
    let re = compile(name, str_arg(name, a, 0)?)?;
    let text = str_arg(name, a, 1)?;
    let n = int_arg(name, a, 2)?;
    if n == 0 {
        return Ok(strings(Vec::new()));
    }
    if !re.as_str().is_empty() && text.is_empty() {
        return Ok(strings([String::new()]));
    }
    let mut parts = Vec::new();
    let (mut beg, mut end) = (0, 0);
    for m in go_matches(&re, text, n) {
        if n > 0 && parts.len() as i64 == n - 1 {
            break;
        }
        end = m.start();
        if m.end() != 0 {
            parts.push(text[beg..end].to_string());
        }
        beg = m.end();
    }
    if end != text.len() {
        parts.push(text[beg..].to_string());
    }
    Ok(strings(parts))
}

/// Go's `regexp.QuoteMeta`.
fn quote_meta(x: &str) -> String {
    let mut out = String::with_capacity(x.len() * 2);
    for c in x.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
