//! Guarding jrsonnet, which recurses once per nesting level on the native stack: its parser for
//! every level, its evaluator for chained binary operators (`a + b + c …` nests one level per
//! operator); either would abort the whole process on a template nested deep enough. Every parse
//! of a user's template source goes through [`guarded`], which runs it on a stack segment
//! large enough for the limits here, after [`check`] has refused sources nested deeper; evaluator
//! threads get a stack sized for the same limits.

/// Brackets, and runs of unary operators, deeper than this are refused before parsing. No real
/// template comes near it.
pub const MAX_DEPTH: usize = 500;

/// Expression levels, counted as brackets plus, at each bracket level, the operators,
/// conditionals and functions chained in one expression (up to the next `,` or `;`) and the
/// `local`s in it; an upper bound of the parse tree's depth. A 900-term string concatenation
/// passes. Field access (`a.b.c`) is not counted: jrsonnet handles a chain of 10,000 without
/// recursing.
pub const MAX_LEVELS: usize = 1000;

/// The stack a parse runs on: reserved address space, touched only as deep as the parse goes.
/// Measured per nesting level: ~4 KiB in release builds, ~25 KiB in debug builds.
const PARSE_STACK: usize = 64 * 1024 * 1024;

/// The native stack an evaluator thread needs for [`MAX_LEVELS`] levels: reserved address
/// space, touched only as deep as a render goes. Measured: a chain of 500 `+` took more than
/// 2 MiB in a debug build.
pub(crate) const EVAL_STACK: usize = 64 * 1024 * 1024;

/// Runs `work` (a parse of `source` and whatever walks or drops its tree) on a stack of
/// [`PARSE_STACK`] bytes, once [`check`] has accepted `source`.
pub(crate) fn guarded<R>(source: &str, work: impl FnOnce() -> R) -> Result<R, TooDeep> {
    check(source)?;
    Ok(stacker::grow(PARSE_STACK, work))
}

/// Keywords whose expression nests the rest of the chain (`in` as the binary operator).
const CHAINING: &[&[u8]] = &[b"if", b"function", b"assert", b"error", b"in"];

/// A template nested deeper than the limits, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooDeep {
    pub at: (usize, usize),
    /// Which limit, in words.
    pub what: String,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// Where `source` first nests deeper than [`MAX_DEPTH`] brackets or unary operators, or
/// [`MAX_LEVELS`] expression levels, outside strings and comments.
pub(crate) fn check(source: &str) -> Result<(), TooDeep> {
    let bytes = source.as_bytes();
    // Per open bracket: (operators chained since the last separator, locals).
    let mut levels: Vec<(usize, usize)> = vec![(0, 0)];
    // Brackets plus every level's counts.
    let mut total = 0usize;
    let mut unary_run = 0usize;
    let mut in_operator = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        match b {
            b'"' | b'\'' => i = skip_quoted(bytes, i, b, false),
            b'@' if matches!(bytes.get(i + 1), Some(b'"' | b'\'')) => {
                i = skip_quoted(bytes, i + 1, bytes[i + 1], true);
            }
            b'#' => i = skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'/') => i = skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = find(bytes, i + 2, b"*/").map_or(bytes.len(), |e| e + 2);
            }
            b'|' if bytes[i..].starts_with(b"|||") => {
                i = find(bytes, i + 3, b"|||").map_or(bytes.len(), |e| e + 3);
            }
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &bytes[start..i];
                if let Some(level) = levels.last_mut() {
                    if word == b"local" {
                        level.1 += 1;
                        total += 1;
                    } else if CHAINING.contains(&word) {
                        level.0 += 1;
                        total += 1;
                    }
                }
                unary_run = 0;
                in_operator = false;
            }
            _ => {
                match b {
                    b'(' | b'[' | b'{' => {
                        levels.push((0, 0));
                        total += 1;
                    }
                    b')' | b']' | b'}' if levels.len() > 1 => {
                        let (chain, locals) = levels.pop().unwrap_or_default();
                        total -= 1 + chain + locals;
                    }
                    b',' | b';' => {
                        if let Some(level) = levels.last_mut() {
                            total -= level.0;
                            level.0 = 0;
                        }
                    }
                    _ => {}
                }
                let operator = matches!(
                    b,
                    b'+' | b'-'
                        | b'*'
                        | b'/'
                        | b'%'
                        | b'<'
                        | b'>'
                        | b'='
                        | b'!'
                        | b'&'
                        | b'|'
                        | b'^'
                        | b'~'
                );
                // A run like `==` or `&&` is one operator.
                if operator && !in_operator {
                    if let Some(level) = levels.last_mut() {
                        level.0 += 1;
                        total += 1;
                    }
                }
                in_operator = operator;
                if matches!(b, b'-' | b'+' | b'!' | b'~') {
                    unary_run += 1;
                } else if !b.is_ascii_whitespace() {
                    unary_run = 0;
                }
                i += 1;
            }
        }
        if matches!(b, b'"' | b'\'' | b'@' | b'|') && i > start + 1 {
            // A string is an operand: it ends a run of unary operators and an operator.
            unary_run = 0;
            in_operator = false;
        }
        let brackets = levels.len() - 1;
        if brackets > MAX_DEPTH || unary_run > MAX_DEPTH {
            return Err(TooDeep {
                at: position(source, start),
                what: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        if total > MAX_LEVELS {
            return Err(TooDeep {
                at: position(source, start),
                what: format!(
                    "nested more than {MAX_LEVELS} levels deep (each operator, condition, \
                     function and local chained in one expression is a level)"
                ),
            });
        }
    }
    Ok(())
}

/// The index after the string starting with quote `q` at `start`; verbatim strings (`@"..."`)
/// escape a quote by doubling it, the others with a backslash.
fn skip_quoted(bytes: &[u8], start: usize, q: u8, verbatim: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if !verbatim => i += 2,
            c if c == q => {
                if verbatim && bytes.get(i + 1) == Some(&q) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_line(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| start + p + 1)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn position(source: &str, at: usize) -> (usize, usize) {
    let before = &source[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: &str) -> Option<(usize, usize)> {
        check(source).err().map(|deep| deep.at)
    }

    #[test]
    fn counts_brackets_and_unary_runs_outside_strings_and_comments() {
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(&deep), Ok(()));
        let deeper = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(at(&deeper), Some((1, MAX_DEPTH + 1)));
        let negs = format!("local x = 1;\n{}1", "- ".repeat(MAX_DEPTH + 1));
        assert_eq!(at(&negs), Some((2, 2 * MAX_DEPTH + 1)));
        let quoted = format!(
            "{{a: \"{0}\", b: '{0}', c: @\"{0}\"\"\", d: |||\n  {0}\n|||}} // {0}\n# {0}\n/* {0} */",
            "[".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(check(&quoted), Ok(()));
        assert_eq!(check("{ a: 1 - -1, b: [1, 2] }"), Ok(()));
    }

    #[test]
    fn a_string_ends_a_run_of_unary_operators() {
        // `"a" + "a" + …`: each `+` follows a string, so none of them is a unary run.
        let concat = vec!["'a'"; MAX_DEPTH + 10].join(" + ");
        assert_eq!(check(&concat), Ok(()));
    }

    #[test]
    fn chains_count_as_levels_until_a_separator() {
        let within = vec!["x"; MAX_LEVELS - 10].join(" + ");
        assert_eq!(check(&within), Ok(()));
        let chain = vec!["x"; MAX_LEVELS + 10].join(" + ");
        let err = check(&chain).unwrap_err();
        // The 1001st `+`, after 1001 terms of 4 bytes each ("x + ").
        assert_eq!(err.at, (1, 4 * MAX_LEVELS + 3));
        assert!(err.what.contains("1000 levels"), "{err}");
        // Siblings separated by commas do not add up; a two-byte operator is one.
        let siblings = format!("[{}]", vec!["a == b && c"; 5 * MAX_LEVELS].join(", "));
        assert_eq!(check(&siblings), Ok(()));
        // The 1000th local's `=` is level 1001 (a bind's operators count until its `;`).
        let locals = "local a = 1;\n".repeat(MAX_LEVELS + 1);
        assert_eq!(at(&locals), Some((MAX_LEVELS, 9)));
        let ifs = "if c then 1 else ".repeat(MAX_LEVELS + 1);
        assert!(check(&ifs).is_err());
        // Levels inside a closed bracket no longer count.
        let closed = format!("[{}]", vec!["x"; MAX_LEVELS - 10].join(" + ")).repeat(3);
        assert_eq!(check(&closed), Ok(()));
    }
}
