//! TLS for a channel's client: an extra CA file beside the platform and webpki roots, and a
//! client certificate for mutual TLS. Files are read once, when the client is built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A channel's TLS settings (`request_config.tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlsOptions {
    /// PEM certificates trusted in addition to the platform's and webpki's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert` (PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// Whether anything differs from the default client.
    pub fn is_default(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// A TLS file that cannot be used; names the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Unreadable, or no usable PEM content.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the settings (e.g. a key that does not match the certificate).
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The rustls configuration for `opts`, trusting the platform roots (webpki's when there are
/// none), the extra CA file, and presenting the client certificate. ALPN is set by the caller.
///
/// # Errors
/// See [`TlsError`].
pub fn client_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    opts: &TlsOptions,
) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(ca) = &opts.ca_file {
        for cert in certs(ca)? {
            roots
                .add(cert)
                .map_err(|e| file_err(ca, format!("not a usable CA certificate: {e}")))?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match (&opts.client_cert, &opts.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let key_bytes = std::fs::read(key).map_err(|e| file_err(key, e.to_string()))?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_bytes)
                .map_err(|_| file_err(key, "holds no PEM private key"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))
        }
        (Some(_), None) | (None, Some(_)) => Err(TlsError::Config(
            "client_cert and client_key go together".into(),
        )),
    }
}
