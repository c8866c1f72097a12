//! Reading a request body under the API's two limits: the size cap (`max_body_bytes`) and the
//! time cap (`body_read_timeout`), so a client can neither flood nor stall a handler.

use std::future::Future as _;
use std::task::Poll;
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
    let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
    // A small body has usually arrived with the head: one poll then reads all of it, and the
    // deadline's timer (an entry in the runtime's timer wheel per request) is not needed.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(collected) => collected,
        Poll::Pending => match tokio::time::timeout(deadline, collect).await {
            Err(_) => return Err(BodyError::TimedOut(deadline)),
            Ok(collected) => collected,
        },
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge(limit))
        }
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}
