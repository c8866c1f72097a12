//! The request from the template (a channel's `template_request`): the template returns
//! `{url?, method?, headers?, query?, body?}` and this module reads it. What it may change is
//! decided here: a URL must be absolute http(s); headers may not touch framing, our signature
//! and idempotency headers, or (unless allowed) the channel's credentials.

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use serde_json::{Map, Value};

use crate::encode::query_escape;

/// A rendered request, as the template shaped it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaped {
    /// Replaces the channel's URL.
    pub url: Option<Uri>,
    /// Replaces the channel's method.
    pub method: Option<Method>,
    /// Added to (or replacing) the channel's headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Appended to the URL's query, escaped.
    pub query: Vec<(String, String)>,
    /// The body: `None` sends none.
    pub body: Option<ShapedBody>,
}

/// The body the template gave.
#[derive(Debug, Clone, PartialEq)]
pub enum ShapedBody {
    /// A JSON value, encoded for the channel's Content-Type (JSON text, or a form).
    Json(String),
    /// A string, sent verbatim.
    Text(String),
}

/// Why the template's request cannot be sent; names the output field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template request field {field:?}: {reason}")]
pub struct ShapeError {
    /// `url`, `headers.X-Foo`, `query.to`...
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ShapeError {
    ShapeError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Headers a template can never set: framing, and the ones the courier computes per message.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Reads the template's output. `protected` lists the headers that carry the channel's
/// credentials (Authorization, an API-key header, Cookie), refused unless `allow_authorization`.
///
/// # Errors
/// Not an object, an unknown key, or a field of the wrong shape.
pub fn parse(
    payload: &str,
    protected: &[HeaderName],
    allow_authorization: bool,
) -> Result<Shaped, ShapeError> {
    let value: Value =
        serde_json::from_str(payload).map_err(|e| err("(output)", format!("not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(err(
            "(output)",
            "must be an object {url?, method?, headers?, query?, body?}",
        ));
    };
    let mut shaped = Shaped::default();
    if let Some(url) = obj.remove("url").filter(|v| !v.is_null()) {
        let Value::String(url) = url else {
            return Err(err("url", "must be a string"));
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| err("url", format!("{}: {e}", crate::config::mask_url(&url))))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(err(
                "url",
                format!(
                    "{} is not an absolute http(s) URL",
                    crate::config::mask_url(&url)
                ),
            ));
        }
        shaped.url = Some(uri);
    }
    if let Some(m) = obj.remove("method").filter(|v| !v.is_null()) {
        let Value::String(m) = m else {
            return Err(err("method", "must be a string"));
        };
        shaped.method = Some(
            Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .map_err(|_| err("method", format!("{m:?} is not an HTTP method")))?,
        );
    }
    if let Some(h) = obj.remove("headers").filter(|v| !v.is_null()) {
        let Value::Object(h) = h else {
            return Err(err("headers", "must be an object of strings"));
        };
        for (name, v) in h {
            let at = format!("headers.{name}");
            let text = scalar(&v).ok_or_else(|| err(&at, "must be a string"))?;
            let hn = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| err(&at, "not a valid header name"))?;
            if RESERVED.contains(&hn.as_str()) {
                return Err(err(&at, "is set by the courier, not the template"));
            }
            if !allow_authorization && protected.contains(&hn) {
                return Err(err(
                    &at,
                    "carries the channel's credentials; set template_request.allow_authorization to let the template replace it",
                ));
            }
            let hv =
                HeaderValue::from_str(&text).map_err(|_| err(&at, "not a valid header value"))?;
            shaped.headers.push((hn, hv));
        }
    }
    if let Some(q) = obj.remove("query").filter(|v| !v.is_null()) {
        let Value::Object(q) = q else {
            return Err(err("query", "must be an object"));
        };
        for (k, v) in q {
            let at = format!("query.{k}");
            match v {
                Value::Null => {}
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let text = scalar(item)
                            .ok_or_else(|| err(format!("{at}[{i}]"), "must be a string"))?;
                        shaped.query.push((k.clone(), text));
                    }
                }
                v => {
                    let text = scalar(&v).ok_or_else(|| err(&at, "must be a string"))?;
                    shaped.query.push((k, text));
                }
            }
        }
    }
    shaped.body = match obj.remove("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(ShapedBody::Text(s)),
        Some(v) => Some(ShapedBody::Json(v.to_string())),
    };
    if let Some(k) = first_key(&obj) {
        return Err(err(
            k,
            "unknown field (expected url, method, headers, query, body)",
        ));
    }
    Ok(shaped)
}

fn first_key(obj: &Map<String, Value>) -> Option<&str> {
    obj.keys().next().map(String::as_str)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `base` with `query` appended to its query string.
///
/// # Errors
/// The result does not parse (cannot happen for escaped pairs on a valid URI).
pub fn with_query(base: &Uri, query: &[(String, String)]) -> Result<Uri, ShapeError> {
    if query.is_empty() {
        return Ok(base.clone());
    }
    let mut pq = base.path().to_owned();
    let mut sep = '?';
    if let Some(q) = base.query().filter(|q| !q.is_empty()) {
        pq.push('?');
        pq.push_str(q);
        sep = '&';
    }
    for (k, v) in query {
        pq.push(sep);
        pq.push_str(&query_escape(k));
        pq.push('=');
        pq.push_str(&query_escape(v));
        sep = '&';
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|e| err("query", format!("{e}")))?);
    Uri::from_parts(parts).map_err(|e| err("query", e.to_string()))
}

/// The headers that carry a channel's credentials, for [`parse`]'s `protected`.
pub fn credential_headers(auth: Option<&crate::config::Auth>) -> Vec<HeaderName> {
    use crate::config::{Auth, KeyLocation};
    let mut v = vec![header::AUTHORIZATION, header::PROXY_AUTHORIZATION];
    match auth {
        Some(Auth::ApiKey {
            name,
            location: KeyLocation::Header,
            ..
        }) => {
            if let Ok(h) = HeaderName::from_bytes(name.as_bytes()) {
                v.push(h);
            }
        }
        Some(Auth::ApiKey {
            location: KeyLocation::Cookie,
            ..
        }) => v.push(header::COOKIE),
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Vec<HeaderName> {
        vec![header::AUTHORIZATION, HeaderName::from_static("x-api-key")]
    }

    #[test]
    fn reads_every_field() {
        let s = parse(
            r#"{"url": "https://sms.example.com/send?key=1", "method": "get",
                "headers": {"X-Tenant": 42, "Accept": "text/plain"},
                "query": {"to": "+1 555", "tag": ["a", "b&c"], "skip": null},
                "body": {"text": "hi"}}"#,
            &auth(),
            false,
        )
        .unwrap();
        assert_eq!(s.method, Some(Method::GET));
        assert_eq!(s.headers.len(), 2);
        assert_eq!(s.headers[0].1, "42");
        assert_eq!(s.body, Some(ShapedBody::Json(r#"{"text":"hi"}"#.into())));
        let uri = with_query(s.url.as_ref().unwrap(), &s.query).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://sms.example.com/send?key=1&to=%2B1+555&tag=a&tag=b%26c"
        );
        let s = parse(r#"{"body": "raw text"}"#, &auth(), false).unwrap();
        assert_eq!(s.body, Some(ShapedBody::Text("raw text".into())));
        assert_eq!(parse("{}", &auth(), false).unwrap(), Shaped::default());
    }

    #[test]
    fn credentials_are_protected_unless_allowed() {
        for name in ["Authorization", "x-api-key"] {
            let out = format!(r#"{{"headers": {{"{name}": "Bearer evil"}}}}"#);
            let e = parse(&out, &auth(), false).unwrap_err();
            assert_eq!(e.field, format!("headers.{name}"));
            assert!(e.reason.contains("allow_authorization"), "{e}");
            assert!(parse(&out, &auth(), true).is_ok());
        }
        for name in ["Host", "Content-Length", "webhook-signature"] {
            let out = format!(r#"{{"headers": {{"{name}": "x"}}}}"#);
            assert!(parse(&out, &auth(), true).is_err(), "{name}");
        }
    }

    #[test]
    fn bad_shapes_name_the_field() {
        for (out, field) in [
            (r#"{"url": "/relative"}"#, "url"),
            (r#"{"url": "ftp://x.example/"}"#, "url"),
            (r#"{"url": 5}"#, "url"),
            (r#"{"method": "NOT A METHOD"}"#, "method"),
            (r#"{"headers": ["a"]}"#, "headers"),
            (r#"{"headers": {"X-A": {"b": 1}}}"#, "headers.X-A"),
            (r#"{"headers": {"bad name": "1"}}"#, "headers.bad name"),
            (r#"{"query": {"a": [{}]}}"#, "query.a[0]"),
            (r#"{"bodyy": {}}"#, "bodyy"),
            (r#"["body"]"#, "(output)"),
        ] {
            let e = parse(out, &auth(), false).unwrap_err();
            assert_eq!(e.field, field, "{out}: {e}");
        }
    }

    #[test]
    fn credential_headers_follow_the_auth() {
        use crate::config::{Auth, KeyLocation, Secret};
        let key = Auth::ApiKey {
            name: "X-Key".into(),
            value: Secret::new("v"),
            location: KeyLocation::Header,
        };
        assert!(credential_headers(Some(&key)).contains(&HeaderName::from_static("x-key")));
        let cookie = Auth::ApiKey {
            name: "sid".into(),
            value: Secret::new("v"),
            location: KeyLocation::Cookie,
        };
        assert!(credential_headers(Some(&cookie)).contains(&header::COOKIE));
        assert_eq!(credential_headers(None).len(), 2);
    }
}
