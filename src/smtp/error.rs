//! What an SMTP send produced when it did not deliver: the step that failed, the server's reply
//! (code and text) when there was one, and whether retrying can help.

use std::fmt;

/// The step of an SMTP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Building the mail (nothing was sent, no connection made).
    Compose,
    /// TCP connect, greeting and EHLO.
    Connect,
    /// STARTTLS or the implicit TLS handshake.
    Tls,
    /// Authentication.
    Auth,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`.
    Rcpt,
    /// `DATA` and the message itself.
    Data,
}

impl Step {
    /// The step's name as shown: `connect`, `TLS`, `AUTH`, `MAIL`, `RCPT`, `DATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compose => "compose",
            Self::Connect => "connect",
            Self::Tls => "TLS",
            Self::Auth => "AUTH",
            Self::Mail => "MAIL",
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a failure came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The server answered with a negative reply (see `code`).
    Reply,
    /// The connection could not be made or broke.
    Network,
    /// The TLS handshake failed (certificate, protocol) or STARTTLS was required and not offered.
    Tls,
    /// A step took longer than its timeout.
    Timeout,
    /// The mail or the configuration is unusable (bad recipient, AUTH refused over cleartext,
    /// no common AUTH mechanism, unreadable client certificate).
    Invalid,
}

/// A failed SMTP send. Its text never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Where it failed.
    pub step: Step,
    /// How.
    pub kind: FailureKind,
    /// The server's reply code, when it answered.
    pub code: Option<u16>,
    /// The server's reply text, or a description of the failure.
    pub text: String,
}

impl SendError {
    pub(crate) fn new(step: Step, kind: FailureKind, text: impl Into<String>) -> Self {
        Self {
            step,
            kind,
            code: None,
            text: text.into(),
        }
    }

    /// Maps lettre's error at `step`, keeping the reply code and text.
    pub(crate) fn from_lettre(step: Step, e: &lettre::transport::smtp::Error) -> Self {
        let code = e.status().map(u16::from);
        let kind = if code.is_some() {
            FailureKind::Reply
        } else if e.is_timeout() {
            FailureKind::Timeout
        } else if e.is_tls() || caused_by_tls(e) {
            FailureKind::Tls
        } else if e.is_client() {
            FailureKind::Invalid
        } else {
            FailureKind::Network
        };
        // lettre's Display is "permanent error (550): text" or "network error: ..."; keep the
        // reply text alone when there is a reply, the whole chain otherwise.
        let mut text = match code {
            Some(_) => reply_text(e),
            None => e.to_string(),
        };
        let mut source = std::error::Error::source(e);
        if code.is_none() {
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
        }
        // A TLS failure during STARTTLS or the implicit handshake is reported as such.
        let step = if kind == FailureKind::Tls && step == Step::Connect {
            Step::Tls
        } else {
            step
        };
        Self {
            step,
            kind,
            code,
            text,
        }
    }

    /// Whether trying again later may succeed: 4xx replies, network, TLS and timeouts are
    /// transient; 5xx replies (535 included) and invalid mail or configuration are permanent.
    pub fn is_transient(&self) -> bool {
        match (self.kind, self.code) {
            (FailureKind::Reply, Some(c)) => (400..500).contains(&c),
            // A reply we could not read as a code: the server is misbehaving; try again later.
            (FailureKind::Reply, None) => true,
            (FailureKind::Network | FailureKind::Tls | FailureKind::Timeout, _) => true,
            (FailureKind::Invalid, _) => false,
        }
    }
}

/// Whether a rustls error is somewhere in the chain (lettre reports handshake failures as
/// connection errors; tokio-rustls wraps them in `io::Error`).
fn caused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    let full = e.to_string();
    // "permanent error (550): 5.1.1 no such user" -> "5.1.1 no such user"
    match full.split_once("): ") {
        Some((_, t)) => t.trim().to_owned(),
        None => full,
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "{} failed: {c} {}", self.step, self.text),
            None => write!(f, "{} failed: {}", self.step, self.text),
        }
    }
}

impl std::error::Error for SendError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> SendError {
        SendError {
            step: Step::Rcpt,
            kind: FailureKind::Reply,
            code: Some(code),
            text: "x".into(),
        }
    }

    #[test]
    fn classification() {
        assert!(reply(451).is_transient());
        assert!(reply(421).is_transient());
        assert!(!reply(550).is_transient());
        assert!(!reply(535).is_transient());
        assert!(SendError::new(Step::Connect, FailureKind::Network, "refused").is_transient());
        assert!(SendError::new(Step::Tls, FailureKind::Tls, "bad cert").is_transient());
        assert!(!SendError::new(Step::Compose, FailureKind::Invalid, "bad rcpt").is_transient());
        assert_eq!(reply(550).to_string(), "RCPT failed: 550 x");
    }
}
