//! `semver` and `semverCompare` with Masterminds/semver v3 rules: lenient
//! versions ("v1.2" is 1.2.0), constraints with `=`, `!=`, `>`, `<`, `>=`,
//! `<=`, `~`, `^`, wildcards (`1.2.x`, `*`), hyphen ranges, `,` (and) and
//! `||` (or); a pre-release version only satisfies a constraint naming one.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{Result, Value};

use crate::value::{fail, map_value, s, str_arg, want};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[("semver", semver_fn), ("semverCompare", semver_compare)];

#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    meta: String,
}

const INVALID: &str = "Invalid Semantic Version";

fn ident_ok(x: &str, numeric_no_zero: bool) -> bool {
    !x.is_empty()
        && x.split('.').all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !(numeric_no_zero
                    && p.len() > 1
                    && p.starts_with('0')
                    && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Parses a version; `None` parts were absent (for constraint wildcards).
fn parse_parts(
    v: &str,
) -> std::result::Result<([Option<String>; 3], String, String), &'static str> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let (rest, meta) = v.split_once('+').map_or((v, ""), |(a, b)| (a, b));
    let (core, pre) = rest.split_once('-').map_or((rest, ""), |(a, b)| (a, b));
    let mut parts: [Option<String>; 3] = [None, None, None];
    let pieces: Vec<&str> = core.split('.').collect();
    if pieces.is_empty() || pieces.len() > 3 || rest.contains('+') {
        return Err(INVALID);
    }
    for (i, p) in pieces.iter().enumerate() {
        if p.is_empty() {
            return Err(INVALID);
        }
        parts[i] = Some(p.to_string());
    }
    if rest.contains('-') && !ident_ok(pre, true) || v.contains('+') && !ident_ok(meta, false) {
        return Err(INVALID);
    }
    Ok((parts, pre.to_string(), meta.to_string()))
}

fn parse_version(v: &str) -> std::result::Result<Version, &'static str> {
    let (parts, pre, meta) = parse_parts(v)?;
    let num = |p: &Option<String>| -> std::result::Result<u64, &'static str> {
        match p {
            None => Ok(0),
            Some(x) if x.bytes().all(|b| b.is_ascii_digit()) => x.parse().map_err(|_| INVALID),
            Some(_) => Err(INVALID),
        }
    };
    Ok(Version {
        major: num(&parts[0])?,
        minor: num(&parts[1])?,
        patch: num(&parts[2])?,
        pre,
        meta,
    })
}

fn cmp_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

impl Version {
    fn cmp(&self, o: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| cmp_pre(&self.pre, &o.pre))
    }
}

#[derive(Debug)]
struct Constraint {
    op: String,
    v: Version,
    /// `*` or `x` as the major version: anything matches.
    major_dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
    /// Any wildcard at all (including a bare `*`).
    dirty: bool,
}

fn is_wild(p: &Option<String>) -> bool {
    matches!(p.as_deref(), Some("x" | "X" | "*"))
}

fn parse_constraint(c: &str) -> std::result::Result<Constraint, String> {
    let c = c.trim();
    let op_len = c.find(|ch: char| !"=!<>~^".contains(ch)).unwrap_or(c.len());
    let (op, ver) = (&c[..op_len], c[op_len..].trim());
    let op = match op {
        "" | "=" => "=",
        "=>" => ">=",
        "=<" => "<=",
        "~>" => "~",
        o @ ("!=" | ">" | "<" | ">=" | "<=" | "~" | "^") => o,
        _ => return Err(format!("improper constraint: {c}")),
    };
    let bad = || format!("improper constraint: {c}");
    if ver.is_empty() || is_wild(&Some(ver.to_string())) {
        return Ok(Constraint {
            op: op.into(),
            v: Version {
                major: 0,
                minor: 0,
                patch: 0,
                pre: String::new(),
                meta: String::new(),
            },
            major_dirty: true,
            minor_dirty: true,
            patch_dirty: true,
            dirty: true,
        });
    }
    let (mut parts, pre, meta) = parse_parts(ver).map_err(|_| bad())?;
    let major_dirty = is_wild(&parts[0]);
    let minor_dirty = major_dirty || parts[1].is_none() || is_wild(&parts[1]);
    let patch_dirty = minor_dirty || parts[2].is_none() || is_wild(&parts[2]);
    let dirty = is_wild(&parts[0]) || is_wild(&parts[1]) || is_wild(&parts[2]);
    for p in parts.iter_mut() {
        if is_wild(p) {
            *p = None;
        }
    }
    let num = |p: &Option<String>| {
        p.as_deref()
            .map_or(Ok(0), |x| x.parse::<u64>())
            .map_err(|_| bad())
    };
    Ok(Constraint {
        op: op.into(),
        v: Version {
            major: num(&parts[0])?,
            minor: num(&parts[1])?,
            patch: num(&parts[2])?,
            pre,
            meta,
        },
        major_dirty,
        minor_dirty,
        patch_dirty,
        dirty: dirty || is_wild(&parts[0]),
    })
}

fn tilde(v: &Version, c: &Constraint) -> bool {
    if v.cmp(&c.v) == Ordering::Less {
        return false;
    }
    if c.v.major == 0 && c.v.minor == 0 && c.v.patch == 0 && !c.minor_dirty && !c.patch_dirty {
        return true;
    }
    if v.major != c.v.major {
        return false;
    }
    v.minor == c.v.minor || c.minor_dirty
}

fn check(v: &Version, c: &Constraint) -> bool {
    if !v.pre.is_empty() && c.v.pre.is_empty() {
        return false;
    }
    if c.major_dirty {
        return true;
    }
    let o = v.cmp(&c.v);
    match c.op.as_str() {
        "=" => {
            if c.dirty || c.minor_dirty || c.patch_dirty {
                tilde(v, c)
            } else {
                o == Ordering::Equal
            }
        }
        "!=" => {
            if c.minor_dirty || c.patch_dirty {
                !tilde(v, c)
            } else {
                o != Ordering::Equal
            }
        }
        ">" => {
            if !(c.minor_dirty || c.patch_dirty) {
                o == Ordering::Greater
            } else if v.major != c.v.major {
                v.major > c.v.major
            } else if c.minor_dirty {
                false
            } else {
                v.minor > c.v.minor
            }
        }
        "<" => o == Ordering::Less,
        ">=" => o != Ordering::Less,
        "<=" => {
            if !(c.minor_dirty || c.patch_dirty) {
                o != Ordering::Greater
            } else if v.major > c.v.major {
                false
            } else {
                !(v.major == c.v.major && v.minor > c.v.minor && !c.minor_dirty)
            }
        }
        "~" => tilde(v, c),
        "^" => {
            if o == Ordering::Less {
                return false;
            }
            if c.v.major > 0 {
                return v.major == c.v.major;
            }
            if v.major > 0 {
                return false;
            }
            if c.minor_dirty {
                return true;
            }
            if c.v.minor > 0 {
                return v.minor == c.v.minor;
            }
            if v.minor > 0 {
                return false;
            }
            c.patch_dirty || v.patch == c.v.patch
        }
        _ => false,
    }
}

/// `semverCompare CONSTRAINT VERSION`.
fn satisfies(constraint: &str, v: &Version) -> std::result::Result<bool, String> {
    let mut any = false;
    for group in constraint.split("||") {
        // Hyphen ranges become `>= A, <= B`; other terms split on commas and spaces.
        let normalized = hyphen_ranges(group);
        let terms = join_ops(&normalized);
        if terms.is_empty() {
            return Err(format!("improper constraint: {constraint}"));
        }
        let mut all = true;
        for t in &terms {
            if !check(v, &parse_constraint(t)?) {
                all = false;
            }
        }
        any |= all;
    }
    Ok(any)
}

fn hyphen_ranges(group: &str) -> String {
    let words: Vec<&str> = group.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if i + 2 < words.len() && words[i + 1] == "-" {
            out.push(format!(">={},", words[i]));
            out.push(format!("<={}", words[i + 2]));
            i += 3;
        } else {
            out.push(words[i].to_string());
            i += 1;
        }
    }
    out.join(" ")
}

/// Splits a group into terms, keeping an operator written apart from its version ("= 1.2").
fn join_ops(group: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for w in group.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
        if w.chars().all(|c| "=!<>~^".contains(c)) {
            pending_op.push_str(w);
            continue;
        }
        terms.push(format!("{pending_op}{w}"));
        pending_op.clear();
    }
    if !pending_op.is_empty() {
        terms.push(pending_op);
    }
    terms
}

fn semver_compare(a: &[Value]) -> Result<Value> {
    want("semverCompare", a, 2)?;
    let c = str_arg("semverCompare", a, 0)?;
    let v = parse_version(str_arg("semverCompare", a, 1)?).map_err(|e| fail("semverCompare", e))?;
    satisfies(c, &v)
        .map(Value::Bool)
        .map_err(|e| fail("semverCompare", e))
}

/// `semver`: the version as a map of Masterminds' accessor names.
fn semver_fn(a: &[Value]) -> Result<Value> {
    want("semver", a, 1)?;
    let original = str_arg("semver", a, 0)?;
    let v = parse_version(original).map_err(|e| fail("semver", e))?;
    let mut m = BTreeMap::new();
    let mut put = |k: &str, val: Value| {
        m.insert(Arc::<str>::from(k), val);
    };
    put("Major", Value::Int(v.major as i64));
    put("Minor", Value::Int(v.minor as i64));
    put("Patch", Value::Int(v.patch as i64));
    put("Prerelease", s(v.pre.as_str()));
    put("Metadata", s(v.meta.as_str()));
    put("Original", s(original));
    Ok(map_value(m))
}
