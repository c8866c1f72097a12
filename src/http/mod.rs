//! The HTTP client: hyper 1 through hyper-util's pooled client, TLS by rustls (platform roots,
//! else webpki roots), HTTP/1.1 and HTTP/2 by ALPN. Fetching templates uses [`get`]; delivering
//! messages is the delivery module's HTTP transport.

pub mod guard;
pub mod oauth2;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use guard::{Guard, GuardedConnector};
use tls::{TlsError, TlsOptions};

/// The pooled client type used everywhere in the crate.
pub type HttpClient = Client<SharedConnector, Full<Bytes>>;

/// The TLS and guard connector behind one `Arc`. hyper-util's client clones its connector for
/// every request, pooled connection or not; the connector itself is several `Arc`s and a
/// resolver, so sharing it makes that clone (and its drop) one reference count.
#[derive(Clone)]
pub struct SharedConnector(Arc<HttpsConnector<GuardedConnector>>);

impl tower_service::Service<hyper::Uri> for SharedConnector {
    type Response =
        <HttpsConnector<GuardedConnector> as tower_service::Service<hyper::Uri>>::Response;
    type Error = <HttpsConnector<GuardedConnector> as tower_service::Service<hyper::Uri>>::Error;
    type Future = <HttpsConnector<GuardedConnector> as tower_service::Service<hyper::Uri>>::Future;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // The TCP connector underneath is always ready; `call` works on a copy of the shared one.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        // Only new connections come here: a copy per connect costs what every request did.
        let mut connector = HttpsConnector::clone(&self.0);
        connector.call(uri)
    }
}

/// `jsonnet-courier/<version>`: the default User-Agent.
pub const USER_AGENT: &str = concat!("jsonnet-courier/", env!("CARGO_PKG_VERSION"));

/// Builds a pooled keep-alive client with the given connect timeout, no SSRF guard and the
/// default TLS settings.
pub fn client(connect_timeout: Duration) -> HttpClient {
    match client_with(
        connect_timeout,
        Arc::new(Guard::off()),
        &TlsOptions::default(),
    ) {
        Ok(c) => c,
        // The default settings read no file and use the provider's default protocol versions.
        Err(e) => panic!("the default TLS settings were refused: {e}"),
    }
}

/// Builds a pooled keep-alive client that connects only where `guard` allows, with `tls`.
///
/// # Errors
/// A TLS file is unreadable or unusable.
pub fn client_with(
    connect_timeout: Duration,
    guard: Arc<Guard>,
    tls: &TlsOptions,
) -> Result<HttpClient, TlsError> {
    let mut tcp = GuardedConnector::new(guard);
    tcp.tcp().enforce_http(false);
    tcp.tcp().set_connect_timeout(Some(connect_timeout));
    tcp.tcp().set_nodelay(true);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = if tls.is_default() {
        match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider)
                .map_err(|e| TlsError::Config(e.to_string()))?,
        }
    } else {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(provider, tls)?)
    };
    let connector = builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new()).build(SharedConnector(Arc::new(connector))))
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
