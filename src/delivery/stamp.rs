//! Per-message headers a channel may add on top of its request: the idempotency key and the
//! Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`). Both carry
//! the message id, so every retry of a message carries the same key.

use bytes::Bytes;
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

    /// How many headers [`Stamp::apply`] adds at most.
    pub fn headers(&self) -> usize {
        usize::from(self.idempotency.is_some()) + if self.signer.is_some() { 3 } else { 0 }
    }

    /// Adds the headers for message `id`, sent at `timestamp` (Unix seconds) with `body`. An id
    /// that is not a valid header value (or, for signing, holds a `.`) is replaced by its
    /// percent-encoded form, so that it stays stable across retries.
    pub fn apply(&self, headers: &mut HeaderMap, id: &str, timestamp: u64, body: &[u8]) {
        if self.is_empty() {
            return;
        }
        // Every value goes into one buffer, written once: the id (percent-encoded if needed),
        // the timestamp's digits (what gets signed is the header's own text) and the signature.
        // The header values are slices of it, so a request pays one allocation for them all
        // (and one for the shared count) instead of one or two per value.
        let mut digits = [0; 20];
        let ts = webhook::itoa_u64(timestamp, &mut digits);
        let signed_len = self
            .signer
            .as_ref()
            .map_or(0, |s| ts.len() + s.signature_len());
        // Borrowed on the common path (ids are UUIDs or similar): no allocation.
        let id = safe_id(id);
        let mut buf = Vec::with_capacity(id.len() + signed_len);
        buf.extend_from_slice(id.as_bytes());
        let id_end = buf.len();
        if let Some(signer) = &self.signer {
            buf.extend_from_slice(ts);
            let ts_end = buf.len();
            signer.sign_into(id.as_bytes(), ts, body, &mut buf);
            // With the exact capacity, the Vec becomes `Bytes` without another allocation.
            let buf = Bytes::from(buf);
            let value = |range: std::ops::Range<usize>| {
                // Only visible ASCII was written: the check cannot fail, and is cheap.
                HeaderValue::from_maybe_shared(buf.slice(range)).ok()
            };
            let (Some(id_value), Some(ts_value), Some(mut sig_value)) = (
                value(0..id_end),
                value(id_end..ts_end),
                value(ts_end..buf.len()),
            ) else {
                return;
            };
            sig_value.set_sensitive(true);
            if let Some(name) = &self.idempotency {
                headers.insert(name.clone(), id_value.clone());
            }
            headers.insert(ID_HEADER, id_value);
            headers.insert(TIMESTAMP_HEADER, ts_value);
            headers.insert(SIGNATURE_HEADER, sig_value);
        } else if let Some(name) = &self.idempotency {
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(buf)) {
                headers.insert(name.clone(), v);
            }
        }
    }
}

const ID_HEADER: HeaderName = HeaderName::from_static(webhook::ID_HEADER);
const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static(webhook::TIMESTAMP_HEADER);
const SIGNATURE_HEADER: HeaderName = HeaderName::from_static(webhook::SIGNATURE_HEADER);

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
