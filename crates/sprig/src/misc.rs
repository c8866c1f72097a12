//! Sprig's defaults (`default`, `empty`, `coalesce`, `ternary`, ...),
//! reflection (`typeOf`, `kindIs`, `deepEqual`, ...) and slash-separated path
//! functions (Go's `path`, which is also `path/filepath` on Unix).

use gotmpl::{Result, Value};

use crate::value::{bool_arg, deep_equal, go_kind, go_type, is_empty, s, str_arg, want, want_min};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[
    ("default", |a| {
        want_min("default", a, 1)?;
        Ok(match a.get(1) {
            Some(v) if !is_empty(v) => v.clone(),
            _ => a[0].clone(),
        })
    }),
    ("empty", |a| {
        want("empty", a, 1).map(|_| Value::Bool(is_empty(&a[0])))
    }),
    ("coalesce", |a| {
        Ok(a.iter()
            .find(|v| !is_empty(v))
            .cloned()
            .unwrap_or(Value::Nil))
    }),
    ("all", |a| Ok(Value::Bool(a.iter().all(|v| !is_empty(v))))),
    ("any", |a| Ok(Value::Bool(a.iter().any(|v| !is_empty(v))))),
    ("ternary", |a| {
        want("ternary", a, 3)?;
        Ok(if bool_arg("ternary", a, 2)? {
            a[0].clone()
        } else {
            a[1].clone()
        })
    }),
    ("typeOf", |a| {
        want("typeOf", a, 1).map(|_| s(go_type(&a[0])))
    }),
    ("typeIs", |a| {
        want("typeIs", a, 2)?;
        Ok(Value::Bool(str_arg("typeIs", a, 0)? == go_type(&a[1])))
    }),
    ("typeIsLike", |a| {
        want("typeIsLike", a, 2)?;
        let t = go_type(&a[1]);
        let target = str_arg("typeIsLike", a, 0)?;
        Ok(Value::Bool(target == t || format!("*{target}") == t))
    }),
    ("kindOf", |a| {
        want("kindOf", a, 1).map(|_| s(go_kind(&a[0])))
    }),
    ("kindIs", |a| {
        want("kindIs", a, 2)?;
        Ok(Value::Bool(str_arg("kindIs", a, 0)? == go_kind(&a[1])))
    }),
    ("deepEqual", |a| {
        want("deepEqual", a, 2).map(|_| Value::Bool(deep_equal(&a[0], &a[1])))
    }),
    ("base", |a| path_fn("base", a, base)),
    ("dir", |a| path_fn("dir", a, dir)),
    ("clean", |a| path_fn("clean", a, clean)),
    ("ext", |a| path_fn("ext", a, |p| ext(p).to_string())),
    ("isAbs", |a| {
        want("isAbs", a, 1).and_then(|_| Ok(Value::Bool(str_arg("isAbs", a, 0)?.starts_with('/'))))
    }),
    ("osBase", |a| path_fn("osBase", a, base)),
    ("osDir", |a| path_fn("osDir", a, dir)),
    ("osClean", |a| path_fn("osClean", a, clean)),
    ("osExt", |a| path_fn("osExt", a, |p| ext(p).to_string())),
    ("osIsAbs", |a| {
        want("osIsAbs", a, 1)
            .and_then(|_| Ok(Value::Bool(str_arg("osIsAbs", a, 0)?.starts_with('/'))))
    }),
];

fn path_fn(name: &str, a: &[Value], f: impl Fn(&str) -> String) -> Result<Value> {
    want(name, a, 1)?;
    Ok(s(f(str_arg(name, a, 0)?)))
}

/// Go's `path.Clean`: lexical normalisation of `.`, `..` and repeated slashes.
pub(crate) fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Go's `path.Base`.
fn base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// Go's `path.Dir`: everything up to the last slash, cleaned.
fn dir(p: &str) -> String {
    let cut = p.rfind('/').map_or(0, |i| i + 1);
    clean(&p[..cut])
}

/// Go's `path.Ext`: the suffix from the final dot of the last element.
fn ext(p: &str) -> &str {
    for (i, b) in p.bytes().enumerate().rev() {
        match b {
            b'/' => return "",
            b'.' => return &p[i..],
            _ => {}
        }
    }
    ""
}
