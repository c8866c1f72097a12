//! Go's view of gotmpl values: typed-parameter checks as Go's template engine
//! makes them, `fmt`'s `%v`, Sprig's emptiness rule and spf13/cast conversions.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;

use gotmpl::{Result, TemplateError, Value};

pub(crate) type Map = Arc<BTreeMap<Arc<str>, Value>>;

/// An error raised by function `name`, worded as Go's `error calling NAME: ...`.
pub(crate) fn fail(name: &str, msg: impl Display) -> TemplateError {
    TemplateError::Exec(format!("error calling {name}: {msg}"))
}

pub(crate) fn want(name: &str, args: &[Value], n: usize) -> Result<()> {
    if args.len() == n {
        Ok(())
    } else {
        Err(TemplateError::Exec(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )))
    }
}

pub(crate) fn want_min(name: &str, args: &[Value], n: usize) -> Result<()> {
    if args.len() >= n {
        Ok(())
    } else {
        Err(TemplateError::Exec(format!(
            "wrong number of args for {name}: want at least {n} got {}",
            args.len()
        )))
    }
}

fn wrong_type(name: &str, expected: &str, got: &Value) -> TemplateError {
    match got {
        Value::Nil => TemplateError::Exec(format!("{name}: invalid value; expected {expected}")),
        v => TemplateError::Exec(format!(
            "{name}: wrong type for value; expected {expected}; got {}",
            go_type(v)
        )),
    }
}

/// A `string` parameter: Go accepts only strings there (no conversion).
pub(crate) fn str_arg<'a>(name: &str, args: &'a [Value], i: usize) -> Result<&'a str> {
    match &args[i] {
        Value::String(s) | Value::Safe { s, .. } => Ok(s),
        v => Err(wrong_type(name, "string", v)),
    }
}

/// An `int` parameter: integers only (a float64 is a type error in Go).
pub(crate) fn int_arg(name: &str, args: &[Value], i: usize) -> Result<i64> {
    match &args[i] {
        Value::Int(n) => Ok(*n),
        Value::Uint(n) => Ok(*n as i64),
        v => Err(wrong_type(name, "int", v)),
    }
}

/// A `float64` parameter: numeric constants convert, as Go's untyped constants do.
pub(crate) fn float_arg(name: &str, args: &[Value], i: usize) -> Result<f64> {
    match &args[i] {
        Value::Float(f) => Ok(*f),
        Value::Int(n) => Ok(*n as f64),
        Value::Uint(n) => Ok(*n as f64),
        v => Err(wrong_type(name, "float64", v)),
    }
}

pub(crate) fn bool_arg(name: &str, args: &[Value], i: usize) -> Result<bool> {
    match &args[i] {
        Value::Bool(b) => Ok(*b),
        v => Err(wrong_type(name, "bool", v)),
    }
}

/// A `map[string]interface{}` parameter; a missing value is Go's nil map.
pub(crate) fn map_arg(name: &str, args: &[Value], i: usize) -> Result<Map> {
    match &args[i] {
        Value::Map(m) => Ok(Arc::clone(m)),
        Value::Nil => Ok(Arc::new(BTreeMap::new())),
        v => Err(wrong_type(name, "map[string]interface {}", v)),
    }
}

/// The elements of a slice argument, or Sprig's "Cannot VERB on type KIND".
pub(crate) fn list_arg<'a>(name: &str, v: &'a Value, verb: &str) -> Result<&'a [Value]> {
    match v {
        Value::List(l) => Ok(l),
        Value::Nil => Err(fail(
            name,
            "reflect: call of reflect.Value.Kind on nil Type",
        )),
        other => Err(fail(
            name,
            format!("Cannot {verb} on type {}", go_kind(other)),
        )),
    }
}

pub(crate) fn s(v: impl Into<Arc<str>>) -> Value {
    Value::String(v.into())
}

pub(crate) fn strings(v: impl IntoIterator<Item = String>) -> Value {
    Value::List(v.into_iter().map(s).collect::<Vec<_>>().into())
}

pub(crate) fn map_value(m: BTreeMap<Arc<str>, Value>) -> Value {
    Value::Map(Arc::new(m))
}

/// Go's `%T` of the value as Sprig's functions see it.
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        // Positive JSON integers arrive as unsigned; the reference's data has `int`.
        Value::Int(_) | Value::Uint(_) => "int",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Safe { .. } => "string",
        Value::List(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
        Value::Function(_) => "func",
    }
}

/// Go's `reflect.Kind` name of the value.
pub(crate) fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "invalid",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::Uint(_) => "int",
        Value::Float(_) => "float64",
        Value::String(_) | Value::Safe { .. } => "string",
        Value::List(_) => "slice",
        Value::Map(_) => "map",
        Value::Function(_) => "func",
    }
}

/// Sprig's `empty`: zero numbers, false, empty strings/lists/maps and nil.
pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(n) => *n == 0,
        Value::Uint(n) => *n == 0,
        Value::Float(f) => *f == 0.0,
        Value::String(s) | Value::Safe { s, .. } => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Function(_) => false,
    }
}

/// The shortest decimal digits of a finite, non-zero `f` and its decimal
/// exponent: `f = 0.DIGITS × 10^point`.
fn shortest(f: f64) -> (String, i32) {
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    (digits, exp + 1)
}

fn plain(digits: &str, point: i32) -> String {
    let n = digits.len() as i32;
    if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= n {
        format!("{digits}{}", "0".repeat((point - n) as usize))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    }
}

fn scientific(digits: &str, point: i32, min_exp_digits: usize) -> String {
    let exp = point - 1;
    let mut out = digits[..1].to_string();
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    out.push_str(&format!("{:0w$}", exp.abs(), w = min_exp_digits));
    out
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`).
pub(crate) fn fmt_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (digits, point) = shortest(f);
    let exp = point - 1;
    let body = if !(-4..6).contains(&exp) {
        scientific(&digits, point, 2)
    } else {
        plain(&digits, point)
    };
    if f < 0.0 {
        format!("-{body}")
    } else {
        body
    }
}

/// `encoding/json`'s float encoding; `None` for NaN and infinities.
pub(crate) fn json_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    if f == 0.0 {
        return Some(if f.is_sign_negative() { "-0" } else { "0" }.into());
    }
    let (digits, point) = shortest(f);
    let abs = f.abs();
    let body = if !(1e-6..1e21).contains(&abs) {
        scientific(&digits, point, 1)
    } else {
        plain(&digits, point)
    };
    Some(if f < 0.0 { format!("-{body}") } else { body })
}

/// Go's `fmt.Sprintf("%v", v)`.
pub(crate) fn fmt_v(v: &Value) -> String {
    let mut out = String::new();
    write_v(&mut out, v);
    out
}

fn write_v(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Uint(n) => out.push_str(&n.to_string()),
        Value::Float(f) => out.push_str(&fmt_float(*f)),
        Value::String(s) | Value::Safe { s, .. } => out.push_str(s),
        Value::List(l) => {
            out.push('[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_v(out, item);
            }
            out.push(']');
        }
        Value::Function(_) => out.push_str("<func>"),
    }
}

/// Sprig's `strval`: strings as they are, anything else as `%v`.
pub(crate) fn strval(v: &Value) -> String {
    fmt_v(v)
}

/// Go's `strconv.ParseInt(s, base, 64)` for base 0 (prefixes, underscores) or a fixed base.
pub(crate) fn parse_int(s: &str, base: u32) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits, prefixed) = if base != 0 {
        (base, body, false)
    } else if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        (16, r, true)
    } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        (8, r, true)
    } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        (2, r, true)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..], true)
    } else {
        (10, body, false)
    };
    let cleaned: String = if base == 0 && digits.contains('_') {
        // Go's underscoreOK: only between digits, or after a base prefix.
        let b = digits.as_bytes();
        if b.last() == Some(&b'_')
            || digits.contains("__")
            || (!prefixed && b.first() == Some(&b'_'))
        {
            return None;
        }
        digits.chars().filter(|c| *c != '_').collect()
    } else {
        digits.to_string()
    };
    if cleaned.is_empty() || cleaned.starts_with(['+', '-']) {
        return None;
    }
    let mag = u64::from_str_radix(&cleaned, radix).ok()?;
    if neg {
        if mag > i64::MAX as u64 + 1 {
            None
        } else {
            Some((mag as i64).wrapping_neg())
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// spf13/cast's `trimZeroDecimal`: "3.00" becomes "3" before integer parsing.
fn trim_zero_decimal(s: &str) -> &str {
    let b = s.as_bytes();
    let mut found_zero = false;
    for i in (1..=b.len()).rev() {
        match b[i - 1] {
            b'.' => {
                if found_zero {
                    return &s[..i - 1];
                }
            }
            b'0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// spf13/cast's `ToInt64` (errors become 0, as Sprig ignores them).
pub(crate) fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::Uint(n) => *n as i64,
        Value::Float(f) => *f as i64,
        Value::String(s) => parse_int(trim_zero_decimal(s), 0).unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

/// Go's `strconv.ParseFloat(s, 64)`, close enough for template data.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_start_matches(['+', '-']);
    if matches!(t, "inf" | "infinity" | "nan")
        || t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
    {
        s.parse::<f64>().ok()
    } else {
        None
    }
}

/// spf13/cast's `ToFloat64` (errors become 0).
pub(crate) fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(n) => *n as f64,
        Value::Uint(n) => *n as f64,
        Value::Float(f) => *f,
        Value::String(s) => parse_float(s).unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// Go's `reflect.DeepEqual` on template values.
pub(crate) fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Safe { s: x, .. }, Value::String(y))
        | (Value::String(y), Value::Safe { s: x, .. }) => x == y,
        // JSON data arrives as unsigned when positive; Go's data had `int` there.
        (Value::Int(x), Value::Uint(y)) | (Value::Uint(y), Value::Int(x)) => {
            *x >= 0 && *x as u64 == *y
        }
        (Value::Function(_), _) | (_, Value::Function(_)) => false,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_as_go_does() {
        assert_eq!(fmt_float(1e6), "1e+06");
        assert_eq!(fmt_float(123456.0), "123456");
        assert_eq!(fmt_float(0.0001), "0.0001");
        assert_eq!(fmt_float(0.00001), "1e-05");
        assert_eq!(fmt_float(-2.5), "-2.5");
        assert_eq!(json_float(1e21).as_deref(), Some("1e+21"));
        assert_eq!(json_float(1e-7).as_deref(), Some("1e-7"));
        assert_eq!(json_float(0.00001).as_deref(), Some("0.00001"));
        assert_eq!(json_float(1234567.5).as_deref(), Some("1234567.5"));
    }

    #[test]
    fn parse_int_base_zero() {
        assert_eq!(parse_int("0x1F", 0), Some(31));
        assert_eq!(parse_int("010", 0), Some(8));
        assert_eq!(parse_int("-5", 0), Some(-5));
        assert_eq!(parse_int("1_000", 0), Some(1000));
        assert_eq!(parse_int("1__0", 0), None);
        assert_eq!(parse_int("0x_1", 0), Some(1));
        assert_eq!(parse_int("", 0), None);
        assert_eq!(parse_int("+-1", 0), None);
    }
}
