//! Standard Webhooks (version 1) signatures: the `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers, signed with `v1` (HMAC-SHA256, `whsec_` secrets) and `v1a`
//! (Ed25519, `whsk_` secret keys), and their verification (`whsec_`, `whsk_` or `whpk_` keys).
//!
//! The signed content is `{id}.{timestamp}.{body}`. Several keys sign at once, their signatures
//! space-separated in one header, so that a receiver can rotate secrets without downtime.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::hmac;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

use crate::config::Secret;

/// The message id header: the same on every retry, so receivers can drop duplicates.
pub const ID_HEADER: &str = "webhook-id";
/// The attempt's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Space-separated `version,base64-signature` pairs.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The spec's bounds for symmetric secrets, in bytes.
const HMAC_SECRET_MIN: usize = 24;
const HMAC_SECRET_MAX: usize = 64;
const ED25519_SEED_LEN: usize = 32;
const ED25519_PUBLIC_LEN: usize = 32;
const ED25519_SIGNATURE_LEN: usize = 64;

/// A secret that cannot be used. Never contains the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret {index}: {reason}")]
pub struct KeyError {
    /// Position of the secret in the list (0-based).
    pub index: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp is not a Unix time in seconds.
    #[error("webhook-timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    /// The timestamp is outside the tolerance around now.
    #[error(
        "webhook-timestamp is {skew} s away from now, more than the tolerance of {tolerance} s"
    )]
    OutOfTolerance {
        /// Seconds between the timestamp and now.
        skew: u64,
        /// The allowed difference.
        tolerance: u64,
    },
    /// The id contains a `.` (it would make the signed content ambiguous) or is empty.
    #[error("webhook-id must be non-empty and contain no '.'")]
    BadId,
    /// No signature in the header matches any key.
    #[error("no signature matches ({0})")]
    NoMatch(String),
}

enum SigningKey {
    Hmac(hmac::Key),
    Ed25519(Box<Ed25519KeyPair>),
}

/// Signs with one or more keys; built once per channel.
pub struct Signer {
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} keys)", self.keys.len())
    }
}

impl Signer {
    /// Keys from `whsec_...` (HMAC-SHA256) and `whsk_...` (Ed25519) secrets, signing in order.
    ///
    /// # Errors
    /// An empty list, a secret without a known prefix, bad base64 or a bad length.
    pub fn new(secrets: &[Secret]) -> Result<Self, KeyError> {
        if secrets.is_empty() {
            return Err(KeyError {
                index: 0,
                reason: "at least one secret is needed".into(),
            });
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let err = |reason: String| KeyError { index, reason };
                let text = s.expose().trim();
                if let Some(b) = text.strip_prefix("whsec_") {
                    let raw = decode(b).map_err(err)?;
                    if !(HMAC_SECRET_MIN..=HMAC_SECRET_MAX).contains(&raw.len()) {
                        return Err(err(format!(
                            "a whsec_ secret must decode to {HMAC_SECRET_MIN} to {HMAC_SECRET_MAX} bytes, this one has {}",
                            raw.len()
                        )));
                    }
                    Ok(SigningKey::Hmac(hmac::Key::new(hmac::HMAC_SHA256, &raw)))
                } else if let Some(b) = text.strip_prefix("whsk_") {
                    ed25519_pair(&decode(b).map_err(err)?)
                        .map(|k| SigningKey::Ed25519(Box::new(k)))
                        .map_err(err)
                } else {
                    Err(err(
                        "expected a whsec_ (HMAC) or whsk_ (Ed25519) secret".into(),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// The `webhook-signature` value for a message: one `v1,...` or `v1a,...` per key.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut out = Vec::with_capacity(self.signature_len());
        self.sign_into(
            id.as_bytes(),
            itoa_u64(timestamp, &mut [0; 20]),
            body,
            &mut out,
        );
        // Only ASCII (version tags, base64 and spaces) was written.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The length of [`Signer::sign`]'s value, which is the same for every message.
    pub fn signature_len(&self) -> usize {
        let each: usize = self
            .keys
            .iter()
            .map(|k| match k {
                SigningKey::Hmac(_) => HMAC_SIGNATURE_TEXT_LEN,
                SigningKey::Ed25519(_) => ED25519_SIGNATURE_TEXT_LEN,
            })
            .sum();
        each + self.keys.len().saturating_sub(1)
    }

    /// Appends the `webhook-signature` value to `out`, the timestamp already written out (as
    /// the header carries it): the per-request path writes id, timestamp and signature into one
    /// buffer, so that the three header values share one allocation.
    pub fn sign_into(&self, id: &[u8], ts: &[u8], body: &[u8], out: &mut Vec<u8>) {
        let mut joined: Option<Vec<u8>> = None;
        for (i, key) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            match key {
                SigningKey::Hmac(k) => {
                    // Updates in turn: no copy of the body.
                    let mut ctx = hmac::Context::with_key(k);
                    ctx.update(id);
                    ctx.update(b".");
                    ctx.update(ts);
                    ctx.update(b".");
                    ctx.update(body);
                    out.extend_from_slice(b"v1,");
                    append_b64(ctx.sign().as_ref(), out);
                }
                SigningKey::Ed25519(k) => {
                    let msg = joined.get_or_insert_with(|| content(id, ts, body));
                    out.extend_from_slice(b"v1a,");
                    append_b64(k.sign(msg).as_ref(), out);
                }
            }
        }
    }
}

/// `v1,` and the base64 of a 32-byte HMAC-SHA256 tag.
const HMAC_SIGNATURE_TEXT_LEN: usize = 3 + 44;
/// `v1a,` and the base64 of a 64-byte Ed25519 signature.
const ED25519_SIGNATURE_TEXT_LEN: usize = 4 + 88;

/// Base64 of `raw` (at most 64 bytes, a signature) appended to `out` through a stack buffer.
fn append_b64(raw: &[u8], out: &mut Vec<u8>) {
    let mut text = [0u8; 88];
    let n = B64.encode_slice(raw, &mut text).unwrap_or(0);
    out.extend_from_slice(&text[..n]);
}

/// `n`'s decimal digits, written at the end of `buf`.
pub(crate) fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

enum VerifyingKey {
    Hmac(hmac::Key),
    Ed25519(Vec<u8>),
}

/// Checks signatures against one or more keys (any one matching signature is enough).
pub struct Verifier {
    keys: Vec<VerifyingKey>,
}

impl Verifier {
    /// Keys from `whsec_...`, `whsk_...` (its public half is used) or `whpk_...` secrets.
    ///
    /// # Errors
    /// An empty list, an unknown prefix, bad base64 or a bad length.
    pub fn new(secrets: &[Secret]) -> Result<Self, KeyError> {
        if secrets.is_empty() {
            return Err(KeyError {
                index: 0,
                reason: "at least one secret is needed".into(),
            });
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let err = |reason: String| KeyError { index, reason };
                let text = s.expose().trim();
                if let Some(b) = text.strip_prefix("whsec_") {
                    let raw = decode(b).map_err(err)?;
                    if raw.is_empty() {
                        return Err(err("the whsec_ secret is empty".into()));
                    }
                    Ok(VerifyingKey::Hmac(hmac::Key::new(hmac::HMAC_SHA256, &raw)))
                } else if let Some(b) = text.strip_prefix("whsk_") {
                    let pair = ed25519_pair(&decode(b).map_err(err)?).map_err(err)?;
                    Ok(VerifyingKey::Ed25519(pair.public_key().as_ref().to_vec()))
                } else if let Some(b) = text.strip_prefix("whpk_") {
                    let raw = decode(b).map_err(err)?;
                    if raw.len() != ED25519_PUBLIC_LEN {
                        return Err(err(format!(
                            "a whpk_ key must decode to {ED25519_PUBLIC_LEN} bytes, this one has {}",
                            raw.len()
                        )));
                    }
                    Ok(VerifyingKey::Ed25519(raw))
                } else {
                    Err(err("expected a whsec_, whsk_ or whpk_ key".into()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Verifies a `webhook-signature` header value for `id`, `timestamp` (the header's text) and
    /// `body`. With a non-zero `tolerance` (seconds), the timestamp must be that close to `now`.
    ///
    /// # Errors
    /// See [`VerifyError`].
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        signatures: &str,
        now: u64,
        tolerance: u64,
    ) -> Result<(), VerifyError> {
        if id.is_empty() || id.contains('.') {
            return Err(VerifyError::BadId);
        }
        let ts: u64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp(timestamp.to_owned()))?;
        if tolerance > 0 {
            let skew = ts.abs_diff(now);
            if skew > tolerance {
                return Err(VerifyError::OutOfTolerance { skew, tolerance });
            }
        }
        let msg = content(id.as_bytes(), ts.to_string().as_bytes(), body);
        let mut seen = Vec::new();
        for entry in signatures.split_ascii_whitespace() {
            let Some((version, sig)) = entry.split_once(',') else {
                seen.push("an entry without a version");
                continue;
            };
            let Ok(sig) = B64.decode(sig) else {
                seen.push("a signature that is not base64");
                continue;
            };
            let matched = self.keys.iter().any(|k| match (version, k) {
                ("v1", VerifyingKey::Hmac(k)) => hmac::verify(k, &msg, &sig).is_ok(),
                ("v1a", VerifyingKey::Ed25519(pk)) => {
                    sig.len() == ED25519_SIGNATURE_LEN
                        && signature::UnparsedPublicKey::new(&signature::ED25519, pk)
                            .verify(&msg, &sig)
                            .is_ok()
                }
                _ => false,
            });
            if matched {
                return Ok(());
            }
            seen.push(match version {
                "v1" | "v1a" => "signatures made with other keys",
                _ => "signatures of unknown versions",
            });
        }
        seen.dedup();
        Err(VerifyError::NoMatch(if seen.is_empty() {
            "the header holds no signature".into()
        } else {
            format!("the header holds {}", seen.join(", "))
        }))
    }
}

fn content(id: &[u8], ts: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    v.extend_from_slice(id);
    v.push(b'.');
    v.extend_from_slice(ts);
    v.push(b'.');
    v.extend_from_slice(body);
    v
}

fn decode(b64: &str) -> Result<Vec<u8>, String> {
    B64.decode(b64)
        .map_err(|_| "the part after the prefix is not standard base64".to_owned())
}

/// A `whsk_` key is the 32-byte seed, or the 64-byte seed followed by its public key (the
/// NaCl/libsodium layout), whose public half must match.
fn ed25519_pair(raw: &[u8]) -> Result<Ed25519KeyPair, String> {
    match raw.len() {
        ED25519_SEED_LEN => Ed25519KeyPair::from_seed_unchecked(raw)
            .map_err(|e| format!("not an Ed25519 seed: {e}")),
        64 => Ed25519KeyPair::from_seed_and_public_key(&raw[..32], &raw[32..])
            .map_err(|e| format!("the public half does not match the seed: {e}")),
        n => Err(format!(
            "a whsk_ key must decode to 32 bytes (seed) or 64 (seed and public key), this one has {n}"
        )),
    }
}

/// The `whpk_` public key of a `whsk_` secret key, to hand to receivers.
///
/// # Errors
/// As [`Signer::new`].
pub fn public_key(secret: &Secret) -> Result<String, KeyError> {
    let err = |reason: String| KeyError { index: 0, reason };
    let b = secret
        .expose()
        .trim()
        .strip_prefix("whsk_")
        .ok_or_else(|| err("expected a whsk_ secret key".into()))?;
    let pair = ed25519_pair(&decode(b).map_err(err)?).map_err(err)?;
    Ok(format!("whpk_{}", B64.encode(pair.public_key().as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks libraries' published test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    // RFC 8032 section 7.1, test 1: secret key (seed) and public key.
    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC_SIG_EMPTY: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn secrets(s: &[&str]) -> Vec<Secret> {
        s.iter().map(|s| Secret::new(*s)).collect()
    }

    fn whsk() -> String {
        format!("whsk_{}", B64.encode(hex(RFC_SEED)))
    }

    #[test]
    fn the_published_vector_signs_and_verifies() {
        let signer = Signer::new(&secrets(&[SECRET])).unwrap();
        assert_eq!(signer.sign(ID, TS, BODY), EXPECTED);
        let v = Verifier::new(&secrets(&[SECRET])).unwrap();
        v.verify(ID, "1614265330", BODY, EXPECTED, TS, 300).unwrap();
        // One byte changed anywhere fails.
        let bad_body = br#"{"test": 2432232315}"#;
        assert!(matches!(
            v.verify(ID, "1614265330", bad_body, EXPECTED, TS, 300),
            Err(VerifyError::NoMatch(_))
        ));
        assert!(v
            .verify(
                "msg_p5jXN8AQM9LWM0D4loKWxJeK",
                "1614265330",
                BODY,
                EXPECTED,
                TS,
                0
            )
            .is_err());
        assert!(v.verify(ID, "1614265331", BODY, EXPECTED, TS, 0).is_err());
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_unless_it_is_zero() {
        let v = Verifier::new(&secrets(&[SECRET])).unwrap();
        let now = TS + 301;
        assert_eq!(
            v.verify(ID, "1614265330", BODY, EXPECTED, now, 300),
            Err(VerifyError::OutOfTolerance {
                skew: 301,
                tolerance: 300
            })
        );
        assert_eq!(
            v.verify(ID, "1614265330", BODY, EXPECTED, TS - 301, 300),
            Err(VerifyError::OutOfTolerance {
                skew: 301,
                tolerance: 300
            })
        );
        v.verify(ID, "1614265330", BODY, EXPECTED, now, 0).unwrap();
        assert!(matches!(
            v.verify(ID, "yesterday", BODY, EXPECTED, now, 0),
            Err(VerifyError::BadTimestamp(_))
        ));
        assert_eq!(
            v.verify("a.b", "1614265330", BODY, EXPECTED, TS, 0),
            Err(VerifyError::BadId)
        );
    }

    #[test]
    fn ed25519_matches_rfc_8032_and_round_trips() {
        let pair = ed25519_pair(&hex(RFC_SEED)).unwrap();
        assert_eq!(pair.public_key().as_ref(), hex(RFC_PUBLIC).as_slice());
        assert_eq!(pair.sign(b"").as_ref(), hex(RFC_SIG_EMPTY).as_slice());
        // The 64-byte layout (seed then public key) is accepted; a wrong public half is not.
        let mut long = hex(RFC_SEED);
        long.extend(hex(RFC_PUBLIC));
        assert!(ed25519_pair(&long).is_ok());
        long[40] ^= 1;
        assert!(ed25519_pair(&long).is_err());

        let signer = Signer::new(&secrets(&[&whsk()])).unwrap();
        let header = signer.sign(ID, TS, BODY);
        assert!(header.starts_with("v1a,"), "{header}");
        assert_eq!(header.len(), 4 + 88);
        let public = public_key(&Secret::new(whsk())).unwrap();
        assert_eq!(public, format!("whpk_{}", B64.encode(hex(RFC_PUBLIC))));
        for key in [public.as_str(), whsk().as_str()] {
            let v = Verifier::new(&secrets(&[key])).unwrap();
            v.verify(ID, &TS.to_string(), BODY, &header, TS, 300)
                .unwrap();
            assert!(v
                .verify(ID, &TS.to_string(), b"{}", &header, TS, 300)
                .is_err());
        }
        // An HMAC key does not accept an Ed25519 signature, and the reverse.
        let hmac_only = Verifier::new(&secrets(&[SECRET])).unwrap();
        assert!(hmac_only
            .verify(ID, &TS.to_string(), BODY, &header, TS, 0)
            .is_err());
        let ed_only = Verifier::new(&secrets(&[&public])).unwrap();
        assert!(ed_only
            .verify(ID, "1614265330", BODY, EXPECTED, TS, 0)
            .is_err());
    }

    #[test]
    fn several_secrets_sign_together_for_rotation() {
        let other = format!("whsec_{}", B64.encode([7u8; 32]));
        let signer = Signer::new(&secrets(&[&other, SECRET, &whsk()])).unwrap();
        let header = signer.sign(ID, TS, BODY);
        assert_eq!(header.len(), signer.signature_len());
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], EXPECTED);
        assert!(parts[0].starts_with("v1,") && parts[0] != EXPECTED);
        assert!(parts[2].starts_with("v1a,"));
        // A receiver holding only the old secret still verifies.
        Verifier::new(&secrets(&[SECRET]))
            .unwrap()
            .verify(ID, "1614265330", BODY, &header, TS, 0)
            .unwrap();
        // Unknown versions and junk entries are skipped, not fatal.
        let noisy = format!("v2,abc junk v1,!!! {EXPECTED}");
        Verifier::new(&secrets(&[SECRET]))
            .unwrap()
            .verify(ID, "1614265330", BODY, &noisy, TS, 0)
            .unwrap();
    }

    #[test]
    fn bad_secrets_are_named_by_position_without_their_value() {
        let short = format!("whsec_{}", B64.encode([1u8; 16]));
        for (list, index, says) in [
            (vec![SECRET, "hunter2-not-a-key"], 1, "expected a whsec_"),
            (vec![short.as_str()], 0, "24 to 64 bytes"),
            (vec!["whsec_***"], 0, "not standard base64"),
            (vec!["whsk_AAAA"], 0, "32 bytes (seed) or 64"),
        ] {
            let e = Signer::new(&secrets(&list)).unwrap_err();
            assert_eq!(e.index, index, "{e}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        assert!(Signer::new(&[]).is_err());
        assert!(Verifier::new(&secrets(&["whpk_AAAA"])).is_err());
        assert!(Signer::new(&secrets(&["whpk_AAAA"])).is_err());
    }
}
