//! [`SmtpTransport`]: sends prepared mails over pooled SMTP connections, one step at a time so
//! that a failure names its step (connect, TLS, AUTH, MAIL, RCPT, DATA) and keeps the reply.
//!
//! The security mode comes from the [`SmtpUri`]: STARTTLS required, STARTTLS opportunistic, or
//! implicit TLS; the certificate is verified against `server_name` (else the host) with the
//! platform's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), unless `skip_ssl_verify`.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, Identity, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use tokio::sync::Semaphore;

use super::error::{FailureKind, SendError, Step};
use super::uri::{Security, SmtpUri};

/// Timeouts and pool limits. The defaults suit a mail provider on the internet.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// TCP connect, plus the implicit TLS handshake, greeting and EHLO (default 10s).
    pub connect_timeout: Duration,
    /// Each later step: STARTTLS, AUTH, MAIL, each RCPT, DATA with the message (default 30s).
    pub command_timeout: Duration,
    /// Connections open at once (default 8).
    pub max_connections: usize,
    /// An idle pooled connection older than this is closed instead of reused (default 60s).
    pub idle_timeout: Duration,
    /// Load the platform's trusted roots (default true).
    pub platform_roots: bool,
    /// More trusted roots (DER), e.g. a private CA.
    pub extra_roots: Vec<Vec<u8>>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            max_connections: 8,
            idle_timeout: Duration::from_secs(60),
            platform_roots: true,
            extra_roots: Vec::new(),
        }
    }
}

/// The server's final reply to an accepted mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The reply code (2xx).
    pub code: u16,
    /// The reply text (often a queue id).
    pub text: String,
}

/// Why a transport could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// Pooled SMTP delivery to one server. Share it (`Arc`); `send` takes `&self`.
pub struct SmtpTransport {
    uri: SmtpUri,
    tls: Option<TlsParameters>,
    hello: ClientId,
    credentials: Option<Credentials>,
    options: TransportOptions,
    idle: Mutex<Vec<Idle>>,
    permits: Semaphore,
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("uri", &self.uri)
            .field("hello", &self.hello)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A client certificate and its private key, PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
}

impl SmtpTransport {
    /// Prepares TLS (roots, client certificate) once; connects lazily on the first send.
    ///
    /// # Errors
    /// An unusable client certificate or key, or a TLS name that is not a DNS name or IP address.
    pub fn new(
        uri: SmtpUri,
        local_name: Option<&str>,
        identity: Option<ClientIdentity>,
        options: TransportOptions,
    ) -> Result<Self, TransportError> {
        let mut builder = TlsParameters::builder(uri.tls_name().to_owned())
            .certificate_store(CertificateStore::None)
            .dangerous_accept_invalid_certs(uri.skip_ssl_verify);
        if options.platform_roots && !uri.skip_ssl_verify {
            // rustls-native-certs reads SSL_CERT_FILE / SSL_CERT_DIR when set, as OpenSSL and Go do.
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                if let Ok(c) = Certificate::from_der(cert.to_vec()) {
                    builder = builder.add_root_certificate(c);
                }
            }
        }
        for der in &options.extra_roots {
            let c = Certificate::from_der(der.clone())
                .map_err(|e| TransportError(format!("extra root certificate: {e}")))?;
            builder = builder.add_root_certificate(c);
        }
        if let Some(id) = identity {
            // lettre 0.11's rustls backend takes the certificate argument as DER as it is (not
            // PEM, despite the name), so the leaf is decoded here; intermediates are not sent.
            use rustls::pki_types::pem::PemObject as _;
            let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(&id.cert_pem)
                .next()
                .ok_or_else(|| {
                    TransportError("no certificate in the client certificate file".into())
                })?
                .map_err(|e| TransportError(format!("client certificate: {e}")))?;
            let identity = Identity::from_pem(leaf.as_ref(), &id.key_pem).map_err(|e| {
                TransportError(format!("client certificate or key is not usable: {e}"))
            })?;
            builder = builder.identify_with(identity);
        }
        let tls = builder
            .build_rustls()
            .map_err(|e| TransportError(format!("TLS setup for {}: {e}", uri.tls_name())))?;
        let credentials = uri.user.as_ref().map(|u| {
            Credentials::new(
                u.clone(),
                uri.password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default(),
            )
        });
        let hello = ClientId::Domain(local_name.unwrap_or("localhost").to_owned());
        let permits = Semaphore::new(options.max_connections.max(1));
        Ok(Self {
            uri,
            tls: Some(tls),
            hello,
            credentials,
            options,
            idle: Mutex::new(Vec::new()),
            permits,
        })
    }

    /// The server this transport sends to (password masked when shown).
    pub fn uri(&self) -> &SmtpUri {
        &self.uri
    }

    /// Sends one mail: `MAIL FROM` the envelope's sender, `RCPT TO` each recipient, `DATA`.
    /// A pooled connection is reused when one is idle; if a reused connection turns out to be
    /// closed before `MAIL` was accepted, the mail is sent once more on a fresh connection.
    ///
    /// # Errors
    /// A [`SendError`] naming the step, with the server's reply when there was one.
    pub async fn send(&self, envelope: &Envelope, mail: &[u8]) -> Result<Accepted, SendError> {
        let _permit =
            self.permits.acquire().await.map_err(|_| {
                SendError::new(Step::Connect, FailureKind::Network, "transport closed")
            })?;
        if let Some(conn) = self.checkout() {
            match self.transaction(conn, envelope, mail).await {
                Err((e, false)) => {
                    tracing::debug!("pooled SMTP connection unusable ({e}); reconnecting")
                }
                Err((e, true)) => return Err(e),
                Ok(a) => return Ok(a),
            }
        }
        let conn = self.connect().await?;
        self.transaction(conn, envelope, mail)
            .await
            .map_err(|(e, _)| e)
    }

    fn checkout(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < self.options.idle_timeout && !i.conn.has_broken() {
                return Some(i.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.options.max_connections {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn step<T>(
        &self,
        step: Step,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SendError::from_lettre(step, &e)),
            Err(_) => Err(SendError::new(
                step,
                FailureKind::Timeout,
                format!("no answer within {}", humantime::format_duration(limit)),
            )),
        }
    }

    /// Connect, greet, secure and authenticate a new connection.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let implicit = self.uri.security == Security::ImplicitTls;
        let server = (self.uri.host.as_str(), self.uri.port);
        let limit = self.options.connect_timeout;
        let mut conn = if implicit {
            self.step(
                Step::Connect,
                limit,
                AsyncSmtpConnection::connect_tokio1(
                    server,
                    Some(limit),
                    &self.hello,
                    self.tls.clone(),
                    None,
                ),
            )
            .await
            .map_err(|e| tls_or(e, true))?
        } else {
            // Our own socket, for TCP_NODELAY: lettre writes the message and its final dot
            // separately, and Nagle's algorithm would hold the dot for a delayed ACK (~40 ms).
            let tcp =
                match tokio::time::timeout(limit, tokio::net::TcpStream::connect(server)).await {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(e)) => {
                        return Err(SendError::new(
                            Step::Connect,
                            FailureKind::Network,
                            format!("cannot connect to {}:{}: {e}", self.uri.host, self.uri.port),
                        ))
                    }
                    Err(_) => {
                        return Err(SendError::new(
                            Step::Connect,
                            FailureKind::Timeout,
                            format!(
                                "no connection to {}:{} within {}",
                                self.uri.host,
                                self.uri.port,
                                humantime::format_duration(limit)
                            ),
                        ))
                    }
                };
            let _ = tcp.set_nodelay(true);
            self.step(
                Step::Connect,
                limit,
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
            )
            .await?
        };
        let starttls = match self.uri.security {
            Security::ImplicitTls => false,
            Security::StartTlsRequired => {
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(SendError::new(
                        Step::Tls,
                        FailureKind::Tls,
                        "the server does not offer STARTTLS, which smtp:// requires (add ?disable_starttls=true to allow cleartext)",
                    ));
                }
                true
            }
            Security::StartTlsOpportunistic => conn.can_starttls(),
        };
        if starttls {
            if let Some(tls) = self.tls.clone() {
                let limit = self.options.command_timeout;
                self.step(Step::Tls, limit, conn.starttls(tls, &self.hello))
                    .await
                    .map_err(|e| tls_or(e, true))?;
            }
        }
        if let Some(creds) = &self.credentials {
            let info = conn.server_info();
            let offered = [Mechanism::Plain, Mechanism::Login]
                .into_iter()
                .any(|m| info.supports_auth_mechanism(m));
            // As the reference: authenticate only when the server offers AUTH.
            if offered {
                if !conn.is_encrypted() && !self.uri.is_loopback() {
                    conn.abort().await;
                    return Err(SendError::new(
                        Step::Auth,
                        FailureKind::Invalid,
                        "refusing to send the password over an unencrypted connection",
                    ));
                }
                let limit = self.options.command_timeout;
                let mechanisms = [Mechanism::Plain, Mechanism::Login];
                if let Err(e) = self
                    .step(Step::Auth, limit, conn.auth(&mechanisms, creds))
                    .await
                {
                    conn.abort().await;
                    return Err(e);
                }
            }
        }
        Ok(conn)
    }

    /// One mail on `conn`. On failure, the bool says whether the failure is final (`false`: a
    /// pooled connection died before `MAIL` was accepted, so a fresh one may be tried).
    async fn transaction(
        &self,
        mut conn: AsyncSmtpConnection,
        envelope: &Envelope,
        mail: &[u8],
    ) -> Result<Accepted, (SendError, bool)> {
        let limit = self.options.command_timeout;
        let mut params = Vec::new();
        let non_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !a.to_string().is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                self.checkin(conn);
                return Err((
                    SendError::new(
                        Step::Mail,
                        FailureKind::Invalid,
                        "an address is not ASCII and the server does not support SMTPUTF8",
                    ),
                    true,
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        let from = envelope.from().cloned();
        if let Err(e) = self
            .step(Step::Mail, limit, conn.command(Mail::new(from, params)))
            .await
        {
            let retry_fresh = e.kind != FailureKind::Reply || e.code == Some(421);
            self.end(conn, &e).await;
            return Err((e, !retry_fresh));
        }
        for to in envelope.to() {
            if let Err(e) = self
                .step(
                    Step::Rcpt,
                    limit,
                    conn.command(Rcpt::new(to.clone(), vec![])),
                )
                .await
            {
                self.end(conn, &e).await;
                return Err((e, true));
            }
        }
        if let Err(e) = self.step(Step::Data, limit, conn.command(Data)).await {
            self.end(conn, &e).await;
            return Err((e, true));
        }
        match self.step(Step::Data, limit, conn.message(mail)).await {
            Ok(r) => {
                let accepted = Accepted {
                    code: u16::from(r.code()),
                    text: r.message().collect::<Vec<_>>().join(" "),
                };
                self.checkin(conn);
                Ok(accepted)
            }
            Err(e) => {
                // After the final dot the transaction is over either way; no RSET needed.
                if e.kind == FailureKind::Reply {
                    self.checkin(conn);
                } else {
                    conn.abort().await;
                }
                Err((e, true))
            }
        }
    }

    /// After a failed command: a refused transaction is reset and the connection kept; a broken
    /// or timed-out one is closed.
    async fn end(&self, mut conn: AsyncSmtpConnection, e: &SendError) {
        if e.kind == FailureKind::Reply && e.code != Some(421) {
            let reset = tokio::time::timeout(self.options.command_timeout, conn.command(Rset));
            if matches!(reset.await, Ok(Ok(_))) {
                self.checkin(conn);
                return;
            }
        }
        conn.abort().await;
    }
}

/// A failure while TLS was being set up is the TLS step's, whatever layer reported it.
fn tls_or(mut e: SendError, tls_involved: bool) -> SendError {
    if tls_involved && e.kind == FailureKind::Tls {
        e.step = Step::Tls;
    }
    e
}
