//! Builds the ctx [`Node`] tree straight from a value that serializes to the ctx (the message's
//! view), with no JSON text in between: the tree is the one `scan.rs` would build from
//! `serde_json::to_string` of the same value. Parts the template never reads are walked only to
//! check their nesting, since text nested beyond serde_json's recursion limit would not parse.
//! Anything whose text form is not obviously the same (floats other than `f64`, bytes, enums
//! with data, 128-bit integers, serde_json's raw values, non-string map keys, deep nesting) is
//! answered with `None`, and the caller writes the JSON text instead.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{self, Serialize};

use super::need::Need;
use super::node::{self, Node};
use crate::template::lazy::scan::PLAIN_MAX_DEPTH;

/// The parts of `value`'s ctx that `need` asks for, or `None` when the text road must decide.
/// With `walk_unread` off, the caller vouches that nothing in `value` nests deep enough to be
/// refused, and the parts no template reads are skipped without walking them.
pub(super) fn from_serialize<'n, T: Serialize + ?Sized>(
    value: &T,
    need: &'n Need,
    walk_unread: bool,
) -> Option<Node<'n>> {
    value
        .serialize(Build {
            need: Some(need),
            depth: 0,
            walk_unread,
        })
        .ok()
}

/// Not sure: the caller takes the text road.
#[derive(Debug)]
pub(super) struct Unsure;

impl fmt::Display for Unsure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a plain ctx")
    }
}

impl std::error::Error for Unsure {}

impl ser::Error for Unsure {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unsure
    }
}

/// Builds what `need` asks for; with no need, only checks the nesting and builds `Null`.
#[derive(Clone, Copy)]
struct Build<'n> {
    need: Option<&'n Need>,
    /// Containers around the value.
    depth: usize,
    /// Whether members nothing reads are walked for their nesting (see [`from_serialize`]).
    walk_unread: bool,
}

impl<'n> Build<'n> {
    fn leaf(self, node: Node<'n>) -> Result<Node<'n>, Unsure> {
        Ok(if self.need.is_some() {
            node
        } else {
            Node::Null
        })
    }

    /// The builder for a container's items, one level deeper.
    fn inner(self) -> Result<Self, Unsure> {
        if self.depth >= PLAIN_MAX_DEPTH {
            return Err(Unsure);
        }
        Ok(Build {
            depth: self.depth + 1,
            ..self
        })
    }
}

type R<'n> = Result<Node<'n>, Unsure>;

macro_rules! numbers {
    ($($method:ident: $t:ty),*) => {$(
        // serde_json writes integers as their digits and reads them back exactly as this cast.
        fn $method(self, v: $t) -> R<'n> {
            self.leaf(Node::Num(v as f64))
        }
    )*};
}

impl<'n> ser::Serializer for Build<'n> {
    type Ok = Node<'n>;
    type Error = Unsure;
    type SerializeSeq = Seq<'n>;
    type SerializeTuple = Seq<'n>;
    type SerializeTupleStruct = Seq<'n>;
    type SerializeTupleVariant = ser::Impossible<Node<'n>, Unsure>;
    type SerializeMap = Map<'n>;
    type SerializeStruct = Map<'n>;
    type SerializeStructVariant = ser::Impossible<Node<'n>, Unsure>;

    numbers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);

    fn serialize_bool(self, v: bool) -> R<'n> {
        self.leaf(Node::Bool(v))
    }

    fn serialize_f32(self, _: f32) -> R<'n> {
        Err(Unsure)
    }

    fn serialize_f64(self, v: f64) -> R<'n> {
        if !v.is_finite() {
            // serde_json writes these as `null`.
            return self.leaf(Node::Null);
        }
        if self.need.is_none() {
            return Ok(Node::Null);
        }
        // Through the text, as the other road goes: serde_json's reading need not round-trip.
        let text = serde_json::to_string(&v).map_err(|_| Unsure)?;
        let n = serde_json::from_str::<f64>(&text).map_err(|_| Unsure)?;
        self.leaf(Node::Num(n))
    }

    fn serialize_char(self, v: char) -> R<'n> {
        self.leaf(Node::Str(Cow::Owned(v.to_string())))
    }

    fn serialize_str(self, v: &str) -> R<'n> {
        if self.need.is_none() {
            return Ok(Node::Null);
        }
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }

    fn serialize_bytes(self, _: &[u8]) -> R<'n> {
        Err(Unsure)
    }

    fn serialize_none(self) -> R<'n> {
        self.leaf(Node::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R<'n> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> R<'n> {
        self.leaf(Node::Null)
    }

    fn serialize_unit_struct(self, _: &'static str) -> R<'n> {
        self.leaf(Node::Null)
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> R<'n> {
        self.leaf(Node::Str(Cow::Borrowed(variant)))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> R<'n> {
        if name.starts_with("$serde_json") {
            return Err(Unsure);
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> R<'n> {
        Err(Unsure)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'n>, Unsure> {
        let items = if self.need.is_some() {
            Vec::with_capacity(len.unwrap_or(4))
        } else {
            Vec::new()
        };
        Ok(Seq {
            // Arrays are built whole.
            item: Build {
                need: self.need.map(|_| &Need::Full),
                ..self.inner()?
            },
            items,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Seq<'n>, Unsure> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'n>, Unsure> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsure> {
        Err(Unsure)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Map<'n>, Unsure> {
        // Room for what is built: the members read by name, or all of them.
        let room = match self.need {
            Some(Need::Keys(keys)) => keys.len(),
            Some(Need::Full) => len.unwrap_or(0),
            None => 0,
        };
        Ok(Map {
            of: self.inner()?,
            members: Vec::with_capacity(room),
            key: String::new(),
            keyed: false,
        })
    }

    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Map<'n>, Unsure> {
        if name.starts_with("$serde_json") {
            return Err(Unsure);
        }
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsure> {
        Err(Unsure)
    }
}

struct Seq<'n> {
    item: Build<'n>,
    items: Vec<Node<'n>>,
}

impl<'n> ser::SerializeSeq for Seq<'n> {
    type Ok = Node<'n>;
    type Error = Unsure;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsure> {
        let node = value.serialize(self.item)?;
        if self.item.need.is_some() {
            self.items.push(node);
        }
        Ok(())
    }

    fn end(self) -> R<'n> {
        self.item.leaf(Node::Arr(self.items))
    }
}

impl<'n> ser::SerializeTuple for Seq<'n> {
    type Ok = Node<'n>;
    type Error = Unsure;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsure> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> R<'n> {
        ser::SerializeSeq::end(self)
    }
}

impl<'n> ser::SerializeTupleStruct for Seq<'n> {
    type Ok = Node<'n>;
    type Error = Unsure;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsure> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> R<'n> {
        ser::SerializeSeq::end(self)
    }
}

struct Map<'n> {
    /// The builder of this object's members (their need is looked up per key).
    of: Build<'n>,
    members: Vec<(Cow<'n, str>, Node<'n>)>,
    /// The key of the member being serialized, written into the same buffer for every member:
    /// most members are not built, and those that are borrow their key from the need.
    key: String,
    /// Whether `key` holds a key given by `serialize_key` and not yet used.
    keyed: bool,
}

impl<'n> Map<'n> {
    fn member<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Unsure> {
        let (name, need) = match self.of.need {
            // Read by name: the name is the need's own.
            Some(Need::Keys(keys)) => match keys.iter().find(|(k, _)| &**k == key) {
                Some((k, n)) => (Cow::Borrowed(&**k), Some(n)),
                None => (Cow::Borrowed(""), None),
            },
            Some(full) => (Cow::Owned(key.to_owned()), Some(full)),
            None => (Cow::Borrowed(""), None),
        };
        let Some(need) = need else {
            // Not read: only its nesting is checked (unless the caller has), and nothing is built.
            if !self.of.walk_unread {
                return Ok(());
            }
            return value.serialize(Depth(self.of.depth));
        };
        let node = value.serialize(Build {
            need: Some(need),
            ..self.of
        })?;
        self.members.push((name, node));
        Ok(())
    }

    /// [`Self::member`] under the key `key` serializes to, through the key buffer.
    fn keyed_member<K: Serialize + ?Sized, T: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &T,
    ) -> Result<(), Unsure> {
        let mut text = std::mem::take(&mut self.key);
        text.clear();
        key.serialize(KeyText(Some(&mut text)))?;
        let done = self.member(&text, value);
        self.key = text;
        done
    }

    fn finish(self) -> R<'n> {
        self.of.leaf(node::object(self.members))
    }
}

impl<'n> ser::SerializeMap for Map<'n> {
    type Ok = Node<'n>;
    type Error = Unsure;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsure> {
        self.key.clear();
        key.serialize(KeyText(Some(&mut self.key)))?;
        self.keyed = true;
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsure> {
        if !std::mem::take(&mut self.keyed) {
            return Err(Unsure);
        }
        let text = std::mem::take(&mut self.key);
        let done = self.member(&text, value);
        self.key = text;
        done
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), Unsure> {
        self.keyed_member(key, value)
    }

    fn end(self) -> R<'n> {
        self.finish()
    }
}

impl<'n> ser::SerializeStruct for Map<'n> {
    type Ok = Node<'n>;
    type Error = Unsure;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsure> {
        self.member(key, value)
    }

    fn end(self) -> R<'n> {
        self.finish()
    }
}

/// Walks a value no template reads, as [`Build`] with no need would, building nothing: the same
/// nesting limit and the same refusals (whatever [`Build`] answers [`Unsure`] to), without a
/// node, a member list or a key copy per object.
#[derive(Clone, Copy)]
struct Depth(usize);

impl Depth {
    /// The walker for a container's items, one level deeper.
    fn inner(self) -> Result<Self, Unsure> {
        if self.0 >= PLAIN_MAX_DEPTH {
            return Err(Unsure);
        }
        Ok(Depth(self.0 + 1))
    }
}

macro_rules! fine {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, _: $t) -> Result<(), Unsure> {
            Ok(())
        }
    )*};
}

impl ser::Serializer for Depth {
    type Ok = ();
    type Error = Unsure;
    type SerializeSeq = Depth;
    type SerializeTuple = Depth;
    type SerializeTupleStruct = Depth;
    type SerializeTupleVariant = ser::Impossible<(), Unsure>;
    type SerializeMap = DepthMap;
    type SerializeStruct = DepthMap;
    type SerializeStructVariant = ser::Impossible<(), Unsure>;

    fine!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f64: f64, serialize_char: char, serialize_str: &str,
        serialize_unit_struct: &'static str);

    fn serialize_f32(self, _: f32) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_bytes(self, _: &[u8]) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_none(self) -> Result<(), Unsure> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsure> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Unsure> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Unsure> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsure> {
        if name.starts_with("$serde_json") {
            return Err(Unsure);
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Depth, Unsure> {
        self.inner()
    }

    fn serialize_tuple(self, _: usize) -> Result<Depth, Unsure> {
        self.inner()
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Depth, Unsure> {
        self.inner()
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsure> {
        Err(Unsure)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<DepthMap, Unsure> {
        Ok(DepthMap {
            of: self.inner()?,
            keyed: false,
        })
    }

    fn serialize_struct(self, name: &'static str, _: usize) -> Result<DepthMap, Unsure> {
        if name.starts_with("$serde_json") {
            return Err(Unsure);
        }
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsure> {
        Err(Unsure)
    }
}

/// The element walks of [`Depth`]'s sequences: each element is walked, nothing kept.
macro_rules! walk_elements {
    ($($tr:ident::$method:ident),*) => {$(
        impl ser::$tr for Depth {
            type Ok = ();
            type Error = Unsure;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsure> {
                value.serialize(*self)
            }

            fn end(self) -> Result<(), Unsure> {
                Ok(())
            }
        }
    )*};
}

walk_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

/// An object [`Depth`] walks: its keys are checked (strings only), not kept.
struct DepthMap {
    of: Depth,
    /// Whether a key was given by `serialize_key` and its value is still to come.
    keyed: bool,
}

impl ser::SerializeMap for DepthMap {
    type Ok = ();
    type Error = Unsure;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsure> {
        key.serialize(KeyText(None))?;
        self.keyed = true;
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsure> {
        if !std::mem::take(&mut self.keyed) {
            return Err(Unsure);
        }
        value.serialize(self.of)
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), Unsure> {
        key.serialize(KeyText(None))?;
        value.serialize(self.of)
    }

    fn end(self) -> Result<(), Unsure> {
        Ok(())
    }
}

impl ser::SerializeStruct for DepthMap {
    type Ok = ();
    type Error = Unsure;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsure> {
        value.serialize(self.of)
    }

    fn end(self) -> Result<(), Unsure> {
        Ok(())
    }
}

/// A map key, written into a buffer when there is one: strings only (serde_json would write
/// other keys in ways left to it).
struct KeyText<'k>(Option<&'k mut String>);

macro_rules! refuse {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, _: $t) -> Result<(), Unsure> {
            Err(Unsure)
        }
    )*};
}

impl ser::Serializer for KeyText<'_> {
    type Ok = ();
    type Error = Unsure;
    type SerializeSeq = ser::Impossible<(), Unsure>;
    type SerializeTuple = ser::Impossible<(), Unsure>;
    type SerializeTupleStruct = ser::Impossible<(), Unsure>;
    type SerializeTupleVariant = ser::Impossible<(), Unsure>;
    type SerializeMap = ser::Impossible<(), Unsure>;
    type SerializeStruct = ser::Impossible<(), Unsure>;
    type SerializeStructVariant = ser::Impossible<(), Unsure>;

    refuse!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_bytes: &[u8], serialize_unit_struct: &'static str);

    fn serialize_str(self, v: &str) -> Result<(), Unsure> {
        if let Some(buffer) = self.0 {
            buffer.push_str(v);
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_unit(self) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsure> {
        Err(Unsure)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsure> {
        Err(Unsure)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsure> {
        Err(Unsure)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsure> {
        Err(Unsure)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsure> {
        Err(Unsure)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsure> {
        Err(Unsure)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Unsure> {
        Err(Unsure)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsure> {
        Err(Unsure)
    }
}
