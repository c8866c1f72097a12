//! TLS: a local HTTPS server (tokio-rustls, HTTP/1.1 and HTTP/2 by ALPN) with certificates made
//! by the test, an extra CA, and mutual TLS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use jsonnet_courier::config::Secret;
use jsonnet_courier::http::guard::Guard;
use jsonnet_courier::http::tls::TlsOptions;
use jsonnet_courier::http::{client_with, error_chain};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
pub struct Pki {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "courier test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "courier client");
        let client = client_params.signed_by(&client_key, &issuer).unwrap();
        Pki {
            ca_pem: ca.pem(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    pub fn options(&self, client_cert: bool) -> TlsOptions {
        TlsOptions {
            ca: Some(self.ca_pem.clone()),
            client_cert: client_cert.then(|| self.client_pem.clone()),
            client_key: client_cert.then(|| Secret::new(self.client_key_pem.clone())),
        }
    }
}

/// What the TLS server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: Version,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

pub struct TlsServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    /// Serves HTTPS on 127.0.0.1, answering 200 "ok"; with `require_client_cert`, only clients
    /// presenting a certificate signed by the test CA get through the handshake.
    pub async fn start(pki: &Pki, require_client_cert: bool) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pki.server_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        async move {
                            let version = req.version();
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            recorded.lock().unwrap().push(Seen {
                                version,
                                headers: parts.headers,
                                body,
                            });
                            Ok::<_, std::io::Error>(Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsServer { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}/hook", self.addr)
    }
}

async fn get(opts: &TlsOptions, url: &str) -> Result<(u16, Version), String> {
    let client = client_with(Duration::from_secs(5), Arc::new(Guard::off()), opts)
        .map_err(|e| e.to_string())?;
    let req = Request::post(url)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
    Ok((resp.status().as_u16(), resp.version()))
}

#[tokio::test]
async fn an_extra_ca_is_trusted_and_http2_is_negotiated() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki, false).await;
    let (status, version) = get(&pki.options(false), &server.url()).await.unwrap();
    assert_eq!((status, version), (200, Version::HTTP_2));
    assert_eq!(server.seen.lock().unwrap()[0].version, Version::HTTP_2);
    // Without the CA the server's certificate is not trusted.
    let e = get(&TlsOptions::default(), &server.url())
        .await
        .unwrap_err();
    assert!(e.contains("certificate"), "{e}");
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki, true).await;
    let (status, _) = get(&pki.options(true), &server.url()).await.unwrap();
    assert_eq!(status, 200);
    // Without a client certificate the handshake fails and nothing reaches the server.
    assert!(get(&pki.options(false), &server.url()).await.is_err());
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let opts = TlsOptions {
        client_key: Some(Secret::new(other.client_key_pem.clone())),
        ..pki.options(true)
    };
    let Err(e) = client_with(Duration::from_secs(1), Arc::new(Guard::off()), &opts) else {
        panic!("mismatched key accepted");
    };
    assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
}
