//! The pipe protocol between a render pool and its evaluator processes (template isolation).
//!
//! Every frame is a little-endian `u32` length, then that many bytes. The parent writes a
//! [`Hello`] (JSON) first, then batches of render requests; the child answers each request with
//! one reply frame, in order, as soon as it is rendered (so the parent can time each render). The
//! parent may send the next batch before the previous one is answered: the child reads it when done.
//!
//! A batch: `u32` count, then per request a template reference and the ctx as JSON text. A
//! template's source crosses once per child: later requests name it by id only (see
//! [`TemplateRef`]). Strings are a `u32` length and UTF-8 bytes. A reply: `0` and the payload,
//! or `1` and the error as JSON.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Limits, RenderError};

/// Largest frame accepted: far above any ctx or payload the limits allow, low enough that a
/// corrupt length cannot make either side allocate gigabytes.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// The first frame: the limits the child enforces on itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub max_stack: usize,
    pub max_output_bytes: usize,
    pub timeout_ms: u64,
    pub import_dir: Option<PathBuf>,
    pub trace_to_stderr: bool,
    /// Address-space cap (RLIMIT_AS) in bytes; 0 for none.
    pub max_memory_bytes: u64,
}

impl Hello {
    pub(crate) fn new(limits: &Limits, max_memory_bytes: u64) -> Self {
        Self {
            max_stack: limits.max_stack,
            max_output_bytes: limits.max_output_bytes,
            timeout_ms: limits.timeout.as_millis() as u64,
            import_dir: limits.import_dir.clone(),
            trace_to_stderr: limits.trace_to_stderr,
            max_memory_bytes,
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_stack: self.max_stack,
            max_output_bytes: self.max_output_bytes,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            import_dir: self.import_dir.clone(),
            trace_to_stderr: self.trace_to_stderr,
        }
    }
}

/// How a request names its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemplateRef {
    /// Sent before to this child: the id alone.
    Known,
    /// The name and source follow.
    Source,
    /// The child forgets every template first (the parent's record of what it sent is full),
    /// then reads the name and source.
    ResetAndSource,
}

/// One render request as the child reads it; the ctx is borrowed from the batch frame.
pub(crate) struct Request<'a> {
    pub template_id: u64,
    /// Name and source, when the request carries them.
    pub source: Option<(String, String)>,
    pub reset: bool,
    pub ctx: &'a str,
}

/// Writes one frame.
pub(crate) fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one frame into `buf`; `Ok(false)` at a clean end of stream.
pub(crate) fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME} byte cap"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(true)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends one request to a batch being built (after its count).
pub(crate) fn put_request(
    out: &mut Vec<u8>,
    id: u64,
    template: Option<(&str, &str)>,
    reset: bool,
    ctx: &str,
) {
    let tag = match (template.is_some(), reset) {
        (false, _) => TemplateRef::Known,
        (true, false) => TemplateRef::Source,
        (true, true) => TemplateRef::ResetAndSource,
    };
    out.push(tag as u8);
    out.extend_from_slice(&id.to_le_bytes());
    if let Some((name, source)) = template {
        put_str(out, name);
        put_str(out, source);
    }
    put_str(out, ctx);
}

/// Reads a batch's requests.
pub(crate) fn parse_batch(frame: &[u8]) -> io::Result<Vec<Request<'_>>> {
    let mut r = Cursor(frame);
    let count = r.u32()? as usize;
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let tag = r.u8()?;
        let template_id = r.u64()?;
        let (source, reset) = match tag {
            t if t == TemplateRef::Known as u8 => (None, false),
            t if t == TemplateRef::Source as u8 => (Some((r.string()?, r.string()?)), false),
            t if t == TemplateRef::ResetAndSource as u8 => (Some((r.string()?, r.string()?)), true),
            t => return Err(bad(format!("unknown template tag {t}"))),
        };
        out.push(Request {
            template_id,
            source,
            reset,
            ctx: r.str()?,
        });
    }
    Ok(out)
}

/// Writes one reply frame: the payload, or the error, straight from where it lies (no copy
/// into a frame of its own).
pub(crate) fn write_reply(
    w: &mut impl Write,
    result: Result<&str, &RenderError>,
) -> io::Result<()> {
    let wire;
    let (tag, text) = match result {
        Ok(payload) => (0u8, payload),
        Err(e) => {
            wire = e.to_wire();
            (1, wire.as_str())
        }
    };
    let len = u32::try_from(text.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&[tag])?;
    w.write_all(text.as_bytes())
}

/// Decodes a reply in place: the payload, or the error's wire form.
pub(crate) fn parse_reply(mut frame: Vec<u8>) -> io::Result<Result<String, String>> {
    let Some(&tag) = frame.first() else {
        return Err(bad("empty reply".into()));
    };
    // Shifting the text down one byte is cheaper than copying it into a new string.
    frame.remove(0);
    let text = String::from_utf8(frame).map_err(|_| bad("reply is not UTF-8".into()))?;
    match tag {
        0 => Ok(Ok(text)),
        1 => Ok(Err(text)),
        t => Err(bad(format!("unknown reply tag {t}"))),
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("truncated frame".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> io::Result<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| bad("string is not UTF-8".into()))
    }

    fn string(&mut self) -> io::Result<String> {
        self.str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_as_written() {
        let mut frame = 2u32.to_le_bytes().to_vec();
        put_request(
            &mut frame,
            7,
            Some(("t.jsonnet", "function(ctx) ctx")),
            true,
            "{}",
        );
        put_request(&mut frame, 7, None, false, r#"{"a":1}"#);
        let got = parse_batch(&frame).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].source,
            Some(("t.jsonnet".into(), "function(ctx) ctx".into()))
        );
        assert!(got[0].reset);
        assert_eq!((got[1].template_id, got[1].source.is_none()), (7, true));
        assert_eq!(got[1].ctx, r#"{"a":1}"#);
        assert!(parse_batch(&frame[..frame.len() - 1]).is_err());
    }

    #[test]
    fn replies_read_back_as_written() {
        let mut pipe = Vec::new();
        write_reply(&mut pipe, Ok(r#"{"a":1}"#)).unwrap();
        let mut r = &pipe[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, &mut buf).unwrap());
        assert_eq!(parse_reply(buf).unwrap(), Ok(r#"{"a":1}"#.to_owned()));
        assert!(parse_reply(Vec::new()).is_err());
        assert!(parse_reply(vec![9, b'x']).is_err());
    }

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, b"abc").unwrap();
        let mut r = &pipe[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, &mut buf).unwrap());
        assert_eq!(buf, b"abc");
        assert!(!read_frame(&mut r, &mut buf).unwrap());
    }
}
