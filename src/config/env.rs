//! Values from outside the file: `${VAR}` / `${VAR:-default}` expansion in every string, and `X_file`
//! keys that read X from a file, so that a configuration holding secrets can be committed.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Expands `${VAR}` in strings and replaces `X_file` keys by X read from the file.
pub(super) fn resolve(
    v: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base: Option<&Path>,
    issues: &mut Vec<(String, String)>,
) {
    match v {
        Value::String(s) => match expand(s, env) {
            Ok(out) => *s = out,
            Err(reason) => issues.push((path.to_owned(), reason)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve(item, &format!("{path}[{i}]"), env, base, issues);
            }
        }
        Value::Object(map) => {
            let file_keys: Vec<String> = map
                .keys()
                .filter(|k| k.ends_with("_file") && k.len() > 5)
                .cloned()
                .collect();
            for fk in file_keys {
                let key = fk.trim_end_matches("_file").to_owned();
                let at = join(path, &fk);
                let Some(Value::String(file)) = map.remove(&fk) else {
                    issues.push((at, "must be a file path".into()));
                    continue;
                };
                if map.contains_key(&key) {
                    issues.push((at, format!("set either {key} or {fk}, not both")));
                    continue;
                }
                let file = match expand(&file, env) {
                    Ok(f) => f,
                    Err(r) => {
                        issues.push((at, r));
                        continue;
                    }
                };
                let p = match base {
                    Some(b) if Path::new(&file).is_relative() => b.join(&file),
                    _ => PathBuf::from(&file),
                };
                match std::fs::read_to_string(&p) {
                    Ok(text) => {
                        map.insert(
                            key,
                            Value::String(text.trim_end_matches(['\n', '\r']).to_owned()),
                        );
                    }
                    Err(e) => issues.push((at, format!("reading {}: {e}", p.display()))),
                }
            }
            for (k, item) in map.iter_mut() {
                resolve(item, &join(path, k), env, base, issues);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `${VAR}`, `${VAR:-default}`; `$$` is a literal `$`.
pub(super) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err("unterminated ${...}".into());
            };
            let expr = &inner[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in ${{...}}"));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set (write ${{{name}:-default}} for a default)"))
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
