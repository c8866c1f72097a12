//! The HTTP transport: one request over the pooled client, its answer, and a [`SendError`] that
//! says which kind of failure it was.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::shaped::ShapeError;
use crate::encode::EncodeError;
use crate::http::guard::Refused;
use crate::http::oauth2::TokenError;
use crate::http::{error_chain, HttpClient};

use super::ErrorKind;

/// A response as an attempt records it.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: hyper::StatusCode,
    pub(crate) retry_after: Option<String>,
    /// The body, up to the configured cap.
    pub(crate) body: Bytes,
}

/// Why a send produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The payload could not be encoded for the channel's Content-Type.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The connection could not be made (the cause chain on one line).
    #[error("{0}")]
    Connect(String),
    /// No complete response within the attempt timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The connection broke mid-way (the cause chain on one line).
    #[error("{0}")]
    Transport(String),
    /// The SSRF guard refused the address.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// No OAuth2 token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The template's request is not acceptable.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

impl SendError {
    /// The attempt's error kind for this failure; the policy classes kinds.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SendError::Encode(_) => ErrorKind::Encode,
            SendError::Connect(_) => ErrorKind::Connect,
            SendError::Timeout(_) => ErrorKind::Timeout,
            SendError::Transport(_) => ErrorKind::Transport,
            SendError::Refused(_) => ErrorKind::Refused,
            SendError::Token(e) if e.is_retryable() => ErrorKind::Connect,
            SendError::Token(_) => ErrorKind::Auth,
            SendError::Shape(_) => ErrorKind::Render,
        }
    }
}

/// Sends `req` and reads the response body up to `max_body` bytes (the rest is read and discarded,
/// so the connection goes back to the pool), all within `timeout`.
pub(crate) async fn send(
    client: &HttpClient,
    req: hyper::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, SendError> {
    let work = async {
        let resp = client.request(req).await.map_err(|e| {
            if let Some(refused) = Refused::find(&e) {
                SendError::Refused(refused.clone())
            } else if e.is_connect() {
                SendError::Connect(error_chain(&e))
            } else {
                SendError::Transport(error_chain(&e))
            }
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = resp.into_body();
        let mut kept = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| SendError::Transport(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                let room = max_body.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body: kept.freeze(),
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Timeout(timeout)),
    }
}
