//! TLS for a channel's client: extra CA certificates beside the platform and webpki roots, and a
//! client certificate for mutual TLS. PEM text comes from the configuration (whose `X_file` keys
//! read it from files), so nothing is read here.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A channel's TLS settings (`request_config.tls`), as PEM text.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlsOptions {
    /// Certificates trusted in addition to the platform's (or webpki's) roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Certificate chain presented to the server (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// Private key of `client_cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<crate::config::Secret>,
}

impl TlsOptions {
    /// Whether anything differs from the default client.
    pub fn is_default(&self) -> bool {
        self.ca.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// TLS settings that cannot be used; names the setting, never a key's contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No usable PEM content.
    #[error("{key}: {reason}")]
    Pem {
        /// `ca`, `client_cert` or `client_key`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the settings (e.g. a key that does not match the certificate).
    #[error("{0}")]
    Config(String),
}

fn pem_err(key: &'static str, reason: impl Into<String>) -> TlsError {
    TlsError::Pem {
        key,
        reason: reason.into(),
    }
}

/// The PEM certificates in `text`.
///
/// # Errors
/// No certificate, or malformed PEM.
pub fn certs(key: &'static str, text: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(key, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err(key, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The rustls configuration for `opts`, trusting the platform roots (webpki's when there are
/// none), the extra CA certificates, and presenting the client certificate. ALPN is set by the caller.
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
    if let Some(ca) = &opts.ca {
        for cert in certs("ca", ca)? {
            roots
                .add(cert)
                .map_err(|e| pem_err("ca", format!("not a usable CA certificate: {e}")))?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match (&opts.client_cert, &opts.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certs("client_cert", cert)?;
            let key_der = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                .map_err(|_| pem_err("client_key", "holds no PEM private key"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))
        }
        (Some(_), None) | (None, Some(_)) => Err(TlsError::Config(
            "client_cert and client_key go together".into(),
        )),
    }
}
