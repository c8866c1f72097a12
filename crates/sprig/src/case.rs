//! `snakecase`, `kebabcase` and `camelcase` with the word-splitting rules of
//! the xstrings package Sprig uses ("HTTPServer" → "http_server",
//! "Bld4Floor3rd" → "bld4_floor_3rd").

use crate::strings::{go_lower, go_space, go_upper};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Word {
    Invalid,
    Number,
    Upper,
    Alpha,
    Connector,
    Punct,
    Other,
}

fn is_connector(c: char) -> bool {
    c == '-' || c == '_' || go_space(c)
}

/// Letters outside the CJK blocks (xstrings' `isAlphabet`, approximately).
fn is_alpha(c: char) -> bool {
    c.is_alphabetic() && !matches!(c as u32, 0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() && !matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
        || (!c.is_ascii() && !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control())
            && matches!(c, '\u{2010}'..='\u{2027}' | '\u{3000}'..='\u{303F}' | '\u{00A1}' | '\u{00A7}' | '\u{00AB}' | '\u{00B6}' | '\u{00B7}' | '\u{00BB}' | '\u{00BF}')
}

/// Splits off the next word: its kind, the word and the rest.
fn next_word(s: &str) -> (Word, &str, &str) {
    let mut it = s.char_indices().peekable();
    let Some((_, first)) = it.next() else {
        return (Word::Invalid, "", "");
    };
    let end_of = |pred: &dyn Fn(char) -> bool, from: usize| -> usize {
        s[from..]
            .char_indices()
            .find(|(_, c)| !pred(*c))
            .map_or(s.len(), |(i, _)| from + i)
    };
    let first_len = first.len_utf8();
    let end = if is_connector(first) {
        return (
            Word::Connector,
            &s[..end_of(&is_connector, first_len)],
            &s[end_of(&is_connector, first_len)..],
        );
    } else if is_punct(first) {
        let e = end_of(&is_punct, first_len);
        return (Word::Punct, &s[..e], &s[e..]);
    } else if first.is_uppercase() {
        let rest = &s[first_len..];
        match rest.chars().next() {
            None => first_len,
            Some(c) if c.is_uppercase() => {
                // A run of capitals; its last one starts the next word when a
                // lower-case letter follows ("HTTPServer" → "HTTP", "Server").
                let mut end = first_len;
                let mut prev_len = 0;
                let mut stopped_on = None;
                for ch in rest.chars() {
                    if ch.is_uppercase() {
                        prev_len = ch.len_utf8();
                        end += prev_len;
                    } else {
                        stopped_on = Some(ch);
                        break;
                    }
                }
                if let Some(ch) = stopped_on {
                    if is_alpha(ch) {
                        end -= prev_len;
                    }
                }
                end
            }
            Some(c) if is_alpha(c) => end_of(&|c| is_alpha(c) && !c.is_uppercase(), first_len),
            Some(_) => first_len,
        }
    } else if is_alpha(first) {
        end_of(&|c| is_alpha(c) && !c.is_uppercase(), first_len)
    } else if first.is_numeric() {
        return (
            Word::Number,
            &s[..end_of(&char::is_numeric, first_len)],
            &s[end_of(&char::is_numeric, first_len)..],
        );
    } else {
        let e = end_of(
            &|c| !(is_connector(c) || is_alpha(c) || c.is_numeric() || is_punct(c)),
            first_len,
        );
        return (Word::Other, &s[..e], &s[e..]);
    };
    let kind = if first.is_uppercase() {
        Word::Upper
    } else {
        Word::Alpha
    };
    (kind, &s[..end], &s[end..])
}

fn lower_into(out: &mut String, kind: Word, word: &str, connector: char) {
    if kind != Word::Upper && kind != Word::Connector {
        out.push_str(word);
        return;
    }
    for c in word.chars() {
        if is_connector(c) {
            out.push(connector);
        } else if c.is_uppercase() {
            out.push(go_lower(c));
        } else {
            out.push(c);
        }
    }
}

/// xstrings' `camelCaseToLowerCase`, behind `snakecase` and `kebabcase`.
pub(crate) fn to_lower_case(s: &str, connector: char) -> String {
    if s.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(s.len() + 4);
    let (mut wt, mut word, mut rest) = next_word(s);
    while !rest.is_empty() {
        if wt != Word::Connector {
            lower_into(&mut out, wt, word, connector);
        }
        let prev = wt;
        let last = word;
        (wt, word, rest) = next_word(rest);
        match prev {
            Word::Number => {
                while wt == Word::Alpha || wt == Word::Number {
                    lower_into(&mut out, wt, word, connector);
                    (wt, word, rest) = next_word(rest);
                }
                if wt != Word::Invalid && wt != Word::Punct && wt != Word::Connector {
                    out.push(connector);
                }
            }
            Word::Connector => lower_into(&mut out, prev, last, connector),
            Word::Punct => {}
            _ => {
                if wt != Word::Number {
                    if wt != Word::Connector && wt != Word::Punct {
                        out.push(connector);
                    }
                    continue;
                }
                if rest.is_empty() {
                    continue;
                }
                let last = word;
                (wt, word, rest) = next_word(rest);
                if wt != Word::Alpha {
                    lower_into(&mut out, Word::Number, last, connector);
                    if wt != Word::Connector && wt != Word::Punct {
                        out.push(connector);
                    }
                    continue;
                }
                out.push(connector);
                lower_into(&mut out, Word::Number, last, connector);
                while wt == Word::Alpha || wt == Word::Number {
                    lower_into(&mut out, wt, word, connector);
                    (wt, word, rest) = next_word(rest);
                }
                if wt != Word::Invalid && wt != Word::Connector && wt != Word::Punct {
                    out.push(connector);
                }
            }
        }
    }
    lower_into(&mut out, wt, word, connector);
    out
}

/// xstrings' `ToCamelCase`: connectors removed, the letter after one upper-cased.
pub(crate) fn to_camel_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    let mut r0 = None;
    for c in chars.by_ref() {
        if !is_connector(c) {
            r0 = Some(go_upper(c));
            break;
        }
        out.push(c);
    }
    let Some(mut r0) = r0 else {
        return out;
    };
    for c in chars {
        let r1 = r0;
        r0 = c;
        if is_connector(r0) && is_connector(r1) {
            out.push(r1);
            continue;
        }
        if is_connector(r1) {
            r0 = go_upper(r0);
        } else {
            r0 = go_lower(r0);
            out.push(r1);
        }
    }
    out.push(r0);
    out
}
