//! [`ApiError`]: every failed API request, with its status, headers and JSON body
//! (`{"error": {"code", "status", "reason"}}`) made in one place.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::store::StoreError;

/// A request the API refuses or cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    reason: String,
    /// An extra header: `Allow` for 405, `WWW-Authenticate` for 401, `Retry-After` for 429,
    /// `Connection: close` for 408.
    header: Option<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            header: None,
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    pub(crate) fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is shutting down",
        )
    }

    /// 405 naming the methods `allow`ed on the path.
    pub(crate) fn not_allowed(allow: &'static str) -> Self {
        Self {
            header: Some((header::ALLOW, HeaderValue::from_static(allow))),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed; allowed: {allow}"),
            )
        }
    }

    /// 401 with the `WWW-Authenticate` challenge `challenge`.
    pub(crate) fn unauthorized(reason: &str, challenge: &'static str) -> Self {
        Self {
            header: Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            )),
            ..Self::new(StatusCode::UNAUTHORIZED, reason)
        }
    }

    /// 408: the body did not arrive within `limit`; the connection is closed after the answer.
    pub(crate) fn body_timeout(limit: std::time::Duration) -> Self {
        Self {
            header: Some((header::CONNECTION, HeaderValue::from_static("close"))),
            ..Self::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(limit)
                ),
            )
        }
    }

    /// 429 with `Retry-After`: the whole seconds until `wait` has passed (at least 1).
    pub(crate) fn rate_limited(limit: &str, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        Self {
            header: Some((header::RETRY_AFTER, HeaderValue::from(secs))),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("rate limit exceeded ({limit}); retry in {secs} s"),
            )
        }
    }

    /// The response: the status, the JSON error body, and the extra header if any.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "status": self.status.canonical_reason().unwrap_or(""),
            "reason": self.reason,
        }});
        let mut r = json_response(self.status, &body);
        if let Some((name, value)) = self.header {
            r.headers_mut().insert(name, value);
        }
        r
    }
}

impl From<StoreError> for ApiError {
    /// A duplicate id is the client's conflict; anything else is the store's, logged here once
    /// and answered without its details.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::Unavailable(_) | StoreError::BadUrl(_) | StoreError::Corrupt { .. } => {
                tracing::error!("store error: {e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable; nothing was stored, try again",
                )
            }
        }
    }
}

/// A JSON response with `status`.
pub(crate) fn json_response(
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_carry_status_header_and_json_body() {
        let r = ApiError::not_allowed("GET, POST").into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, POST");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], 405);
        assert_eq!(v["error"]["status"], "Method Not Allowed");
        assert_eq!(
            v["error"]["reason"],
            "method not allowed; allowed: GET, POST"
        );
    }
}
