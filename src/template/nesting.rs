//! Guarding jrsonnet's parser, which recurses once per nesting level on the native stack and
//! would abort the whole process on a deeply nested template (the evaluator grows its stack on
//! demand; the parser does not). Every parse of a user's template source goes through
//! [`parse_stack`], which runs it on a stack segment large enough for [`MAX_DEPTH`] levels of any
//! construct, after [`check`] has refused sources nested deeper than that.

/// Brackets, and runs of unary operators, deeper than this are refused before parsing. No real
/// template comes near it.
pub const MAX_DEPTH: usize = 500;

/// The stack a parse runs on: reserved address space, touched only as deep as the parse goes.
/// Measured per nesting level: ~4 KiB in release builds, ~25 KiB in debug builds.
const PARSE_STACK: usize = 64 * 1024 * 1024;

/// Runs `parse` on a stack of [`PARSE_STACK`] bytes.
pub(crate) fn parse_stack<R>(parse: impl FnOnce() -> R) -> R {
    stacker::grow(PARSE_STACK, parse)
}

/// Where `source` first nests deeper than [`MAX_DEPTH`] (1-based line and column), counting
/// brackets and runs of unary operators outside strings and comments.
pub(crate) fn check(source: &str) -> Result<(), (usize, usize)> {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut unary_run = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
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
            _ => {
                match b {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                if matches!(b, b'-' | b'+' | b'!' | b'~') {
                    unary_run += 1;
                } else if !b.is_ascii_whitespace() {
                    unary_run = 0;
                }
                if depth > MAX_DEPTH || unary_run > MAX_DEPTH {
                    return Err(position(source, i));
                }
                i += 1;
            }
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

    #[test]
    fn counts_brackets_and_unary_runs_outside_strings_and_comments() {
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(&deep), Ok(()));
        let deeper = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(check(&deeper), Err((1, MAX_DEPTH + 1)));
        let negs = format!("local x = 1;\n{}1", "- ".repeat(MAX_DEPTH + 1));
        assert_eq!(check(&negs), Err((2, 2 * MAX_DEPTH + 1)));
        let quoted = format!(
            "{{a: \"{0}\", b: '{0}', c: @\"{0}\"\"\", d: |||\n  {0}\n|||}} // {0}\n# {0}\n/* {0} */",
            "[".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(check(&quoted), Ok(()));
        assert_eq!(check("{ a: 1 - -1, b: [1, 2] }"), Ok(()));
    }
}
