//! Sprig's string functions (case, trimming, abbreviation, wrapping, quoting,
//! splitting and joining) with the byte- and rune-level behaviour of the Go
//! libraries behind them (strings, goutils, xstrings).

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{Result, Value};

use crate::value::{fail, fmt_v, int_arg, map_value, s, str_arg, strings, strval, want};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[
    ("hello", |a| want("hello", a, 0).map(|_| s("Hello!"))),
    ("upper", |a| {
        one("upper", a, |x| x.chars().map(go_upper).collect())
    }),
    ("lower", |a| {
        one("lower", a, |x| x.chars().map(go_lower).collect())
    }),
    ("title", |a| one("title", a, title)),
    ("untitle", |a| one("untitle", a, untitle)),
    ("swapcase", |a| one("swapcase", a, swapcase)),
    ("trim", |a| {
        one("trim", a, |x| x.trim_matches(go_space).to_string())
    }),
    ("trimAll", |a| {
        two("trimAll", a, |cut, x| {
            x.trim_matches(|c| cut.contains(c)).to_string()
        })
    }),
    ("trimall", |a| {
        two("trimall", a, |cut, x| {
            x.trim_matches(|c| cut.contains(c)).to_string()
        })
    }),
    ("trimSuffix", |a| {
        two("trimSuffix", a, |suf, x| {
            x.strip_suffix(suf).unwrap_or(x).to_string()
        })
    }),
    ("trimPrefix", |a| {
        two("trimPrefix", a, |pre, x| {
            x.strip_prefix(pre).unwrap_or(x).to_string()
        })
    }),
    ("nospace", |a| one("nospace", a, nospace)),
    ("initials", |a| one("initials", a, initials)),
    ("shuffle", |a| one("shuffle", a, shuffle)),
    ("snakecase", |a| {
        one("snakecase", a, |x| crate::case::to_lower_case(x, '_'))
    }),
    ("kebabcase", |a| {
        one("kebabcase", a, |x| crate::case::to_lower_case(x, '-'))
    }),
    ("camelcase", |a| {
        one("camelcase", a, crate::case::to_camel_case)
    }),
    ("contains", |a| {
        pred("contains", a, |sub, x| x.contains(sub))
    }),
    ("hasPrefix", |a| {
        pred("hasPrefix", a, |p, x| x.starts_with(p))
    }),
    ("hasSuffix", |a| pred("hasSuffix", a, |p, x| x.ends_with(p))),
    ("repeat", repeat),
    ("substr", substr),
    ("trunc", trunc),
    ("abbrev", abbrev),
    ("abbrevboth", abbrevboth),
    ("wrap", wrap),
    ("wrapWith", wrap_with),
    ("quote", quote),
    ("squote", squote),
    ("cat", cat),
    ("indent", indent),
    ("nindent", nindent),
    ("replace", replace),
    ("plural", plural),
    ("split", |a| {
        want("split", a, 2).and_then(|_| split_map("split", a, None))
    }),
    ("splitn", splitn),
    ("splitList", split_list),
    ("join", join),
    ("toStrings", |a| {
        want("toStrings", a, 1).map(|_| strings(strslice(&a[0])))
    }),
    ("toString", |a| {
        want("toString", a, 1).map(|_| s(strval(&a[0])))
    }),
    ("sortAlpha", sort_alpha),
    ("fail", |a| {
        want("fail", a, 1)?;
        Err(fail("fail", str_arg("fail", a, 0)?))
    }),
];

fn one(name: &str, a: &[Value], f: impl Fn(&str) -> String) -> Result<Value> {
    want(name, a, 1)?;
    Ok(s(f(str_arg(name, a, 0)?)))
}

fn two(name: &str, a: &[Value], f: impl Fn(&str, &str) -> String) -> Result<Value> {
    want(name, a, 2)?;
    Ok(s(f(str_arg(name, a, 0)?, str_arg(name, a, 1)?)))
}

fn pred(name: &str, a: &[Value], f: impl Fn(&str, &str) -> bool) -> Result<Value> {
    want(name, a, 2)?;
    Ok(Value::Bool(f(str_arg(name, a, 0)?, str_arg(name, a, 1)?)))
}

/// Go's `unicode.IsSpace`.
pub(crate) fn go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}'
    ) || (c as u32 > 0xFF && c.is_whitespace())
}

/// A Go byte-slice of a string; a cut inside a character is replaced as Go's
/// invalid UTF-8 would print.
fn byte_slice(x: &str, from: usize, to: usize) -> String {
    String::from_utf8_lossy(&x.as_bytes()[from..to]).into_owned()
}

/// Go's `unicode.ToUpper`: the simple (one-rune) mapping, so "ß" stays "ß".
pub(crate) fn go_upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Go's `unicode.ToLower` (simple mapping: "İ" becomes "i").
pub(crate) fn go_lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

fn upper_first(c: char) -> String {
    go_upper(c).to_string()
}

/// `strings.Title`: upper-cases the first letter after each separator.
fn title(x: &str) -> String {
    let sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphabetic() || c.is_numeric() {
            false
        } else {
            go_space(c)
        }
    };
    let mut prev = ' ';
    let mut out = String::with_capacity(x.len());
    for c in x.chars() {
        if sep(prev) {
            out.push_str(&upper_first(c));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// goutils `Uncapitalize`: lower-cases the first letter of each space-separated word.
fn untitle(x: &str) -> String {
    let mut next = true;
    x.chars()
        .map(|c| {
            if go_space(c) {
                next = true;
                c.to_string()
            } else if next {
                next = false;
                go_lower(c).to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// goutils `SwapCase`: upper to lower, lower to upper (title case, the same here).
fn swapcase(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    for c in x.chars() {
        if c.is_uppercase() {
            out.push(go_lower(c));
        } else if c.is_lowercase() {
            out.push(go_upper(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// goutils `DeleteWhiteSpace`, which walks bytes (each byte taken as a rune).
fn nospace(x: &str) -> String {
    if !x.bytes().any(|b| go_space(char::from(b))) {
        return x.to_string();
    }
    x.bytes()
        .map(char::from)
        .filter(|c| !go_space(*c))
        .collect()
}

/// goutils `Initials`, byte-wise like the original.
fn initials(x: &str) -> String {
    let mut gap = true;
    let mut out = String::new();
    for c in x.bytes().map(char::from) {
        if go_space(c) {
            gap = true;
        } else if gap {
            out.push(c);
            gap = false;
        }
    }
    out
}

fn shuffle(x: &str) -> String {
    let mut runes: Vec<char> = x.chars().collect();
    for i in (1..runes.len()).rev() {
        let j = fastrand::usize(..=i);
        runes.swap(i, j);
    }
    runes.into_iter().collect()
}

fn repeat(a: &[Value]) -> Result<Value> {
    want("repeat", a, 2)?;
    let n = int_arg("repeat", a, 0)?;
    let x = str_arg("repeat", a, 1)?;
    if n < 0 {
        return Err(fail("repeat", "strings: negative Repeat count"));
    }
    if (n as u64).saturating_mul(x.len() as u64) > MAX_OUTPUT as u64 {
        return Err(fail("repeat", "strings: Repeat output length overflow"));
    }
    Ok(s(x.repeat(n as usize)))
}

fn substr(a: &[Value]) -> Result<Value> {
    want("substr", a, 3)?;
    let (start, end) = (int_arg("substr", a, 0)?, int_arg("substr", a, 1)?);
    let x = str_arg("substr", a, 2)?;
    let len = x.len() as i64;
    let (from, to) = if start < 0 {
        (0, end)
    } else if end < 0 || end > len {
        (start, len)
    } else {
        (start, end)
    };
    if from < 0 || to < 0 || to > len || from > to {
        return Err(fail(
            "substr",
            format!("runtime error: slice bounds out of range [{from}:{to}]"),
        ));
    }
    Ok(s(byte_slice(x, from as usize, to as usize)))
}

fn trunc(a: &[Value]) -> Result<Value> {
    want("trunc", a, 2)?;
    let c = int_arg("trunc", a, 0)?;
    let x = str_arg("trunc", a, 1)?;
    let len = x.len() as i64;
    Ok(s(if c < 0 && len + c > 0 {
        byte_slice(x, (len + c) as usize, x.len())
    } else if c >= 0 && len > c {
        byte_slice(x, 0, c as usize)
    } else {
        x.to_string()
    }))
}

/// goutils `AbbreviateFull` (byte offsets, `...` marker).
fn abbreviate_full(x: &str, offset: i64, width: i64) -> Option<String> {
    if x.is_empty() {
        return Some(String::new());
    }
    if width < 4 {
        return None;
    }
    let len = x.len() as i64;
    if len <= width {
        return Some(x.to_string());
    }
    let mut offset = offset.min(len);
    if len - offset < width - 3 {
        offset = len - (width - 3);
    }
    if offset <= 4 {
        return Some(format!("{}...", byte_slice(x, 0, (width - 3) as usize)));
    }
    if width < 7 {
        return None;
    }
    if offset + width - 3 < len {
        let rest = byte_slice(x, offset as usize, x.len());
        return abbreviate_full(&rest, 0, width - 3).map(|r| format!("...{r}"));
    }
    Some(format!(
        "...{}",
        byte_slice(x, (len - (width - 3)) as usize, x.len())
    ))
}

fn abbrev(a: &[Value]) -> Result<Value> {
    want("abbrev", a, 2)?;
    let w = int_arg("abbrev", a, 0)?;
    let x = str_arg("abbrev", a, 1)?;
    if w < 4 {
        return Ok(s(x));
    }
    Ok(s(abbreviate_full(x, 0, w).unwrap_or_default()))
}

fn abbrevboth(a: &[Value]) -> Result<Value> {
    want("abbrevboth", a, 3)?;
    let (left, right) = (int_arg("abbrevboth", a, 0)?, int_arg("abbrevboth", a, 1)?);
    let x = str_arg("abbrevboth", a, 2)?;
    if right < 4 || left > 0 && right < 7 {
        return Ok(s(x));
    }
    Ok(s(abbreviate_full(x, left, right).unwrap_or_default()))
}

/// goutils `WrapCustom` (byte offsets, wraps at spaces).
fn wrap_custom(x: &str, width: i64, nl: &str, long_words: bool) -> String {
    if x.is_empty() {
        return String::new();
    }
    let nl = if nl.is_empty() { "\n" } else { nl };
    let width = width.max(1) as usize;
    let b = x.as_bytes();
    let len = b.len();
    let mut offset = 0;
    let mut out = Vec::<u8>::new();
    while len - offset > width {
        if b[offset] == b' ' {
            offset += 1;
            continue;
        }
        let end = width + offset + 1;
        let space = b[offset..end].iter().rposition(|c| *c == b' ');
        if let Some(sp) = space {
            let at = sp + offset;
            out.extend_from_slice(&b[offset..at]);
            out.extend_from_slice(nl.as_bytes());
            offset = at + 1;
        } else if long_words {
            let end = width + offset;
            out.extend_from_slice(&b[offset..end]);
            out.extend_from_slice(nl.as_bytes());
            offset += width;
        } else {
            let end = width + offset;
            match b[end..].iter().position(|c| *c == b' ') {
                None => {
                    out.extend_from_slice(&b[offset..]);
                    offset = len;
                }
                Some(i) => {
                    let at = i + end;
                    out.extend_from_slice(&b[offset..at]);
                    out.extend_from_slice(nl.as_bytes());
                    offset = at + 1;
                }
            }
        }
    }
    out.extend_from_slice(&b[offset..]);
    String::from_utf8_lossy(&out).into_owned()
}

fn wrap(a: &[Value]) -> Result<Value> {
    want("wrap", a, 2)?;
    let w = int_arg("wrap", a, 0)?;
    Ok(s(wrap_custom(str_arg("wrap", a, 1)?, w, "", false)))
}

fn wrap_with(a: &[Value]) -> Result<Value> {
    want("wrapWith", a, 3)?;
    let w = int_arg("wrapWith", a, 0)?;
    let sep = str_arg("wrapWith", a, 1)?;
    Ok(s(wrap_custom(str_arg("wrapWith", a, 2)?, w, sep, true)))
}

/// Go's `%q` (`strconv.Quote`).
pub(crate) fn go_quote(x: &str) -> String {
    let mut out = String::with_capacity(x.len() + 2);
    out.push('"');
    for c in x.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || (c != ' ' && c.is_whitespace()) || c == '\u{FEFF}' => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote(a: &[Value]) -> Result<Value> {
    let parts: Vec<String> = a
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .map(|v| go_quote(&strval(v)))
        .collect();
    Ok(s(parts.join(" ")))
}

fn squote(a: &[Value]) -> Result<Value> {
    let parts: Vec<String> = a
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .map(|v| format!("'{}'", fmt_v(v)))
        .collect();
    Ok(s(parts.join(" ")))
}

fn cat(a: &[Value]) -> Result<Value> {
    let parts: Vec<String> = a
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .map(fmt_v)
        .collect();
    Ok(s(parts.join(" ")))
}

/// Results longer than this are an error rather than an allocation the
/// process cannot survive (Go would panic too, later).
const MAX_OUTPUT: usize = 16 << 20;

fn indent_str(name: &str, n: i64, x: &str) -> Result<String> {
    let n = n.max(0) as u64;
    let lines = x.matches('\n').count() as u64 + 1;
    if n.saturating_mul(lines) > MAX_OUTPUT as u64 {
        return Err(fail(name, "strings: Repeat output length overflow"));
    }
    let pad = " ".repeat(n as usize);
    Ok(format!("{pad}{}", x.replace('\n', &format!("\n{pad}"))))
}

fn indent(a: &[Value]) -> Result<Value> {
    want("indent", a, 2)?;
    let body = indent_str("indent", int_arg("indent", a, 0)?, str_arg("indent", a, 1)?)?;
    Ok(s(body))
}

fn nindent(a: &[Value]) -> Result<Value> {
    want("nindent", a, 2)?;
    let body = indent_str(
        "nindent",
        int_arg("nindent", a, 0)?,
        str_arg("nindent", a, 1)?,
    )?;
    Ok(s(format!("\n{body}")))
}

/// `strings.Replace(src, old, new, -1)`, including Go's rule for an empty `old`.
fn replace(a: &[Value]) -> Result<Value> {
    want("replace", a, 3)?;
    let (old, new, src) = (
        str_arg("replace", a, 0)?,
        str_arg("replace", a, 1)?,
        str_arg("replace", a, 2)?,
    );
    if old.is_empty() {
        let mut out = String::from(new);
        for c in src.chars() {
            out.push(c);
            out.push_str(new);
        }
        return Ok(s(out));
    }
    Ok(s(src.replace(old, new)))
}

fn plural(a: &[Value]) -> Result<Value> {
    want("plural", a, 3)?;
    let (one, many) = (str_arg("plural", a, 0)?, str_arg("plural", a, 1)?);
    Ok(s(if int_arg("plural", a, 2)? == 1 {
        one
    } else {
        many
    }))
}

/// `strings.Split`, including Go's rule for an empty separator (split into characters).
pub(crate) fn go_split(x: &str, sep: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        let chars: Vec<String> = x.chars().map(String::from).collect();
        if n > 0 && (n as usize) < chars.len() {
            let mut head: Vec<String> = chars[..n as usize - 1].to_vec();
            let used: usize = head.iter().map(String::len).sum();
            head.push(x[used..].to_string());
            return head;
        }
        return chars;
    }
    if n < 0 {
        x.split(sep).map(String::from).collect()
    } else {
        x.splitn(n as usize, sep).map(String::from).collect()
    }
}

fn split_map(name: &str, a: &[Value], n: Option<i64>) -> Result<Value> {
    let sep = str_arg(name, a, 0)?;
    let orig = str_arg(name, a, a.len() - 1)?;
    let mut m = BTreeMap::new();
    for (i, part) in go_split(orig, sep, n.unwrap_or(-1)).into_iter().enumerate() {
        m.insert(Arc::<str>::from(format!("_{i}")), s(part));
    }
    Ok(map_value(m))
}

fn splitn(a: &[Value]) -> Result<Value> {
    want("splitn", a, 3)?;
    let n = int_arg("splitn", a, 1)?;
    split_map("splitn", a, Some(n))
}

fn split_list(a: &[Value]) -> Result<Value> {
    want("splitList", a, 2)?;
    let sep = str_arg("splitList", a, 0)?;
    Ok(strings(go_split(str_arg("splitList", a, 1)?, sep, -1)))
}

/// Sprig's `strslice`: list elements (nils dropped) or the value itself, as strings.
pub(crate) fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

fn join(a: &[Value]) -> Result<Value> {
    want("join", a, 2)?;
    let sep = str_arg("join", a, 0)?;
    Ok(s(strslice(&a[1]).join(sep)))
}

fn sort_alpha(a: &[Value]) -> Result<Value> {
    want("sortAlpha", a, 1)?;
    match &a[0] {
        Value::List(_) => {
            let mut v = strslice(&a[0]);
            v.sort();
            Ok(strings(v))
        }
        other => Ok(strings([strval(other)])),
    }
}
