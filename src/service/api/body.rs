//! Reading a request body under the API's two limits: the size cap (`max_body_bytes`) and the
//! time cap (`body_read_timeout`), so a client can neither flood nor stall a handler.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than the cap (the cap).
    TooLarge(usize),
    /// Not complete within the deadline (the deadline).
    TimedOut(Duration),
    /// The connection broke or the framing was wrong.
    Broken(String),
}

/// The whole of `body`, at most `limit` bytes, within `deadline` of the call.
pub(crate) async fn read(
    body: Incoming,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TimedOut(deadline)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}
