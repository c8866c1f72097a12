//! Composing the mail for one message: From (with the display name, RFC 2047-encoded when not
//! ASCII), To, Subject, Date, a Message-ID derived from the message id, the configured headers,
//! and the plain-text body with the HTML body as a `multipart/alternative` when there is one.
//!
//! A recipient that is not one RFC 5322 address (or carries CR/LF, a header injection) is refused
//! here, before any connection is made.

use std::time::SystemTime;

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Address;

use super::error::{FailureKind, SendError, Step};
use crate::message::Message;

/// Who mails are from and what every mail carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The From address (and envelope sender).
    pub address: Address,
    /// The From display name, when set.
    pub name: Option<String>,
    /// Headers added to every mail, in order (validated names and values).
    pub headers: Vec<(String, String)>,
}

/// Headers we set ourselves; configured headers may not replace them.
pub const RESERVED_HEADERS: [&str; 9] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "bcc",
];

/// A mail ready to send: built once per message and reused by every attempt, so retries carry
/// the same Message-ID and Date.
#[derive(Debug, Clone)]
pub struct PreparedMail {
    /// Envelope sender and recipient.
    pub envelope: Envelope,
    /// The formatted message (CRLF line ends, ASCII).
    pub bytes: Vec<u8>,
    /// The Message-ID header's value, `<...@...>`.
    pub message_id: String,
}

fn invalid(text: impl Into<String>) -> SendError {
    SendError::new(Step::Compose, FailureKind::Invalid, text)
}

/// Parses a recipient: one address, bare (`a@example.com`) or with a name
/// (`Ann <a@example.com>`); control characters are refused outright.
///
/// # Errors
/// A compose-step [`SendError`] (permanent) saying why.
pub fn recipient(text: &str) -> Result<Mailbox, SendError> {
    if text.chars().any(char::is_control) {
        return Err(invalid(
            "the recipient contains control characters (CR/LF); refused as a header injection",
        ));
    }
    let text = text.trim();
    text.parse::<Mailbox>().map_err(|e| {
        invalid(format!(
            "the recipient {text:?} is not an email address ({e})"
        ))
    })
}

/// The Message-ID for a message: `<id@from-domain>` with the id's characters limited to those
/// allowed there, or a random one when the message has no id.
pub fn message_id(id: Option<&str>, from: &Address) -> String {
    let local: String = id
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let local = local.trim_matches('.');
    let local = if local.is_empty() || local.contains("..") {
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        local.to_owned()
    };
    format!("<{local}@{}>", from.domain())
}

/// Builds the mail for `message`, dated `date`.
///
/// # Errors
/// An invalid recipient (nothing is sent), or a mail lettre cannot format.
pub fn compose(
    sender: &Sender,
    message: &Message,
    date: SystemTime,
) -> Result<PreparedMail, SendError> {
    let to = recipient(&message.recipient)?;
    let from = Mailbox::new(sender.name.clone(), sender.address.clone());
    let message_id = message_id(message.id.as_deref(), &sender.address);
    // A subject is one line; a template's stray newline must not start a new header.
    let subject: String = message
        .subject
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(to.clone())
        .subject(subject)
        .date(date)
        .message_id(Some(message_id.clone()));
    for (name, value) in &sender.headers {
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| invalid(format!("header name {name:?} is not valid")))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let envelope = Envelope::new(Some(sender.address.clone()), vec![to.email])
        .map_err(|e| invalid(format!("envelope: {e}")))?;
    builder = builder.envelope(envelope.clone());
    let mail = match message.html_body.as_deref().filter(|h| !h.is_empty()) {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            message.body.clone(),
            html.to_owned(),
        )),
        None => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(message.body.clone()),
        ),
    }
    .map_err(|e| invalid(format!("the mail cannot be built: {e}")))?;
    Ok(PreparedMail {
        envelope,
        bytes: mail.formatted(),
        message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> Sender {
        Sender {
            address: "hello@example.org".parse().unwrap(),
            name: Some("Zoë & Co".into()),
            headers: vec![("X-SES-CONFIGURATION-SET".into(), "my-set".into())],
        }
    }

    fn msg(recipient: &str, html: Option<&str>) -> Message {
        let mut m = Message::from_json(
            r#"{"id":"3f2a/7","recipient":"x","template_type":"stub","subject":"Grüße","body":"plain body"}"#.as_bytes(),
        )
        .unwrap();
        m.recipient = recipient.into();
        m.html_body = html.map(str::to_owned);
        m
    }

    #[test]
    fn headers_and_parts() {
        let p = compose(
            &sender(),
            &msg("ann@example.com", Some("<p>html</p>")),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let text = String::from_utf8(p.bytes.clone()).unwrap();
        assert!(text.is_ascii());
        assert!(text.contains("From: =?utf-8?b?"), "{text}");
        assert!(text.contains("<hello@example.org>"), "{text}");
        assert!(text.contains("To: ann@example.com\r\n"), "{text}");
        assert!(text.contains("Subject: =?utf-8?"), "{text}");
        assert!(
            text.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Message-ID: <3f2a/7@example.org>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("X-SES-CONFIGURATION-SET: my-set\r\n"),
            "{text}"
        );
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/html; charset=utf-8"),
            "{text}"
        );
        assert_eq!(p.envelope.to()[0].to_string(), "ann@example.com");
    }

    #[test]
    fn bad_recipients_are_refused() {
        for bad in [
            "a@b\r\nBcc: victim@example.com",
            "not an address",
            "",
            "a@b, c@d",
        ] {
            let e = compose(&sender(), &msg(bad, None), SystemTime::now()).unwrap_err();
            assert_eq!(
                (e.step, e.is_transient()),
                (Step::Compose, false),
                "{bad:?}"
            );
        }
        let named = compose(
            &sender(),
            &msg("Ann <ann@example.com>", None),
            SystemTime::now(),
        );
        assert_eq!(
            named.unwrap().envelope.to()[0].to_string(),
            "ann@example.com"
        );
    }

    #[test]
    fn message_ids() {
        let a: Address = "x@mail.example".parse().unwrap();
        assert_eq!(message_id(Some("abc-1"), &a), "<abc-1@mail.example>");
        assert_eq!(message_id(Some("a b<c>"), &a), "<a-b-c-@mail.example>");
        let r1 = message_id(None, &a);
        assert!(r1.starts_with('<') && r1.ends_with("@mail.example>"));
        assert_ne!(r1, message_id(None, &a));
    }
}
