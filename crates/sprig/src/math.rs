//! Sprig's integer math (int64 with Go's wrapping and cast conversions), its
//! float math (done in decimal as shopspring/decimal does), rounding and the
//! `until`/`seq` ranges.

use gotmpl::{Result, Value};

use crate::lists::list;
use crate::value::{
    fail, float_arg, int_arg, parse_int, s, str_arg, strval, to_float64, to_int64, want, want_min,
};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[
    ("add", |a| {
        Ok(Value::Int(
            a.iter().map(to_int64).fold(0i64, i64::wrapping_add),
        ))
    }),
    ("add1", |a| {
        want("add1", a, 1).map(|_| Value::Int(to_int64(&a[0]).wrapping_add(1)))
    }),
    ("sub", |a| {
        want("sub", a, 2).map(|_| Value::Int(to_int64(&a[0]).wrapping_sub(to_int64(&a[1]))))
    }),
    ("div", |a| int_div("div", a, i64::wrapping_div)),
    ("mod", |a| int_div("mod", a, i64::wrapping_rem)),
    ("mul", |a| {
        want_min("mul", a, 1)?;
        Ok(Value::Int(
            a.iter().map(to_int64).fold(1i64, i64::wrapping_mul),
        ))
    }),
    ("max", |a| extreme("max", a, i64::max)),
    ("biggest", |a| extreme("biggest", a, i64::max)),
    ("min", |a| extreme("min", a, i64::min)),
    ("maxf", |a| extremef("maxf", a, go_max)),
    ("minf", |a| extremef("minf", a, go_min)),
    ("floor", |a| {
        want("floor", a, 1).map(|_| Value::Float(to_float64(&a[0]).floor()))
    }),
    ("ceil", |a| {
        want("ceil", a, 1).map(|_| Value::Float(to_float64(&a[0]).ceil()))
    }),
    ("round", round),
    ("addf", |a| {
        decimal_op("addf", &Value::Float(0.0), a, Op::Add)
    }),
    ("add1f", |a| {
        want("add1f", a, 1)?;
        decimal_op("add1f", &a[0], &[Value::Int(1)], Op::Add)
    }),
    ("subf", |a| first_then("subf", a, Op::Sub)),
    ("mulf", |a| first_then("mulf", a, Op::Mul)),
    ("divf", |a| first_then("divf", a, Op::Div)),
    ("until", until),
    ("untilStep", until_step),
    ("seq", seq),
    ("randInt", rand_int),
    ("atoi", |a| {
        want("atoi", a, 1)?;
        Ok(Value::Int(
            parse_int(str_arg("atoi", a, 0)?, 10).unwrap_or(0),
        ))
    }),
    ("int", |a| {
        want("int", a, 1).map(|_| Value::Int(to_int64(&a[0])))
    }),
    ("int64", |a| {
        want("int64", a, 1).map(|_| Value::Int(to_int64(&a[0])))
    }),
    ("float64", |a| {
        want("float64", a, 1).map(|_| Value::Float(to_float64(&a[0])))
    }),
    ("toDecimal", |a| {
        want("toDecimal", a, 1)?;
        Ok(Value::Int(parse_int(&strval(&a[0]), 8).unwrap_or(0)))
    }),
];

fn int_div(name: &str, a: &[Value], op: fn(i64, i64) -> i64) -> Result<Value> {
    want(name, a, 2)?;
    let d = to_int64(&a[1]);
    if d == 0 {
        return Err(fail(name, "runtime error: integer divide by zero"));
    }
    Ok(Value::Int(op(to_int64(&a[0]), d)))
}

fn extreme(name: &str, a: &[Value], pick: fn(i64, i64) -> i64) -> Result<Value> {
    want_min(name, a, 1)?;
    Ok(Value::Int(
        a[1..].iter().map(to_int64).fold(to_int64(&a[0]), pick),
    ))
}

fn go_max(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.max(y)
    }
}

fn go_min(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.min(y)
    }
}

fn extremef(name: &str, a: &[Value], pick: fn(f64, f64) -> f64) -> Result<Value> {
    want_min(name, a, 1)?;
    Ok(Value::Float(
        a[1..].iter().map(to_float64).fold(to_float64(&a[0]), pick),
    ))
}

/// Sprig's `round`: round half (or at `roundOn`) away from the floor, at `places`.
fn round(a: &[Value]) -> Result<Value> {
    want_min("round", a, 2)?;
    if a.len() > 3 {
        return want("round", a, 3).map(|_| Value::Nil);
    }
    let val = to_float64(&a[0]);
    let places = int_arg("round", a, 1)? as f64;
    let round_on = if a.len() == 3 {
        float_arg("round", a, 2)?
    } else {
        0.5
    };
    let pow = 10f64.powf(places);
    let digit = pow * val;
    let frac = digit.fract();
    let r = if frac >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    Ok(Value::Float(r / pow))
}

/// A decimal `m × 10^e`, enough of shopspring/decimal for Sprig's float math.
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

const DIV_PRECISION: i32 = 16;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Dec {
    /// `decimal.NewFromFloat`: the shortest decimal that reads back as `f`.
    fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        let txt = format!("{f:e}");
        let (mant, exp) = txt.split_once('e')?;
        let neg = mant.starts_with('-');
        let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
        let frac_len = mant.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
        let m: i128 = digits.parse().ok()?;
        Some(Dec {
            m: if neg { -m } else { m },
            e: exp.parse::<i32>().ok()? - frac_len,
        })
    }

    fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
        let e = a.e.min(b.e);
        let am = a.m.checked_mul(pow10((a.e - e) as u32)?)?;
        let bm = b.m.checked_mul(pow10((b.e - e) as u32)?)?;
        Some((am, bm, e))
    }

    fn add(a: Dec, b: Dec) -> Option<Dec> {
        let (x, y, e) = Dec::align(a, b)?;
        Some(Dec {
            m: x.checked_add(y)?,
            e,
        })
    }

    fn sub(a: Dec, b: Dec) -> Option<Dec> {
        let (x, y, e) = Dec::align(a, b)?;
        Some(Dec {
            m: x.checked_sub(y)?,
            e,
        })
    }

    fn mul(a: Dec, b: Dec) -> Option<Dec> {
        Some(Dec {
            m: a.m.checked_mul(b.m)?,
            e: a.e.checked_add(b.e)?,
        })
    }

    /// `Div`: the quotient rounded half away from zero to 16 decimal places.
    fn div(a: Dec, b: Dec) -> Option<Dec> {
        if b.m == 0 {
            return None;
        }
        let k = a.e - b.e + DIV_PRECISION;
        let (num, den) = if k >= 0 {
            (a.m.checked_mul(pow10(k as u32)?)?, b.m)
        } else {
            (a.m, b.m.checked_mul(pow10((-k) as u32)?)?)
        };
        let q = num / den;
        let r = num % den;
        let q = if r.unsigned_abs() * 2 >= den.unsigned_abs() {
            if (num < 0) != (den < 0) {
                q - 1
            } else {
                q + 1
            }
        } else {
            q
        };
        Some(Dec {
            m: q,
            e: -DIV_PRECISION,
        })
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn exact(self, a: Dec, b: Dec) -> Option<Dec> {
        match self {
            Op::Add => Dec::add(a, b),
            Op::Sub => Dec::sub(a, b),
            Op::Mul => Dec::mul(a, b),
            Op::Div => Dec::div(a, b),
        }
    }

    fn float(self, x: f64, y: f64) -> f64 {
        match self {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            Op::Div => x / y,
        }
    }
}

fn decimal_op(name: &str, first: &Value, rest: &[Value], op: Op) -> Result<Value> {
    let nan = || fail(name, "Cannot create a Decimal from NaN or infinity");
    let mut acc_f = to_float64(first);
    let mut acc = Dec::from_f64(acc_f).ok_or_else(nan)?;
    for v in rest {
        let x = to_float64(v);
        let d = Dec::from_f64(x).ok_or_else(nan)?;
        if d.m == 0 && op == Op::Div {
            return Err(fail(name, "decimal division by 0"));
        }
        // Exact decimal arithmetic; past i128's range fall back to floats.
        match op.exact(acc, d) {
            Some(r) => {
                acc = r;
                acc_f = r.to_f64();
            }
            None => {
                acc_f = op.float(acc_f, x);
                acc = Dec::from_f64(acc_f).ok_or_else(nan)?;
            }
        }
    }
    Ok(Value::Float(acc_f))
}

fn first_then(name: &str, a: &[Value], op: Op) -> Result<Value> {
    want_min(name, a, 1)?;
    decimal_op(name, &a[0], &a[1..], op)
}

/// Sprig's `untilStep` (bounded: a range longer than the budget is an error).
fn step_range(name: &str, start: i64, stop: i64, step: i64) -> Result<Vec<i64>> {
    const MAX: usize = 1_000_000;
    let mut v = Vec::new();
    if stop < start {
        if step >= 0 {
            return Ok(v);
        }
        let mut i = start;
        while i > stop {
            v.push(i);
            if v.len() > MAX {
                return Err(fail(name, "range too long"));
            }
            i = i.saturating_add(step);
        }
        return Ok(v);
    }
    if step <= 0 {
        return Ok(v);
    }
    let mut i = start;
    while i < stop {
        v.push(i);
        if v.len() > MAX {
            return Err(fail(name, "range too long"));
        }
        i = i.saturating_add(step);
    }
    Ok(v)
}

fn ints(v: Vec<i64>) -> Value {
    list(v.into_iter().map(Value::Int).collect())
}

fn until(a: &[Value]) -> Result<Value> {
    want("until", a, 1)?;
    let n = int_arg("until", a, 0)?;
    let step = if n < 0 { -1 } else { 1 };
    Ok(ints(step_range("until", 0, n, step)?))
}

fn until_step(a: &[Value]) -> Result<Value> {
    want("untilStep", a, 3)?;
    let (start, stop, step) = (
        int_arg("untilStep", a, 0)?,
        int_arg("untilStep", a, 1)?,
        int_arg("untilStep", a, 2)?,
    );
    Ok(ints(step_range("untilStep", start, stop, step)?))
}

fn seq(a: &[Value]) -> Result<Value> {
    let mut p = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        p.push(int_arg("seq", a, i)?);
    }
    let r = match p.as_slice() {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            step_range("seq", 1, end.saturating_add(inc), inc)?
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            step_range("seq", *start, end.saturating_add(step), step)?
        }
        [start, step, end] => {
            let mut inc = 1;
            if end < start {
                inc = -1;
                if *step > 0 {
                    return Ok(s(""));
                }
            }
            step_range("seq", *start, end.saturating_add(inc), *step)?
        }
        _ => return Ok(s("")),
    };
    let parts: Vec<String> = r.iter().map(i64::to_string).collect();
    Ok(s(parts.join(" ")))
}

fn rand_int(a: &[Value]) -> Result<Value> {
    want("randInt", a, 2)?;
    let (min, max) = (int_arg("randInt", a, 0)?, int_arg("randInt", a, 1)?);
    if max <= min {
        return Err(fail("randInt", "invalid argument to Intn"));
    }
    Ok(Value::Int(fastrand::i64(min..max)))
}
