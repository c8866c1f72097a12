//! Payload encodings: the rendered JSON as is (compact or pretty), or as an
//! `application/x-www-form-urlencoded` body the way the reference courier builds one.

use serde_json::Value;

/// How a rendered payload goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// The template's JSON, compact.
    #[default]
    Json,
    /// A flat object of strings as `k=v&k2=v2`: keys sorted, values query-escaped, space as `+`.
    Form,
}

/// A payload that cannot be form-encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("form encoding needs a flat object of strings: {0}")]
pub struct EncodeError(String);

/// Form-encodes a rendered JSON object.
///
/// Matches the reference (Go's `url.Values.Encode`): keys sorted, everything but `A-Z a-z 0-9 - _ .
/// ~` percent-escaped, space as `+`. `null` becomes an empty value, as it does there.
///
/// # Errors
/// The payload is not an object, or a field is an object, array, number or boolean.
pub fn form(json: &str) -> Result<String, EncodeError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| EncodeError(format!("invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(EncodeError(format!("the payload is {}", kind(&value))));
    };
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(json.len());
    for (key, value) in pairs {
        let text = match value {
            Value::String(s) => s.as_str(),
            Value::Null => "",
            other => {
                return Err(EncodeError(format!(
                    "field {key:?} is {}; convert it with std.toString or std.manifestJson",
                    kind(other)
                )))
            }
        };
        if !out.is_empty() {
            out.push('&');
        }
        escape(key, &mut out);
        out.push('=');
        escape(text, &mut out);
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` query-escaped as in a form body (space as `+`).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape(s, &mut out);
    out
}

fn escape(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

/// Pretty-prints rendered JSON (two-space indent, keys in the template's sorted order).
pub fn pretty(json: &str) -> String {
    serde_json::from_str::<Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_byte_for_byte() {
        let json = r#"{"to":"+14134242223","from":"+13104661805","body":"test-sms-body"}"#;
        assert_eq!(
            form(json).unwrap(),
            "body=test-sms-body&from=%2B13104661805&to=%2B14134242223"
        );
    }

    #[test]
    fn escapes_like_go_query_escape() {
        let out = form(r#"{"b":"a b*c~d/é&=","a":null}"#).unwrap();
        assert_eq!(out, "a=&b=a+b%2Ac~d%2F%C3%A9%26%3D");
    }

    #[test]
    fn nested_and_non_string_values_are_errors() {
        let e = form(r#"{"to":{"x":1}}"#).unwrap_err().to_string();
        assert!(e.contains("field \"to\" is an object"), "{e}");
        let e = form(r#"{"n":3}"#).unwrap_err().to_string();
        assert!(e.contains("field \"n\" is a number"), "{e}");
        let e = form("[1]").unwrap_err().to_string();
        assert!(e.contains("the payload is an array"), "{e}");
    }
}
