//! The ctx as the fast path reads it: a tree borrowing its strings from the JSON text (or the
//! JSON value), with each object's members sorted by key, as jrsonnet orders them.
//!
//! Built by serde from either ctx form, so what counts as valid JSON (and how a number becomes
//! an `f64`) is serde_json's, exactly as for the evaluator's conversion.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::need::Need;
use crate::message::keys::KeyName;

#[derive(Debug, PartialEq)]
pub(super) enum Node<'t> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'t, str>),
    Arr(Vec<Node<'t>>),
    /// Sorted by key bytes; with duplicate keys in the text, the last one is kept (as the
    /// evaluator's conversion does).
    Obj(Vec<(Cow<'t, str>, Node<'t>)>),
}

impl<'t> Node<'t> {
    /// The member `key` of an object node.
    pub(super) fn member(members: &'t [(Cow<'t, str>, Node<'t>)], key: &str) -> Option<&'t Self> {
        if members.len() <= super::exec::LINEAR_MAX {
            return members.iter().find(|(k, _)| k == key).map(|(_, n)| n);
        }
        members
            .binary_search_by(|(k, _)| k.as_bytes().cmp(key.as_bytes()))
            .ok()
            .map(|i| &members[i].1)
    }
}

/// Builds the parts of a value that `need` asks for; the rest is parsed (and so validated) by
/// the deserializer without building anything.
pub(super) struct Seed<'n>(pub(super) &'n Need);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(NodeVisitor(self.0))
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor(&Need::Full))
    }
}

struct NodeVisitor<'n>(&'n Need);

impl<'de> Visitor<'de> for NodeVisitor<'_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Node::Num(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Node::Num(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() {
            Ok(Node::Num(v))
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(item) = seq.next_element_seed(Seed(&Need::Full))? {
            items.push(item);
        }
        Ok(Node::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Node<'de>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<KeyName<'de>>()? {
            match self.0.member(&key.0) {
                Some(need) => {
                    let value = map.next_value_seed(Seed(need))?;
                    members.push((key.0, value));
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(object(members))
    }
}

/// The object of `members` in text order: sorted by key bytes, the last of duplicate keys kept.
pub(super) fn object<'t>(mut members: Vec<(Cow<'t, str>, Node<'t>)>) -> Node<'t> {
    // Stable: members with the same key keep their order, so the last of each run is the last
    // in the text.
    members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut i = 1;
    while i < members.len() {
        if members[i - 1].0 == members[i].0 {
            members.remove(i - 1);
        } else {
            i += 1;
        }
    }
    Node::Obj(members)
}

/// A value parsed (with every check serde_json makes: numbers in range, valid escapes) and
/// dropped.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        NodeVisitor(&Need::Full).visit_f64(v).map(|_| Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}
