//! `duration` (seconds as Go's `time.Duration.String()`, e.g. "1h2m3s") and
//! `durationRound` (a duration string or nanoseconds rounded down to its
//! largest unit, e.g. "2h"), with Go's `time.ParseDuration` syntax.

use gotmpl::{Result, Value};

use crate::value::{parse_int, s, want};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[("duration", duration), ("durationRound", duration_round)];

const SECOND: u128 = 1_000_000_000;

/// Go's `Duration.String()` for a whole number of seconds.
fn seconds_string(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let u = secs.unsigned_abs();
    let (h, m, sec) = (u / 3600, (u / 60) % 60, u % 60);
    let sign = if secs < 0 { "-" } else { "" };
    if h > 0 {
        format!("{sign}{h}h{m}m{sec}s")
    } else if u >= 60 {
        format!("{sign}{m}m{sec}s")
    } else {
        format!("{sign}{sec}s")
    }
}

fn duration(a: &[Value]) -> Result<Value> {
    want("duration", a, 1)?;
    // Sprig reads a string or an int64; gotmpl has one integer type, taken as int64.
    let n = match &a[0] {
        Value::String(x) => parse_int(x, 10).unwrap_or(0),
        Value::Int(n) => *n,
        Value::Uint(n) => *n as i64,
        _ => 0,
    };
    Ok(s(seconds_string(n)))
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_duration(x: &str) -> Option<i128> {
    let (neg, mut rest) = match x.as_bytes().first() {
        Some(b'-') => (true, &x[1..]),
        Some(b'+') => (false, &x[1..]),
        _ => (false, x),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return None;
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let ns = total as i128;
    Some(if neg { -ns } else { ns })
}

fn duration_round(a: &[Value]) -> Result<Value> {
    want("durationRound", a, 1)?;
    let d: i128 = match &a[0] {
        Value::String(x) => parse_duration(x).unwrap_or(0),
        Value::Int(n) => i128::from(*n),
        Value::Uint(n) => i128::from(*n),
        _ => 0,
    };
    let u = d.unsigned_abs();
    let hour = 3600 * SECOND;
    let day = 24 * hour;
    let units: [(u128, &str); 6] = [
        (365 * day, "y"),
        (30 * day, "mo"),
        (day, "d"),
        (hour, "h"),
        (60 * SECOND, "m"),
        (SECOND, "s"),
    ];
    for (size, name) in units {
        if u > size {
            return Ok(s(format!("{}{name}", u / size)));
        }
    }
    Ok(s("0s"))
}
