//! Sprig's encodings: base64/base32 (with Go's decoder error texts), sha1,
//! sha256 and adler32 sums, and the JSON functions with `encoding/json`'s
//! output (sorted keys, HTML-safe escapes, Go float syntax, two-space indent).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use gotmpl::{Result, Value};
use sha1::Digest;

use crate::lists::list;
use crate::value::{fail, json_float, map_value, s, str_arg, want};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[
    ("b64enc", |a| {
        enc("b64enc", a, |b| {
            base64::engine::general_purpose::STANDARD.encode(b)
        })
    }),
    ("b64dec", |a| dec("b64dec", a, |x| go_decode(x, &B64))),
    ("b32enc", |a| enc("b32enc", a, b32_encode)),
    ("b32dec", |a| dec("b32dec", a, |x| go_decode(x, &B32))),
    ("sha1sum", |a| {
        enc("sha1sum", a, |b| hex(&sha1::Sha1::digest(b)))
    }),
    ("sha256sum", |a| {
        enc("sha256sum", a, |b| hex(&sha2::Sha256::digest(b)))
    }),
    ("adler32sum", |a| {
        enc("adler32sum", a, |b| adler32(b).to_string())
    }),
    ("toJson", |a| {
        json_fn("toJson", a, Style::Compact, true, false)
    }),
    ("mustToJson", |a| {
        json_fn("mustToJson", a, Style::Compact, true, true)
    }),
    ("toPrettyJson", |a| {
        json_fn("toPrettyJson", a, Style::Pretty, true, false)
    }),
    ("mustToPrettyJson", |a| {
        json_fn("mustToPrettyJson", a, Style::Pretty, true, true)
    }),
    ("toRawJson", |a| {
        json_fn("toRawJson", a, Style::Compact, false, true)
    }),
    ("mustToRawJson", |a| {
        json_fn("mustToRawJson", a, Style::Compact, false, true)
    }),
    ("fromJson", |a| from_json("fromJson", a, false)),
    ("mustFromJson", |a| from_json("mustFromJson", a, true)),
];

fn enc(name: &str, a: &[Value], f: impl Fn(&[u8]) -> String) -> Result<Value> {
    want(name, a, 1)?;
    Ok(s(f(str_arg(name, a, 0)?.as_bytes())))
}

fn dec(
    name: &str,
    a: &[Value],
    f: impl Fn(&str) -> std::result::Result<Vec<u8>, String>,
) -> Result<Value> {
    want(name, a, 1)?;
    // Sprig returns the decoder's error text as the result.
    Ok(s(match f(str_arg(name, a, 0)?) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => e,
    }))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn adler32(b: &[u8]) -> u32 {
    let (mut a, mut s2) = (1u32, 0u32);
    for chunk in b.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            s2 += a;
        }
        a %= 65521;
        s2 %= 65521;
    }
    (s2 << 16) | a
}

const B32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b32_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(5) * 8);
    for chunk in b.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = match chunk.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for i in 0..8 {
            if i < chars {
                out.push(char::from(
                    B32_ALPHABET[((n >> (35 - 5 * i)) & 31) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A padded alphabet for [`go_decode`].
struct Alphabet {
    name: &'static str,
    chars: &'static [u8],
    bits: u32,
    /// Characters per quantum (4 for base64, 8 for base32).
    quantum: usize,
}

const B64: Alphabet = Alphabet {
    name: "base64",
    chars: b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    bits: 6,
    quantum: 4,
};

const B32: Alphabet = Alphabet {
    name: "base32",
    chars: B32_ALPHABET,
    bits: 5,
    quantum: 8,
};

/// Decodes padded base64/base32 as Go's `StdEncoding.DecodeString` does:
/// newlines skipped, and errors as "illegal base64 data at input byte N".
fn go_decode(src: &str, alpha: &Alphabet) -> std::result::Result<Vec<u8>, String> {
    let corrupt = |at: usize| format!("illegal {} data at input byte {at}", alpha.name);
    let src = src.as_bytes();
    let mut out = Vec::new();
    let mut si = 0;
    loop {
        let mut vals = Vec::with_capacity(alpha.quantum);
        let mut pad_at = None;
        while vals.len() < alpha.quantum {
            if si == src.len() {
                if vals.is_empty() {
                    return Ok(out);
                }
                return Err(corrupt(si - vals.len()));
            }
            let c = src[si];
            si += 1;
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c == b'=' {
                pad_at = Some(si - 1);
                break;
            }
            match alpha.chars.iter().position(|x| *x == c) {
                Some(v) => vals.push(v as u32),
                None => return Err(corrupt(si - 1)),
            }
        }
        if let Some(at) = pad_at {
            // The rest of the quantum must be padding, then nothing else.
            let need = alpha.quantum - vals.len();
            let valid_len = if alpha.quantum == 4 {
                vals.len() >= 2
            } else {
                matches!(vals.len(), 2 | 4 | 5 | 7)
            };
            if !valid_len {
                return Err(corrupt(at));
            }
            let mut seen = 1;
            while seen < need {
                if si == src.len() {
                    return Err(corrupt(src.len()));
                }
                let c = src[si];
                si += 1;
                if c == b'\n' || c == b'\r' {
                    continue;
                }
                if c != b'=' {
                    return Err(corrupt(si - 1));
                }
                seen += 1;
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < src.len() {
                return Err(corrupt(si));
            }
        }
        let total_bits = vals.len() as u32 * alpha.bits;
        let mut acc: u64 = 0;
        for v in &vals {
            acc = (acc << alpha.bits) | u64::from(*v);
        }
        let nbytes = (total_bits / 8) as usize;
        acc >>= total_bits - nbytes as u32 * 8;
        for i in (0..nbytes).rev() {
            out.push((acc >> (8 * i)) as u8);
        }
        if pad_at.is_some() {
            return Ok(out);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Compact,
    Pretty,
}

fn json_fn(name: &str, a: &[Value], style: Style, escape_html: bool, must: bool) -> Result<Value> {
    want(name, a, 1)?;
    let mut out = String::new();
    match write_json(&mut out, &a[0], style, escape_html, 0) {
        Ok(()) => Ok(s(out)),
        Err(e) if must => Err(fail(name, e)),
        Err(_) => Ok(s("")),
    }
}

fn write_json_str(out: &mut String, x: &str, escape_html: bool) {
    out.push('"');
    for c in x.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if escape_html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn newline(out: &mut String, style: Style, depth: usize) {
    if style == Style::Pretty {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    }
}

fn write_json(
    out: &mut String,
    v: &Value,
    style: Style,
    escape_html: bool,
    depth: usize,
) -> std::result::Result<(), String> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Uint(n) => out.push_str(&n.to_string()),
        Value::Float(f) => {
            out.push_str(&json_float(*f).ok_or_else(|| {
                format!("json: unsupported value: {}", crate::value::fmt_float(*f))
            })?)
        }
        Value::String(x) | Value::Safe { s: x, .. } => write_json_str(out, x, escape_html),
        Value::List(l) => {
            out.push('[');
            if !l.is_empty() {
                for (i, item) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, style, depth + 1);
                    write_json(out, item, style, escape_html, depth + 1)?;
                }
                newline(out, style, depth);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            if !m.is_empty() {
                for (i, (k, item)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, style, depth + 1);
                    write_json_str(out, k, escape_html);
                    out.push_str(if style == Style::Pretty { ": " } else { ":" });
                    write_json(out, item, style, escape_html, depth + 1)?;
                }
                newline(out, style, depth);
            }
            out.push('}');
        }
        Value::Function(_) => return Err("json: unsupported type: func".into()),
    }
    Ok(())
}

/// JSON into template values the way `json.Unmarshal` into `interface{}` does:
/// every number is a float64.
fn from_serde(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(x) => s(x),
        serde_json::Value::Array(items) => list(items.into_iter().map(from_serde).collect()),
        serde_json::Value::Object(m) => {
            let m: BTreeMap<Arc<str>, Value> = m
                .into_iter()
                .map(|(k, v)| (Arc::from(k), from_serde(v)))
                .collect();
            map_value(m)
        }
    }
}

fn from_json(name: &str, a: &[Value], must: bool) -> Result<Value> {
    want(name, a, 1)?;
    match serde_json::from_str::<serde_json::Value>(str_arg(name, a, 0)?) {
        Ok(v) => Ok(from_serde(v)),
        Err(e) if must => Err(fail(name, e)),
        Err(_) => Ok(Value::Nil),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trip_and_adler() {
        assert_eq!(b32_encode(b"Hello"), "JBSWY3DP");
        assert_eq!(b32_encode(b"f"), "MY======");
        assert_eq!(go_decode("MY======", &B32).as_deref(), Ok(&b"f"[..]));
        assert_eq!(go_decode("Zm9vYg==", &B64).as_deref(), Ok(&b"foob"[..]));
        assert_eq!(
            go_decode("Zm9vYg=", &B64),
            Err("illegal base64 data at input byte 7".to_string())
        );
        assert_eq!(adler32(b"hello"), 103547413);
    }
}
