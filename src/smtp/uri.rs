//! The reference's SMTP connection URI (`smtp://user:pass@host:port/?skip_ssl_verify=true`),
//! parsed by us: lettre's own URL parser gives `smtp://` another meaning (cleartext) and ignores
//! the reference's query parameters. The password is a [`Secret`]; `Debug` and `Display` mask it.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::config::Secret;

/// How the connection is secured, from the scheme and `disable_starttls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// `smtp://`: plain TCP, then STARTTLS; sending fails when the server does not offer it.
    StartTlsRequired,
    /// `smtp://...?disable_starttls=true`: STARTTLS when the server offers it, else cleartext.
    /// The reference behaves this way (its mail library's default policy is opportunistic),
    /// although its documentation calls the mode cleartext.
    StartTlsOpportunistic,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
}

/// A parsed connection URI.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUri {
    /// How the connection is secured.
    pub security: Security,
    /// The host dialled (a name or an IP address, brackets removed).
    pub host: String,
    /// The port: from the URI, else 587 for `smtp` and 465 for `smtps`.
    pub port: u16,
    /// The user name, URL-decoded (`None` when the URI has no user info: no AUTH).
    pub user: Option<String>,
    /// The password, URL-decoded.
    pub password: Option<Secret>,
    /// `skip_ssl_verify=true`: accept any server certificate.
    pub skip_ssl_verify: bool,
    /// `server_name=...`: the name the certificate is verified against (and sent as SNI),
    /// for implicit TLS and STARTTLS alike; the host otherwise.
    pub server_name: Option<String>,
}

/// Why a connection URI was refused. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UriError(pub String);

/// Default ports when the URI has none: submission for STARTTLS, submissions for implicit TLS.
pub const DEFAULT_SMTP_PORT: u16 = 587;
/// See [`DEFAULT_SMTP_PORT`].
pub const DEFAULT_SMTPS_PORT: u16 = 465;

impl SmtpUri {
    /// Parses a connection URI. Unknown query parameters are returned as warnings (the
    /// reference ignores them).
    ///
    /// # Errors
    /// Another scheme, no host, a port out of range, a flag that is not a boolean.
    pub fn parse(text: &str) -> Result<(SmtpUri, Vec<String>), UriError> {
        let text = text.trim();
        // Parse errors from `url` may quote the input; say what is wrong without it.
        let url = url::Url::parse(text).map_err(|e| {
            UriError(format!(
                "{} is not a valid URI ({e})",
                crate::config::mask_url(text)
            ))
        })?;
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => {
                return Err(UriError(format!(
                    "scheme {other:?} is not supported; use smtp (STARTTLS) or smtps (implicit TLS)"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => {
                return Err(UriError(
                    "no host: write smtp://user:password@host:port/".into(),
                ))
            }
        };
        // `url` keeps unknown schemes' ports as given; 0 is never a mail server.
        let port = match url.port() {
            Some(0) => return Err(UriError("port 0 is not a valid port".into())),
            Some(p) => p,
            None if implicit => DEFAULT_SMTPS_PORT,
            None => DEFAULT_SMTP_PORT,
        };
        let decode = |s: &str, what: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| UriError(format!("the {what} is not valid URL-encoded UTF-8")))
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u, "user")?),
        };
        let password = match url.password() {
            None => None,
            Some(p) => Some(Secret::new(decode(p, "password")?)),
        };
        let mut uri = SmtpUri {
            security: if implicit {
                Security::ImplicitTls
            } else {
                Security::StartTlsRequired
            },
            host,
            port,
            user,
            password,
            skip_ssl_verify: false,
            server_name: None,
        };
        let mut warnings = Vec::new();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "skip_ssl_verify" => uri.skip_ssl_verify = parse_bool(&k, &v)?,
                "disable_starttls" => {
                    if parse_bool(&k, &v)? {
                        if implicit {
                            warnings.push("disable_starttls has no effect with smtps:// (implicit TLS)".into());
                        } else {
                            uri.security = Security::StartTlsOpportunistic;
                        }
                    }
                }
                "server_name" if !v.trim().is_empty() => {
                    uri.server_name = Some(v.trim().to_owned());
                }
                "server_name" => {}
                other => warnings.push(format!(
                    "unknown parameter {other:?} ignored (known: skip_ssl_verify, disable_starttls, server_name)"
                )),
            }
        }
        Ok((uri, warnings))
    }

    /// The name the server certificate must match: `server_name`, else the host.
    pub fn tls_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.host)
    }

    /// Whether the host is this machine (AUTH over cleartext is allowed only there).
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
    }
}

/// Everything but RFC 3986's unreserved characters is encoded in the user name when shown.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Go's `strconv.ParseBool`, which the reference uses for these flags.
fn parse_bool(key: &str, value: &str) -> Result<bool, UriError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(UriError(format!(
            "{key}={other:?} is not a boolean (use true or false)"
        ))),
    }
}

impl fmt::Display for SmtpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::ImplicitTls => "smtps",
            _ => "smtp",
        };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.user {
            let u = percent_encoding::utf8_percent_encode(u, USERINFO);
            write!(f, "{u}")?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/", self.host, self.port)?;
        } else {
            write!(f, "{}:{}/", self.host, self.port)?;
        }
        let mut params = Vec::new();
        if self.skip_ssl_verify {
            params.push("skip_ssl_verify=true".to_owned());
        }
        if self.security == Security::StartTlsOpportunistic {
            params.push("disable_starttls=true".to_owned());
        }
        if let Some(n) = &self.server_name {
            params.push(format!("server_name={n}"));
        }
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for SmtpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUri({self})")
    }
}

impl serde::Serialize for SmtpUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SmtpUri {
        SmtpUri::parse(s).unwrap().0
    }

    #[test]
    fn the_six_modes() {
        let u = parse("smtp://username:password@server:2525/");
        assert_eq!(u.security, Security::StartTlsRequired);
        assert_eq!((u.host.as_str(), u.port), ("server", 2525));
        assert!(!u.skip_ssl_verify);
        let u = parse("smtp://username:password@server:2525/?skip_ssl_verify=true");
        assert_eq!(
            (u.security, u.skip_ssl_verify),
            (Security::StartTlsRequired, true)
        );
        let u = parse("smtp://username:password@server:2525/?disable_starttls=true");
        assert_eq!(u.security, Security::StartTlsOpportunistic);
        let u = parse("smtps://username:password@server:465/");
        assert_eq!(
            (u.security, u.skip_ssl_verify),
            (Security::ImplicitTls, false)
        );
        let u = parse("smtps://username:password@server:465/?skip_ssl_verify=true");
        assert_eq!(
            (u.security, u.skip_ssl_verify),
            (Security::ImplicitTls, true)
        );
        let u = parse(
            "smtps://username:password@subdomain.my-mailserver.com:1234/?server_name=my-mailserver.com",
        );
        assert_eq!(u.host, "subdomain.my-mailserver.com");
        assert_eq!(u.tls_name(), "my-mailserver.com");
    }

    #[test]
    fn credentials_are_url_decoded_and_masked() {
        let u =
            parse("smtp://some-user%40mailgun.example.org:df2a%2Fpw%3A@smtp.eu.mailgun.org:587");
        assert_eq!(u.user.as_deref(), Some("some-user@mailgun.example.org"));
        assert_eq!(u.password.as_ref().unwrap().expose(), "df2a/pw:");
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("df2a"), "{shown}");
        assert!(
            shown.contains("some-user%40mailgun.example.org:***@smtp.eu.mailgun.org:587/"),
            "{shown}"
        );
        let u = parse("smtp://[::1]:25/");
        assert_eq!((u.host.as_str(), u.user.is_none()), ("::1", true));
        assert!(u.is_loopback());
        assert_eq!(u.to_string(), "smtp://[::1]:25/");
    }

    #[test]
    fn defaults_and_errors() {
        assert_eq!(parse("smtp://h").port, 587);
        assert_eq!(parse("smtps://h").port, 465);
        let err = |s: &str| SmtpUri::parse(s).unwrap_err().0;
        assert!(err("http://u:secret@h/").contains("scheme \"http\""));
        assert!(err("smtp://u:secret@h:99999/").contains("not a valid URI"));
        assert!(!err("smtp://u:secret@h:99999/").contains("secret"));
        assert!(err("smtp://h:0/").contains("port 0"));
        assert!(err("smtp:///").contains("no host"));
        assert!(err("smtp://h/?skip_ssl_verify=yes").contains("not a boolean"));
        let (_, w) = SmtpUri::parse("smtp://h/?legacy_ssl=true").unwrap();
        assert!(w[0].contains("legacy_ssl"), "{w:?}");
    }
}
