//! `urlParse` and `urlJoin`: the parts of Go's `net/url` they use (`Parse`
//! into scheme/host/path/query/fragment/userinfo/opaque, `URL.String` with
//! Go's path and fragment escaping).

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{Result, Value};

use crate::value::{fail, go_kind, map_arg, map_value, s, str_arg, want};
use crate::Entry;

pub(crate) const FUNCS: &[Entry] = &[("urlParse", url_parse), ("urlJoin", url_join)];

fn unhex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding as Go's `unescape` (no `+` rewriting outside queries).
fn unescape(x: &str) -> std::result::Result<String, String> {
    let b = x.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| unhex(*c)),
                b.get(i + 2).and_then(|c| unhex(*c)),
            ) else {
                let end = (i + 3).min(b.len());
                return Err(format!(
                    "invalid URL escape {:?}",
                    String::from_utf8_lossy(&b[i..end])
                ));
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Fragment,
    UserPassword,
}

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
        return false;
    }
    if matches!(
        c,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@'
    ) {
        return match mode {
            Mode::Path => c == b'?',
            Mode::Fragment => false,
            Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
        };
    }
    !(mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*'))
}

fn escape(x: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(x.len());
    for &c in x.as_bytes() {
        if should_escape(c, mode) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

struct Url {
    scheme: String,
    opaque: String,
    userinfo: Option<String>,
    host: String,
    path: String,
    query: String,
    fragment: String,
}

fn parse(raw: &str) -> std::result::Result<Url, String> {
    let (rest, frag) = raw.split_once('#').map_or((raw, ""), |(a, b)| (a, b));
    let fragment = unescape(frag)?;
    let mut scheme = String::new();
    let mut rest = rest;
    for (i, c) in rest.char_indices() {
        if c.is_ascii_alphabetic()
            || (i > 0 && (c.is_ascii_digit() || matches!(c, '+' | '-' | '.')))
        {
            continue;
        }
        if c == ':' {
            if i == 0 {
                return Err("missing protocol scheme".into());
            }
            scheme = rest[..i].to_ascii_lowercase();
            rest = &rest[i + 1..];
        }
        break;
    }
    let (rest, query) = rest.split_once('?').map_or((rest, ""), |(a, b)| (a, b));
    let mut u = Url {
        scheme,
        opaque: String::new(),
        userinfo: None,
        host: String::new(),
        path: String::new(),
        query: query.into(),
        fragment,
    };
    if !rest.starts_with('/') && !u.scheme.is_empty() {
        u.opaque = rest.into();
        return Ok(u);
    }
    let mut rest = rest;
    if rest.starts_with("//") && !rest.starts_with("///") || rest == "//" {
        let after = &rest[2..];
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        rest = &after[end..];
        let host = match authority.rfind('@') {
            Some(at) => {
                u.userinfo = Some(authority[..at].to_string());
                &authority[at + 1..]
            }
            None => authority,
        };
        u.host = unescape(host)?;
    }
    u.path = unescape(rest)?;
    Ok(u)
}

fn url_parse(a: &[Value]) -> Result<Value> {
    want("urlParse", a, 1)?;
    let raw = str_arg("urlParse", a, 0)?;
    let u = parse(raw).map_err(|e| fail("urlParse", format!("unable to parse url: {e}")))?;
    let hostname = match u.host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
        None => match u.host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
            _ => u.host.clone(),
        },
    };
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(Arc::<str>::from(k), s(v));
    };
    put("scheme", u.scheme);
    put("host", u.host);
    put("hostname", hostname);
    put("path", u.path);
    put("query", u.query);
    put("opaque", u.opaque);
    put("fragment", u.fragment);
    put("userinfo", u.userinfo.unwrap_or_default());
    Ok(map_value(m))
}

fn url_join(a: &[Value]) -> Result<Value> {
    want("urlJoin", a, 1)?;
    let d = map_arg("urlJoin", a, 0)?;
    let get = |k: &str| -> Result<String> {
        match d.get(k) {
            None => Ok(String::new()),
            Some(Value::String(v)) => Ok(v.to_string()),
            Some(other) => Err(fail(
                "urlJoin",
                format!(
                    "unable to parse {k} key, must be of type string, but {} found",
                    go_kind(other)
                ),
            )),
        }
    };
    let (scheme, host, path, query, opaque, fragment) = (
        get("scheme")?,
        get("host")?,
        get("path")?,
        get("query")?,
        get("opaque")?,
        get("fragment")?,
    );
    let userinfo = get("userinfo")?;
    let mut out = String::new();
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    if !opaque.is_empty() {
        out.push_str(&opaque);
    } else {
        if !scheme.is_empty() || !host.is_empty() || !userinfo.is_empty() {
            if !host.is_empty() || !path.is_empty() || !userinfo.is_empty() {
                out.push_str("//");
            }
            if !userinfo.is_empty() {
                // Go re-parses the userinfo and rejects characters outside RFC 3986's set.
                let valid = userinfo
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
                if !valid {
                    return Err(fail(
                        "urlJoin",
                        format!("unable to parse userinfo in dict: parse \"proto://{userinfo}@host\": net/url: invalid userinfo"),
                    ));
                }
                let (user, pass) = userinfo
                    .split_once(':')
                    .map_or((userinfo.as_str(), None), |(u, p)| (u, Some(p)));
                out.push_str(&escape(
                    &unescape(user).unwrap_or_default(),
                    Mode::UserPassword,
                ));
                if let Some(p) = pass {
                    out.push(':');
                    out.push_str(&escape(
                        &unescape(p).unwrap_or_default(),
                        Mode::UserPassword,
                    ));
                }
                out.push('@');
            }
            out.push_str(&host);
        }
        let escaped = escape(&path, Mode::Path);
        if !escaped.is_empty() && !escaped.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        if out.is_empty()
            && escaped
                .split('/')
                .next()
                .is_some_and(|seg| seg.contains(':'))
        {
            out.push_str("./");
        }
        out.push_str(&escaped);
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(&escape(&fragment, Mode::Fragment));
    }
    Ok(s(out))
}
