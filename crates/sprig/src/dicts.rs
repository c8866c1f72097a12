//! Sprig's dict functions over `map[string]interface{}`, with mergo's merge
//! rules for `merge`/`mergeOverwrite`. gotmpl's maps are immutable and
//! shared, so `set`, `unset` and `merge*` return an updated copy instead of
//! changing the map in place (see the crate README).

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{Result, Value};

use crate::lists::list;
use crate::value::{
    fail, is_empty, map_arg, map_value, s, str_arg, strings, strval, want, want_min, Map,
};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[
    ("dict", dict),
    ("get", get),
    ("set", set),
    ("unset", unset),
    ("hasKey", has_key),
    ("pluck", pluck),
    ("keys", keys),
    ("values", values),
    ("pick", |a| pick_omit("pick", a, true)),
    ("omit", |a| pick_omit("omit", a, false)),
    ("merge", |a| merge("merge", a, false)),
    ("mustMerge", |a| merge("mustMerge", a, false)),
    ("mergeOverwrite", |a| merge("mergeOverwrite", a, true)),
    ("mustMergeOverwrite", |a| {
        merge("mustMergeOverwrite", a, true)
    }),
    ("deepCopy", |a| want("deepCopy", a, 1).map(|_| a[0].clone())),
    ("mustDeepCopy", |a| {
        want("mustDeepCopy", a, 1).map(|_| a[0].clone())
    }),
    ("dig", dig),
];

fn dict(a: &[Value]) -> Result<Value> {
    let mut m = BTreeMap::new();
    for pair in a.chunks(2) {
        let key = Arc::<str>::from(strval(&pair[0]));
        m.insert(key, pair.get(1).cloned().unwrap_or_else(|| s("")));
    }
    Ok(map_value(m))
}

fn get(a: &[Value]) -> Result<Value> {
    want("get", a, 2)?;
    let m = map_arg("get", a, 0)?;
    Ok(m.get(str_arg("get", a, 1)?)
        .cloned()
        .unwrap_or_else(|| s("")))
}

fn set(a: &[Value]) -> Result<Value> {
    want("set", a, 3)?;
    let mut m = map_arg("set", a, 0)?;
    let key = str_arg("set", a, 1)?;
    Arc::make_mut(&mut m).insert(key.into(), a[2].clone());
    Ok(Value::Map(m))
}

fn unset(a: &[Value]) -> Result<Value> {
    want("unset", a, 2)?;
    let mut m = map_arg("unset", a, 0)?;
    let key = str_arg("unset", a, 1)?;
    Arc::make_mut(&mut m).remove(key);
    Ok(Value::Map(m))
}

fn has_key(a: &[Value]) -> Result<Value> {
    want("hasKey", a, 2)?;
    let m = map_arg("hasKey", a, 0)?;
    Ok(Value::Bool(m.contains_key(str_arg("hasKey", a, 1)?)))
}

fn pluck(a: &[Value]) -> Result<Value> {
    want_min("pluck", a, 1)?;
    let key = str_arg("pluck", a, 0)?;
    let mut out = Vec::new();
    for i in 1..a.len() {
        if let Some(v) = map_arg("pluck", a, i)?.get(key) {
            out.push(v.clone());
        }
    }
    Ok(list(out))
}

fn keys(a: &[Value]) -> Result<Value> {
    let mut out = Vec::new();
    for i in 0..a.len() {
        out.extend(map_arg("keys", a, i)?.keys().map(|k| k.to_string()));
    }
    Ok(strings(out))
}

fn values(a: &[Value]) -> Result<Value> {
    want("values", a, 1)?;
    Ok(list(map_arg("values", a, 0)?.values().cloned().collect()))
}

fn pick_omit(name: &str, a: &[Value], keep: bool) -> Result<Value> {
    want_min(name, a, 1)?;
    let m = map_arg(name, a, 0)?;
    let mut listed = Vec::with_capacity(a.len() - 1);
    for i in 1..a.len() {
        listed.push(str_arg(name, a, i)?);
    }
    let out = m
        .iter()
        .filter(|(k, _)| listed.contains(&k.as_ref()) == keep)
        .map(|(k, v)| (Arc::clone(k), v.clone()))
        .collect();
    Ok(map_value(out))
}

/// mergo's map merge: `src` fills keys `dst` lacks or holds empty, maps merge
/// recursively, and with `overwrite` scalars and lists from `src` win.
fn merge_into(dst: &mut BTreeMap<Arc<str>, Value>, src: &Map, overwrite: bool) {
    for (k, sv) in src.iter() {
        let dv = dst.get(k);
        match sv {
            Value::Nil => {
                if overwrite {
                    dst.insert(Arc::clone(k), Value::Nil);
                }
                continue;
            }
            Value::Map(sm) => {
                if let Some(Value::Map(dm)) = dv {
                    let mut merged = dm.as_ref().clone();
                    merge_into(&mut merged, sm, overwrite);
                    dst.insert(Arc::clone(k), map_value(merged));
                    continue;
                }
                if dv.is_some_and(|d| !is_empty(d)) {
                    continue;
                }
            }
            Value::List(_) if dv.is_some_and(|d| !is_empty(d)) && !overwrite => continue,
            _ => {}
        }
        let dv = dst.get(k);
        if overwrite || dv.is_none_or(is_empty) {
            dst.insert(Arc::clone(k), sv.clone());
        }
    }
}

fn merge(name: &str, a: &[Value], overwrite: bool) -> Result<Value> {
    want_min(name, a, 1)?;
    let mut dst = map_arg(name, a, 0)?.as_ref().clone();
    for i in 1..a.len() {
        let src = map_arg(name, a, i)?;
        merge_into(&mut dst, &src, overwrite);
    }
    Ok(map_value(dst))
}

fn dig(a: &[Value]) -> Result<Value> {
    if a.len() < 3 {
        return Err(fail("dig", "dig needs at least three arguments"));
    }
    let Value::Map(mut m) = a[a.len() - 1].clone() else {
        return Err(fail(
            "dig",
            "interface conversion: interface {} is not map[string]interface {}",
        ));
    };
    let default = &a[a.len() - 2];
    let keys = &a[..a.len() - 2];
    for (i, k) in keys.iter().enumerate() {
        let Value::String(k) = k else {
            return Err(fail(
                "dig",
                "interface conversion: interface {} is not string",
            ));
        };
        let Some(step) = m.get(k.as_ref()).cloned() else {
            return Ok(default.clone());
        };
        if i == keys.len() - 1 {
            return Ok(step);
        }
        match step {
            Value::Map(next) => m = next,
            _ => {
                return Err(fail(
                    "dig",
                    "interface conversion: interface {} is not map[string]interface {}",
                ))
            }
        }
    }
    Ok(default.clone())
}
