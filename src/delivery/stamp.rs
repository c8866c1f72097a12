//! Per-message headers a channel may add on top of its request: the idempotency key and the
//! Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`). Both carry
//! the message id, so every retry of a message carries the same key.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::ChannelOptions;
use crate::webhook::{self, KeyError, Signer};

/// What a channel stamps on each request; built once per channel.
#[derive(Debug, Default)]
pub struct Stamp {
    signer: Option<Signer>,
    idempotency: Option<HeaderName>,
}

impl Stamp {
    /// The stamp for a channel's options.
    ///
    /// # Errors
    /// A signing secret is unusable (configuration validation normally catches this first).
    pub fn new(options: &ChannelOptions) -> Result<Self, KeyError> {
        Ok(Self {
            signer: options
                .signing
                .as_ref()
                .map(|s| Signer::new(&s.secrets))
                .transpose()?,
            idempotency: options.idempotency_header.clone(),
        })
    }

    /// Whether anything is added at all.
    pub fn is_empty(&self) -> bool {
        self.signer.is_none() && self.idempotency.is_none()
    }

    /// Adds the headers for message `id`, sent at `timestamp` (Unix seconds) with `body`. An id
    /// that is not a valid header value (or, for signing, holds a `.`) is replaced by its
    /// percent-encoded form, so that it stays stable across retries.
    pub fn apply(&self, headers: &mut HeaderMap, id: &str, timestamp: u64, body: &[u8]) {
        if self.is_empty() {
            return;
        }
        let id = safe_id(id);
        let Ok(id_value) = HeaderValue::from_str(&id) else {
            return;
        };
        if let Some(name) = &self.idempotency {
            headers.insert(name.clone(), id_value.clone());
        }
        if let Some(signer) = &self.signer {
            let signature = signer.sign(&id, timestamp, body);
            headers.insert(webhook::ID_HEADER, id_value);
            headers.insert(webhook::TIMESTAMP_HEADER, HeaderValue::from(timestamp));
            if let Ok(mut v) = HeaderValue::from_str(&signature) {
                v.set_sensitive(true);
                headers.insert(webhook::SIGNATURE_HEADER, v);
            }
        }
    }
}

/// `id` with every byte outside `[A-Za-z0-9-_~:]` percent-encoded: a `.` would make the signed
/// content ambiguous, and header values must be visible ASCII.
fn safe_id(id: &str) -> std::borrow::Cow<'_, str> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b':');
    if !id.is_empty() && id.bytes().all(ok) {
        return id.into();
    }
    let mut out = String::with_capacity(id.len() * 3);
    for b in id.bytes() {
        if ok(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, Signing};
    use crate::webhook::Verifier;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn options(sign: bool, idem: Option<&str>) -> ChannelOptions {
        ChannelOptions {
            signing: sign.then(|| Signing {
                secrets: vec![Secret::new(SECRET)],
            }),
            idempotency_header: idem.map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap()),
            ..ChannelOptions::default()
        }
    }

    #[test]
    fn signs_with_the_message_id_and_verifies() {
        let stamp = Stamp::new(&options(true, Some("Idempotency-Key"))).unwrap();
        let mut h = HeaderMap::new();
        stamp.apply(
            &mut h,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(h["webhook-id"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(h["idempotency-key"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(h["webhook-timestamp"], "1614265330");
        assert_eq!(
            h["webhook-signature"],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(h["webhook-signature"].is_sensitive());
    }

    #[test]
    fn awkward_ids_are_encoded_stably() {
        let stamp = Stamp::new(&options(true, Some("X-Key"))).unwrap();
        let mut a = HeaderMap::new();
        let mut b = HeaderMap::new();
        stamp.apply(&mut a, "order.42 é", 1, b"{}");
        stamp.apply(&mut b, "order.42 é", 2, b"{}");
        assert_eq!(a["webhook-id"], "order%2E42%20%C3%A9");
        assert_eq!(a["webhook-id"], b["webhook-id"]);
        assert_eq!(a["x-key"], a["webhook-id"]);
        Verifier::new(&[Secret::new(SECRET)])
            .unwrap()
            .verify(
                a["webhook-id"].to_str().unwrap(),
                "1",
                b"{}",
                a["webhook-signature"].to_str().unwrap(),
                1,
                0,
            )
            .unwrap();
    }

    #[test]
    fn nothing_is_added_unless_configured() {
        let mut h = HeaderMap::new();
        Stamp::new(&ChannelOptions::default())
            .unwrap()
            .apply(&mut h, "id", 1, b"");
        assert!(h.is_empty());
        let mut h = HeaderMap::new();
        Stamp::new(&options(false, Some("Idempotency-Key")))
            .unwrap()
            .apply(&mut h, "id-1", 1, b"");
        assert_eq!(h.len(), 1);
        assert_eq!(h["idempotency-key"], "id-1");
    }
}
