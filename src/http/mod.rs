//! The HTTP client: hyper 1 through hyper-util's pooled client, TLS by rustls (platform roots,
//! else webpki roots), HTTP/1.1 and HTTP/2 by ALPN. Fetching templates uses [`get`]; delivering
//! messages is the delivery module's HTTP transport.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The pooled client type used everywhere in the crate.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// `jsonnet-courier/<version>`: the default User-Agent.
pub const USER_AGENT: &str = concat!("jsonnet-courier/", env!("CARGO_PKG_VERSION"));

/// Builds a pooled keep-alive client with the given connect timeout.
pub fn client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let tls = match builder.with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .unwrap_or_else(|_| unreachable_tls()),
    };
    let connector = tls
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}

fn unreachable_tls() -> ! {
    // The ring provider supports the default protocol versions; this cannot fail.
    panic!("rustls ring provider rejected the default protocol versions")
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL does not parse.
    #[error("invalid URL: {0}")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Transport(String),
    /// No answer within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The server answered with something other than 200.
    #[error("the server answered {0}")]
    Status(hyper::StatusCode),
    /// The body was larger than allowed.
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
}

/// GETs `url` and returns the body of a 200 response, reading at most `max_bytes`.
///
/// # Errors
/// See [`FetchError`].
pub async fn get(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Bytes, FetchError> {
    let uri: hyper::Uri = url.parse().map_err(|e| FetchError::Url(format!("{e}")))?;
    let req = hyper::Request::get(uri)
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::new()))
        .map_err(|e| FetchError::Url(e.to_string()))?;
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| FetchError::Transport(error_chain(&e)))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(resp.status()));
        }
        Limited::new(resp.into_body(), max_bytes)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|_| FetchError::TooLarge(max_bytes))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

/// An error and its causes on one line: hyper's top-level errors alone say little
/// ("client error (Connect)").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let msg = e.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = e.source();
    }
    s
}
