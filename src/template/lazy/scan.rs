//! The byte scanner behind the lazy ctx: a fast validator that passes ordinary JSON and records
//! where each container starts and ends, the skipping scanner that walks text already known to be
//! valid, and the full serde_json validation (`Validated`) for everything the fast path is unsure
//! about. No jrsonnet types here.

use std::fmt;

use jrsonnet_evaluator::NumValue;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

/// Nesting the fast scanner accepts; serde_json's own limit is 127 levels, and deeper text goes
/// to serde_json so that the limit and its error are serde_json's.
pub(in crate::template) const PLAIN_MAX_DEPTH: usize = 64;
/// Digits in a number the fast scanner accepts; longer numbers go to serde_json, which decides
/// whether they are in range.
pub(super) const PLAIN_MAX_DIGITS: usize = 40;

/// Whether `b` is a JSON value that serde_json certainly accepts, checked quickly. `false`
/// means "not sure": errors, and valid text with constructs whose acceptance depends on
/// serde_json's details (exponents and long numbers, which may be out of range; `\u` escapes of
/// surrogates, which must pair up; nesting near the recursion limit).
///
/// Records where each object and array starts and ends in `containers` (meaningful only when
/// the answer is `true`).
pub(super) fn plainly_valid(b: &[u8], containers: &mut Vec<(usize, usize)>) -> bool {
    let mut check = Check {
        b,
        i: 0,
        containers,
    };
    check.value(0).is_some() && skip_ws(b, check.i) == b.len()
}

/// The fast validating scanner: `None` as soon as something is invalid or not plainly valid.
struct Check<'a> {
    b: &'a [u8],
    i: usize,
    containers: &'a mut Vec<(usize, usize)>,
}

impl Check<'_> {
    /// Records the container that starts at the current position; see [`Check::close`].
    fn open(&mut self) -> usize {
        self.containers.push((self.i, self.i));
        self.i += 1;
        self.containers.len() - 1
    }

    /// Steps past the closing bracket of the container `slot` and records its end.
    fn close(&mut self, slot: usize) -> Option<()> {
        self.i += 1;
        self.containers.get_mut(slot)?.1 = self.i;
        Some(())
    }

    fn peek(&mut self) -> Option<u8> {
        self.i = skip_ws(self.b, self.i);
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' if depth < PLAIN_MAX_DEPTH => {
                let slot = self.open();
                if self.peek()? == b'}' {
                    return self.close(slot);
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    self.string()?;
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.i += 1;
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => return self.close(slot),
                        _ => return None,
                    }
                }
            }
            b'[' if depth < PLAIN_MAX_DEPTH => {
                let slot = self.open();
                if self.peek()? == b']' {
                    return self.close(slot);
                }
                loop {
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => return self.close(slot),
                        _ => return None,
                    }
                }
            }
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, short; exponents are left to serde_json.
    fn number(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int = self.digits();
        if int == 0 || (int > 1 && self.b.get(self.i - int) == Some(&b'0')) {
            return None;
        }
        let mut frac = 0;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            frac = self.digits();
            if frac == 0 {
                return None;
            }
        }
        let plain =
            int + frac <= PLAIN_MAX_DIGITS && !matches!(self.b.get(self.i), Some(b'e' | b'E'));
        plain.then_some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    fn string(&mut self) -> Option<()> {
        self.i = validate_string(self.b, self.i)?;
        Some(())
    }
}

/// Validates the JSON string whose opening `"` is at `i`; the index just past its closing quote.
pub(in crate::template) fn validate_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i = find_special(b, i, true);
        match *b.get(i)? {
            b'"' => {
                i += 1;
                return Some(i);
            }
            b'\\' => {
                i += 2;
                match *b.get(i - 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = b.get(i..i + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        let unit = hex
                            .iter()
                            .fold(0u32, |n, &h| n * 16 + (h as char).to_digit(16).unwrap_or(0));
                        if (0xD800..=0xDFFF).contains(&unit) {
                            return None;
                        }
                        i += 4;
                    }
                    _ => return None,
                }
            }
            // A control character, which JSON strings may not contain.
            _ => return None,
        }
    }
}

pub(in crate::template) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Past the value starting at `i` in valid JSON (no leading whitespace), by scanning it.
pub(super) fn skip_value(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => skip_string(b, i).0,
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = i;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => {
                        i = skip_string(b, i).0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i
        }
        _ => {
            let mut i = i;
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            i
        }
    }
}

/// Past the closing quote of the string starting at `i` in valid JSON, and whether the string
/// has escapes.
pub(super) fn skip_string(b: &[u8], i: usize) -> (usize, bool) {
    let mut i = i + 1;
    let mut escaped = false;
    loop {
        i = find_special(b, i, false);
        match b.get(i) {
            // The escaped character cannot end the string, whatever it is.
            Some(b'\\') => {
                escaped = true;
                i += 2;
            }
            Some(_) => return (i + 1, escaped),
            None => return (b.len(), escaped),
        }
    }
}

/// The first index at or after `i` holding `"`, `\`, or (with `control`) a byte below 0x20; or
/// `b.len()`. Eight bytes at a time, as serde_json does: strings are most of a ctx.
pub(in crate::template) fn find_special(b: &[u8], mut i: usize, control: bool) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        // Each term flags (in its byte's high bit) bytes equal to the character; flags above the
        // first true one may be spurious, so only the lowest flag is used.
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let mut found =
            (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash);
        if control {
            found |= word.wrapping_sub(ONES * 0x20) & !word;
        }
        found &= HIGH;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || (control && c < 0x20) {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// Parses a whole JSON value the way eager conversion does (`deserialize_any` all the way down,
/// so numbers, string escapes and the recursion limit are all checked, and errors carry the same
/// message and position) while building nothing.
pub(super) struct Validated;

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
        NumValue::new(v)
            .map(|_| Validated)
            .ok_or_else(|| E::custom("only finite numbers are supported"))
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
        // Keys are parsed as strings, as eager conversion's `Cow<str>` keys are.
        while map.next_key::<Validated>()?.is_some() {
            map.next_value::<Validated>()?;
        }
        Ok(Validated)
    }
}
