//! The mutation engine: one to four stacked edits of a corpus entry. Byte-level edits (bit flips,
//! interesting bytes, deletions, duplications, truncation), dictionary tokens, splices with
//! another corpus entry, and, for inputs that parse as JSON, structure-aware edits of one node
//! (another type, a removed or renamed key, a duplicated element, deep nesting, extreme numbers,
//! odd strings) written back as JSON.

use serde_json::{Map, Number, Value};

/// Largest input produced: bigger ones are cut.
const MAX_LEN: usize = 64 * 1024;

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xc3, 0xe2, b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b'\n',
    b'%', b'&', b'=', b'@', b'/', b'?', b'#', b'-', b'.',
];

/// Values that stress parsers and converters, for structure-aware edits.
fn odd_value(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..14) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => Value::from(rng.i64(..)),
        3 => Value::from(u64::MAX),
        4 => Number::from_f64(1e300).map_or(Value::Null, Value::Number),
        5 => Number::from_f64(-0.0).map_or(Value::Null, Value::Number),
        6 => Value::String(String::new()),
        7 => Value::String("é😀\u{0}\u{7f}\"\\ \t\n".into()),
        8 => Value::String("x".repeat(rng.usize(..5000))),
        9 => Value::Array(Vec::new()),
        10 => Value::Object(Map::new()),
        11 => {
            let mut v = Value::from(1);
            for _ in 0..rng.usize(1..200) {
                v = if rng.bool() {
                    Value::Array(vec![v])
                } else {
                    let mut m = Map::new();
                    m.insert("a".into(), v);
                    Value::Object(m)
                };
            }
            v
        }
        12 => Value::String("%zz%00+&=?#".into()),
        _ => Value::from(rng.f64() * 1e6),
    }
}

/// A random node of `v`, as a mutable reference (the root included).
fn pick<'a>(rng: &mut fastrand::Rng, v: &'a mut Value) -> &'a mut Value {
    let len = match &*v {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => 0,
    };
    if len == 0 || rng.u8(..3) == 0 {
        return v;
    }
    let i = rng.usize(..len);
    match v {
        Value::Array(a) => pick(rng, &mut a[i]),
        Value::Object(m) => pick(rng, m.values_mut().nth(i).expect("i < len")),
        other => other,
    }
}

/// Flips snake_case to PascalCase and back: the two ctx styles.
fn restyle(key: &str) -> String {
    if key.contains('_') || key.starts_with(|c: char| c.is_ascii_lowercase()) {
        key.split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    } else {
        let mut out = String::new();
        for (i, c) in key.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }
}

fn json_edit(rng: &mut fastrand::Rng, mut v: Value) -> Vec<u8> {
    let node = pick(rng, &mut v);
    match (rng.u8(..6), node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let key = m
                .keys()
                .nth(rng.usize(..m.len()))
                .cloned()
                .unwrap_or_default();
            m.shift_remove(&key);
        }
        (1, Value::Object(m)) if !m.is_empty() => {
            let key = m
                .keys()
                .nth(rng.usize(..m.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(val) = m.shift_remove(&key) {
                m.insert(restyle(&key), val);
            }
        }
        (2, Value::Array(a)) if !a.is_empty() => {
            let el = a[rng.usize(..a.len())].clone();
            a.push(el);
        }
        (3, Value::Object(m)) => {
            let key = ["", "id", "recipient", "Recipient", "template_data", "x"][rng.usize(..6)];
            m.insert(key.into(), odd_value(rng));
        }
        (_, node) => *node = odd_value(rng),
    }
    let out = if rng.bool() {
        serde_json::to_vec(&v)
    } else {
        serde_json::to_vec_pretty(&v)
    };
    out.unwrap_or_default()
}

fn byte_edit(rng: &mut fastrand::Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[&str]) {
    let at = |rng: &mut fastrand::Rng, len: usize| rng.usize(..=len);
    match rng.u8(..8) {
        0 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] ^= 1 << rng.u8(..8);
        }
        1 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] = INTERESTING[rng.usize(..INTERESTING.len())];
        }
        2 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=16)).min(input.len());
            input.drain(start..end);
        }
        3 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=32)).min(input.len());
            let chunk = input[start..end].to_vec();
            let to = at(rng, input.len());
            input.splice(to..to, chunk);
        }
        4 if !dict.is_empty() => {
            let token = dict[rng.usize(..dict.len())].as_bytes();
            let to = at(rng, input.len());
            input.splice(to..to, token.iter().copied());
        }
        5 if !corpus.is_empty() => {
            let other = &corpus[rng.usize(..corpus.len())];
            let keep = at(rng, input.len());
            let from = at(rng, other.len());
            input.truncate(keep);
            input.extend_from_slice(&other[from..]);
        }
        6 => {
            let keep = at(rng, input.len());
            input.truncate(keep);
        }
        _ => {
            let to = at(rng, input.len());
            input.insert(to, rng.u8(..));
        }
    }
}

/// A mutated copy of a random corpus entry.
pub(super) fn mutate(rng: &mut fastrand::Rng, corpus: &[Vec<u8>], dict: &[&str]) -> Vec<u8> {
    let mut input = corpus[rng.usize(..corpus.len())].clone();
    for _ in 0..rng.usize(1..=4) {
        let structured = rng.u8(..2) == 0;
        match serde_json::from_slice::<Value>(&input) {
            Ok(v) if structured => input = json_edit(rng, v),
            _ => byte_edit(rng, &mut input, corpus, dict),
        }
    }
    input.truncate(MAX_LEN);
    input
}
