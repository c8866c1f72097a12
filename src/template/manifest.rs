//! Writes an evaluated Jsonnet value as compact JSON, capped in size while writing, and keeping
//! track of the output field being written so that errors can name it.
//!
//! jrsonnet's own serde and manifest paths flatten errors to strings or lose the field; this
//! writer keeps the structured error and its position in the output.

use std::fmt::Write as _;

use jrsonnet_evaluator::{ensure_sufficient_stack, Error as JError, Val};

/// Deepest nesting written; lazily infinite structures (`local f() = {a: f()}; f()`) stop here.
pub(super) const MAX_DEPTH: usize = 1000;

/// Why writing stopped.
pub(crate) enum ManifestError {
    /// Evaluating a field failed; the path says which.
    Eval(JError, String),
    /// The output passed the cap.
    TooLarge,
    /// Something that has no JSON form (a function, excessive nesting) at the path.
    Invalid(String, String),
}

enum Seg {
    Field(jrsonnet_evaluator::IStr),
    Index(usize),
}

pub(crate) struct Writer<'a> {
    out: &'a mut String,
    cap: usize,
    path: Vec<Seg>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut String, cap: usize) -> Self {
        Self {
            out,
            cap,
            path: Vec::new(),
        }
    }

    /// The current position as `a.b[0]["odd key"]`; empty at the top level.
    fn path(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Field(name) => {
                    let plain = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit());
                    if plain {
                        if !s.is_empty() {
                            s.push('.');
                        }
                        s.push_str(name);
                    } else {
                        let _ = write!(s, "[{:?}]", name.as_str());
                    }
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        s
    }

    fn check(&self) -> Result<(), ManifestError> {
        if self.out.len() > self.cap {
            Err(ManifestError::TooLarge)
        } else {
            Ok(())
        }
    }

    pub(crate) fn write(&mut self, val: &Val) -> Result<(), ManifestError> {
        if self.path.len() > MAX_DEPTH {
            return Err(ManifestError::Invalid(
                self.path(),
                format!("output nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        match val {
            Val::Null => self.out.push_str("null"),
            Val::Bool(true) => self.out.push_str("true"),
            Val::Bool(false) => self.out.push_str("false"),
            Val::Num(n) => write_num(**n, self.out),
            Val::Str(s) => {
                if self.out.len() + s.len() > self.cap {
                    return Err(ManifestError::TooLarge);
                }
                self.out.push('"');
                s.chunks(&mut |chunk| escape_into(chunk, self.out));
                self.out.push('"');
            }
            Val::Arr(arr) => ensure_sufficient_stack(|| {
                self.out.push('[');
                for (i, item) in arr.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    let item = item.map_err(|e| ManifestError::Eval(e, self.path()))?;
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.write(&item)?;
                    self.path.pop();
                }
                self.out.push(']');
                Ok(())
            })?,
            Val::Obj(obj) => ensure_sufficient_stack(|| {
                obj.run_assertions()
                    .map_err(|e| ManifestError::Eval(e, self.path()))?;
                self.out.push('{');
                for (i, (key, value)) in obj.iter().enumerate() {
                    self.path.push(Seg::Field(key.clone()));
                    let value = value.map_err(|e| ManifestError::Eval(e, self.path()))?;
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.out.push('"');
                    escape_into(&key, self.out);
                    self.out.push_str("\":");
                    self.write(&value)?;
                    self.path.pop();
                }
                self.out.push('}');
                Ok(())
            })?,
            Val::Func(_) => {
                return Err(ManifestError::Invalid(
                    self.path(),
                    "a function has no JSON form (did you forget to call it?)".into(),
                ))
            }
        }
        self.check()
    }
}

/// Writes a number as the payload shows it (shared with the compiled fast path).
pub(super) fn write_num(n: f64, out: &mut String) {
    // Integral values print without a fraction, as every Jsonnet implementation does.
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        let _ = write!(out, "{}", n as i64);
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Writes the inside of a JSON string (shared with the compiled fast path).
pub(super) fn escape_into(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        // Eight bytes at a time to the next byte that needs an escape.
        let i = super::lazy::scan::find_special(bytes, start, true);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::escape_into;

    #[test]
    fn escapes_like_json() {
        let mut out = String::new();
        escape_into("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(out, "a\\\"b\\\\c\\nd\\u0001é");
        let back: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
