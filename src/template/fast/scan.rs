//! Builds the ctx [`Node`] tree straight from JSON text in one pass, validating as it goes, for
//! the text that is plainly valid (what our own ctx writer produces). Anything this scanner is
//! not sure about (invalid text, `\u` escapes of surrogates, nesting near serde_json's recursion
//! limit) is answered with `None`, and the caller parses the text with serde_json instead
//! (`node.rs`), whose verdict and numbers are then the reference. Numbers other than short
//! integers are read by serde_json itself, from their own slice of the text, so that every
//! number becomes the same `f64` (and is rejected alike) on both roads.

use std::borrow::Cow;

use super::need::Need;
use super::node::{self, Node};
use crate::template::lazy::scan::{find_special, skip_ws, validate_string, PLAIN_MAX_DEPTH};

/// Integers with at most this many digits are converted here (exactly, as serde_json does).
const SHORT_INT_DIGITS: usize = 15;

/// The parts of `text` that `need` asks for, or `None` when serde_json must decide.
pub(super) fn parse<'t>(text: &'t str, need: &Need) -> Option<Node<'t>> {
    let mut s = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let node = s.value(need, 0)?;
    (skip_ws(s.b, s.i) == s.b.len()).then_some(node)
}

struct Scan<'t> {
    text: &'t str,
    b: &'t [u8],
    i: usize,
}

impl<'t> Scan<'t> {
    fn peek(&mut self) -> Option<u8> {
        self.i = skip_ws(self.b, self.i);
        self.b.get(self.i).copied()
    }

    /// Expects `c` next (after whitespace) and steps past it.
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn value(&mut self, need: &Need, depth: usize) -> Option<Node<'t>> {
        Some(match self.peek()? {
            b'{' if depth < PLAIN_MAX_DEPTH => {
                self.i += 1;
                let mut members = Vec::new();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(Node::Obj(members));
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let key = self.string()?;
                    self.eat(b':')?;
                    match need.member(&key) {
                        Some(n) => {
                            let value = self.value(n, depth + 1)?;
                            members.push((key, value));
                        }
                        None => self.skip(depth + 1)?,
                    }
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(node::object(members));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' if depth < PLAIN_MAX_DEPTH => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(Node::Arr(items));
                }
                loop {
                    items.push(self.value(&Need::Full, depth + 1)?);
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(Node::Arr(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => Node::Str(self.string()?),
            b't' => self.literal(b"true", Node::Bool(true))?,
            b'f' => self.literal(b"false", Node::Bool(false))?,
            b'n' => self.literal(b"null", Node::Null)?,
            b'-' | b'0'..=b'9' => Node::Num(self.number()?),
            _ => return None,
        })
    }

    /// Validates the value at the current position and steps past it, building nothing.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' if depth < PLAIN_MAX_DEPTH => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    self.skip_string()?;
                    self.eat(b':')?;
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' if depth < PLAIN_MAX_DEPTH => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.skip_string(),
            b't' => self.literal(b"true", ()),
            b'f' => self.literal(b"false", ()),
            b'n' => self.literal(b"null", ()),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => None,
        }
    }

    fn literal<T>(&mut self, word: &[u8], value: T) -> Option<T> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| {
            self.i = end;
            value
        })
    }

    /// A number by JSON's grammar; short integers converted here, the rest by serde_json.
    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        let negative = self.b[start] == b'-';
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        let int = self.digits();
        if int == 0 || (int > 1 && self.b[int_start] == b'0') {
            return None;
        }
        let mut plain = int <= SHORT_INT_DIGITS;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
            plain = false;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            plain = false;
        }
        if !plain {
            return serde_json::from_str::<f64>(&self.text[start..self.i]).ok();
        }
        let magnitude = self.b[int_start..self.i]
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')) as f64;
        // Exact below 2^53; `-0` is `-0.0`, as serde_json makes it.
        Some(if negative { -magnitude } else { magnitude })
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// The string starting at the current `"`, borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'t, str>> {
        self.i += 1;
        let start = self.i;
        self.i = find_special(self.b, self.i, true);
        if self.b.get(self.i)? == &b'"' {
            self.i += 1;
            return Some(Cow::Borrowed(&self.text[start..self.i - 1]));
        }
        let mut owned = String::with_capacity(self.i - start + 16);
        let mut run = start;
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    owned.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    return Some(Cow::Owned(owned));
                }
                b'\\' => {
                    owned.push_str(&self.text[run..self.i]);
                    owned.push(self.escape()?);
                    run = self.i;
                }
                // A control character, which JSON strings may not contain.
                _ => return None,
            }
            self.i = find_special(self.b, self.i, true);
        }
    }

    /// Validates the string starting at the current `"` and steps past it.
    fn skip_string(&mut self) -> Option<()> {
        self.i = validate_string(self.b, self.i)?;
        Some(())
    }

    /// The character of the escape at the current `\`, stepping past it; `None` for invalid
    /// escapes and for surrogates (which serde_json pairs up by rules left to it).
    fn escape(&mut self) -> Option<char> {
        let c = *self.b.get(self.i + 1)?;
        self.i += 2;
        Some(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = self.b.get(self.i..self.i + 4)?;
                let mut unit = 0u32;
                for &h in hex {
                    unit = unit * 16 + (h as char).to_digit(16)?;
                }
                self.i += 4;
                // `None` for surrogates.
                char::from_u32(unit)?
            }
            _ => return None,
        })
    }
}
