//! Sprig's list functions over `[]interface{}`: building, slicing, searching
//! and the `must*` variants (which only differ from the plain ones in Go by
//! returning an error instead of panicking; both end the render here).

use gotmpl::{Result, Value};

use crate::value::{
    deep_equal, fail, go_kind, int_arg, is_empty, list_arg, to_int64, want, want_min,
};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[
    ("list", |a| Ok(list(a.to_vec()))),
    ("tuple", |a| Ok(list(a.to_vec()))),
    ("append", |a| push("append", a)),
    ("push", |a| push("push", a)),
    ("mustAppend", |a| push("mustAppend", a)),
    ("mustPush", |a| push("mustPush", a)),
    ("prepend", |a| prepend("prepend", a)),
    ("mustPrepend", |a| prepend("mustPrepend", a)),
    ("first", |a| first("first", a)),
    ("mustFirst", |a| first("mustFirst", a)),
    ("last", |a| last("last", a)),
    ("mustLast", |a| last("mustLast", a)),
    ("rest", |a| rest("rest", a)),
    ("mustRest", |a| rest("mustRest", a)),
    ("initial", |a| initial("initial", a)),
    ("mustInitial", |a| initial("mustInitial", a)),
    ("reverse", |a| reverse("reverse", a)),
    ("mustReverse", |a| reverse("mustReverse", a)),
    ("uniq", |a| uniq("uniq", a)),
    ("mustUniq", |a| uniq("mustUniq", a)),
    ("without", |a| without("without", a)),
    ("mustWithout", |a| without("mustWithout", a)),
    ("has", |a| has("has", a)),
    ("mustHas", |a| has("mustHas", a)),
    ("slice", |a| slice("slice", a)),
    ("mustSlice", |a| slice("mustSlice", a)),
    ("compact", |a| compact("compact", a)),
    ("mustCompact", |a| compact("mustCompact", a)),
    ("chunk", |a| chunk("chunk", a)),
    ("mustChunk", |a| chunk("mustChunk", a)),
    ("concat", concat),
];

pub(crate) fn list(v: Vec<Value>) -> Value {
    Value::List(v.into())
}

fn push(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 2)?;
    let mut v = list_arg(name, &a[0], "push")?.to_vec();
    v.push(a[1].clone());
    Ok(list(v))
}

fn prepend(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 2)?;
    let l = list_arg(name, &a[0], "prepend")?;
    let mut v = Vec::with_capacity(l.len() + 1);
    v.push(a[1].clone());
    v.extend_from_slice(l);
    Ok(list(v))
}

fn first(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 1)?;
    Ok(list_arg(name, &a[0], "find first")?
        .first()
        .cloned()
        .unwrap_or(Value::Nil))
}

fn last(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 1)?;
    Ok(list_arg(name, &a[0], "find last")?
        .last()
        .cloned()
        .unwrap_or(Value::Nil))
}

fn rest(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 1)?;
    let l = list_arg(name, &a[0], "find rest")?;
    Ok(list(l.get(1..).unwrap_or_default().to_vec()))
}

fn initial(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 1)?;
    let l = list_arg(name, &a[0], "find initial")?;
    Ok(list(l[..l.len().saturating_sub(1)].to_vec()))
}

fn reverse(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 1)?;
    let mut v = list_arg(name, &a[0], "find reverse")?.to_vec();
    v.reverse();
    Ok(list(v))
}

fn uniq(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 1)?;
    let mut out: Vec<Value> = Vec::new();
    for item in list_arg(name, &a[0], "find uniq")? {
        if !out.iter().any(|x| deep_equal(item, x)) {
            out.push(item.clone());
        }
    }
    Ok(list(out))
}

fn without(name: &str, a: &[Value]) -> Result<Value> {
    want_min(name, a, 1)?;
    let omit = &a[1..];
    let l = list_arg(name, &a[0], "find without")?;
    Ok(list(
        l.iter()
            .filter(|item| !omit.iter().any(|o| deep_equal(item, o)))
            .cloned()
            .collect(),
    ))
}

fn has(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 2)?;
    if matches!(a[1], Value::Nil) {
        return Ok(Value::Bool(false));
    }
    let l = list_arg(name, &a[1], "find has")?;
    Ok(Value::Bool(l.iter().any(|item| deep_equal(&a[0], item))))
}

fn slice(name: &str, a: &[Value]) -> Result<Value> {
    want_min(name, a, 1)?;
    let l = match &a[0] {
        Value::List(l) => l,
        Value::Nil => {
            return Err(fail(
                name,
                "reflect: call of reflect.Value.Kind on nil Type",
            ))
        }
        other => {
            return Err(fail(
                name,
                format!(
                    "list should be type of slice or array but {}",
                    go_kind(other)
                ),
            ))
        }
    };
    if l.is_empty() {
        return Ok(Value::Nil);
    }
    let start = a.get(1).map_or(0, to_int64);
    let end = if a.len() < 3 {
        l.len() as i64
    } else {
        to_int64(&a[2])
    };
    if start < 0 || end < start || end > l.len() as i64 {
        return Err(fail(
            name,
            format!(
                "reflect: slice index out of range [{start}:{end}] with length {}",
                l.len()
            ),
        ));
    }
    Ok(list(l[start as usize..end as usize].to_vec()))
}

fn compact(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 1)?;
    let l = list_arg(name, &a[0], "compact")?;
    Ok(list(l.iter().filter(|x| !is_empty(x)).cloned().collect()))
}

fn chunk(name: &str, a: &[Value]) -> Result<Value> {
    want(name, a, 2)?;
    let size = int_arg(name, a, 0)?;
    let l = list_arg(name, &a[1], "chunk")?;
    if size <= 0 {
        return Err(fail(name, "runtime error: makeslice: len out of range"));
    }
    Ok(list(
        l.chunks(size as usize).map(|c| list(c.to_vec())).collect(),
    ))
}

fn concat(a: &[Value]) -> Result<Value> {
    let mut out = Vec::new();
    for v in a {
        match v {
            Value::List(l) => out.extend_from_slice(l),
            Value::Nil => {
                return Err(fail(
                    "concat",
                    "reflect: call of reflect.Value.Kind on nil Type",
                ))
            }
            other => {
                return Err(fail(
                    "concat",
                    format!("Cannot concat type {} as list", go_kind(other)),
                ))
            }
        }
    }
    Ok(list(out))
}
