//! How a message is kept in the `message` column of both backends: its JSON, LZ4-compressed
//! when that pays. A typical message with an identity is ~2 KB of JSON: stored as is, one SQLite
//! page held one message and wasted the rest; compressed it takes about half.
//!
//! The first byte tells the form: `{` is JSON text as is (small messages, and every row written
//! before compression existed), [`LZ4`] is followed by an LZ4 block with its size prepended.

use super::StoreError;

/// Marks an LZ4 block (a byte JSON text never starts with).
const LZ4: u8 = 0x01;

/// Below this, compression saves too little to pay for itself.
const MIN_COMPRESS: usize = 256;

/// Encodes message JSON for storage.
pub(crate) fn encode(json: &str) -> Vec<u8> {
    if json.len() < MIN_COMPRESS {
        return json.as_bytes().to_vec();
    }
    let packed = lz4_flex::block::compress_prepend_size(json.as_bytes());
    if packed.len() + 1 >= json.len() {
        return json.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(packed.len() + 1);
    out.push(LZ4);
    out.extend_from_slice(&packed);
    out
}

/// Decodes what [`encode`] stored (or plain JSON text) into a value of `T`.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    id: &str,
    stored: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.to_owned(),
        reason,
    };
    let parsed = match stored.first() {
        Some(&LZ4) => {
            let json = lz4_flex::block::decompress_size_prepended(&stored[1..])
                .map_err(|e| corrupt(format!("message: cannot decompress: {e}")))?;
            serde_json::from_slice(&json)
        }
        _ => serde_json::from_slice(stored),
    };
    parsed.map_err(|e| corrupt(format!("message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_small_large_and_legacy() {
        let small = r#"{"recipient":"a@b.c"}"#;
        assert_eq!(encode(small), small.as_bytes(), "small messages stay text");
        let large = format!(r#"{{"body":"{}"}}"#, "hello world ".repeat(100));
        let stored = encode(&large);
        assert_eq!(stored[0], LZ4);
        assert!(stored.len() * 4 < large.len(), "{} bytes", stored.len());
        let back: serde_json::Value = decode("x", &stored).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(&large).unwrap()
        );
        // Rows written before compression are plain JSON text.
        let legacy: serde_json::Value = decode("x", large.as_bytes()).unwrap();
        assert_eq!(legacy, back);
    }

    #[test]
    fn damage_is_reported_with_the_id() {
        let err = decode::<serde_json::Value>("m1", &[LZ4, 9, 9]).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { id, reason } if id == "m1" && reason.contains("decompress")),
            "{err}"
        );
        let err = decode::<serde_json::Value>("m2", b"{oops").unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { id, .. } if id == "m2"),
            "{err}"
        );
    }
}
