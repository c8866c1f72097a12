//! Lazy conversion of a JSON-text ctx into Jsonnet values.
//!
//! Templates read a handful of ctx fields, but a ctx carries much more (the whole identity, the
//! request headers, both bodies); converting all of it into jrsonnet values up front was most of
//! the cost of a render. This module owns the JSON-text path of [`super::CtxRef::Json`]: the text
//! is validated once, copied once into an `Rc<str>`, and every JSON object becomes a jrsonnet
//! object whose fields are thunks over byte ranges of that text. A field is converted only when
//! the template (or the manifest writer) reads it, and an object read that way is itself lazy.
//! Arrays are converted when their field is read, element by element (object elements are lazy
//! objects), and scalars exactly as jrsonnet's own `Val::deserialize` converts them.
//!
//! The result must be indistinguishable from eager `Val::deserialize` of the same text: the
//! validation pass accepts and rejects exactly what the eager parse did (same parser, same
//! recursion limit, same error message), so no error can appear later, when a field is read.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::rc::Rc;

use jrsonnet_evaluator::error::{Error as JError, ErrorKind};
use jrsonnet_evaluator::val::ThunkValue;
use jrsonnet_evaluator::{IStr, NumValue, ObjValueBuilder, Val};
use jrsonnet_gcmodule::Trace;
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Converts the JSON `text` into a Jsonnet value whose objects convert their fields on first
/// read.
///
/// # Errors
/// `text` is not JSON, or is JSON that eager conversion rejects (a number out of range, a lone
/// surrogate escape, nesting past serde_json's recursion limit): the error is serde_json's, with
/// its line and column, exactly as eager conversion reported it.
pub(super) fn ctx_from_json(text: &str) -> Result<Val, serde_json::Error> {
    // Lazy fields are converted long after this call returns, so whatever eager conversion would
    // have rejected anywhere in the text has to be rejected now. A syntax-only scan (`RawValue`,
    // `IgnoredAny`) would let out-of-range numbers, lone surrogates and over-deep nesting through.
    serde_json::from_str::<Validated>(text)?;
    // Copied once per render: thunks outlive the borrowed text (the GC may keep them until the
    // next cycle collection), and an `Rc` lets every thunk share the copy.
    let src: Rc<str> = Rc::from(text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r')));
    convert(&src, 0..src.len())
}

/// Converts the (validated) JSON value at `range` of `src`.
fn convert(src: &Rc<str>, range: Range<usize>) -> Result<Val, serde_json::Error> {
    let text = src.get(range).unwrap_or_default();
    serde_json::Deserializer::from_str(text).deserialize_any(LazyVisitor { src })
}

/// A field of a lazy object: the byte range of its value in the ctx text.
#[derive(Trace)]
struct LazyField {
    #[trace(skip)]
    src: Rc<str>,
    #[trace(skip)]
    range: Range<usize>,
}

impl ThunkValue for LazyField {
    type Output = Val;

    // Not memoised here: objects cache their field values, so this runs once per field read.
    fn get(&self) -> jrsonnet_evaluator::Result<Val> {
        convert(&self.src, self.range.clone()).map_err(|e| {
            // Unreachable for text that passed validation; kept as a clear error rather than a
            // panic.
            JError::from(ErrorKind::RuntimeError(
                format!("ctx is not valid JSON: {e}").into(),
            ))
        })
    }
}

/// Builds one JSON value: scalars as `Val::deserialize` would, arrays element by element, and
/// objects as lazy objects (member ranges only; member values are skipped, not converted).
#[derive(Clone, Copy)]
struct LazyVisitor<'s> {
    src: &'s Rc<str>,
}

impl<'s> LazyVisitor<'s> {
    /// The range of `part`, a slice of the text being deserialized, within `src`.
    fn range_of(&self, part: &str) -> Range<usize> {
        // `part` borrows from `src` (the deserializer reads a slice of it and `RawValue` hands
        // back sub-slices), so the address difference is its offset.
        let start = (part.as_ptr() as usize).wrapping_sub(self.src.as_ptr() as usize);
        start..start + part.len()
    }
}

impl<'de> DeserializeSeed<'de> for LazyVisitor<'_> {
    type Value = Val;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Val, D::Error> {
        deserializer.deserialize_any(self)
    }
}

// The scalar methods mirror jrsonnet's `Val` visitor (integrations/serde.rs) one for one, so a
// value read lazily is the value eager conversion produced.
impl<'de> Visitor<'de> for LazyVisitor<'_> {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val, E> {
        Ok(Val::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val, E> {
        // Numbers are f64 in Jsonnet; large integers round, as they do in eager conversion.
        num(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val, E> {
        num(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val, E> {
        num(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val, E> {
        Ok(Val::string(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        // Elements are converted now (arrays are usually short lists of scalars or small
        // objects); object elements stay lazy inside.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            out.push(item);
        }
        Ok(Val::arr(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut builder = ObjValueBuilder::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key_seed(Key)? {
            let raw: &'de RawValue = map.next_value()?;
            // `thunk` replaces an earlier field of the same name, as eager conversion's `value`
            // does: with duplicate keys the last one wins.
            builder.field(IStr::from(&*key)).thunk(LazyField {
                src: Rc::clone(self.src),
                range: self.range_of(raw.get()),
            });
        }
        Ok(Val::Obj(builder.build()))
    }
}

fn num<E: de::Error>(v: f64) -> Result<Val, E> {
    NumValue::new(v)
        .map(Val::Num)
        .ok_or_else(|| E::custom("only finite numbers are supported"))
}

/// An object key, borrowed from the text unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Parses a whole JSON value the way eager conversion does (`deserialize_any` all the way down,
/// so numbers, string escapes and the recursion limit are all checked) while building nothing.
struct Validated;

impl<'de> de::Deserialize<'de> for Validated {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Validated)
    }
}

impl<'de> Visitor<'de> for Validated {
    type Value = Validated;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self, E> {
        // serde_json never yields a non-finite number, but eager conversion would reject one.
        num::<E>(v).map(|_| Validated)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Validated>()?.is_some() {}
        Ok(Validated)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_key_seed(Key)?.is_some() {
            map.next_value::<Validated>()?;
        }
        Ok(Validated)
    }
}
