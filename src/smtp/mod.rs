//! SMTP delivery, the reference's other strategy (`delivery_strategy: smtp`): the connection URI
//! ([`uri`]), composing the mail ([`mail`]), pooled sending with the six security modes
//! ([`transport`]), failures that classify themselves ([`error`]), and a local SMTP server for
//! trying and testing it ([`sink`]).
//!
//! [`Mailer`] ties them together for one configured `courier.smtp` section (or `smtp` channel).

pub mod error;
pub mod mail;
pub mod sink;
pub mod transport;
pub mod uri;

use std::time::SystemTime;

pub use error::{FailureKind, SendError, Step};
pub use mail::{PreparedMail, Sender};
pub use transport::{Accepted, ClientIdentity, SmtpTransport, TransportError, TransportOptions};
pub use uri::{Security, SmtpUri};

use crate::config::SmtpConfig;
use crate::message::Message;

/// One SMTP channel: its sender settings and its pooled transport.
#[derive(Debug)]
pub struct Mailer {
    sender: Sender,
    transport: SmtpTransport,
}

impl Mailer {
    /// Builds the transport for `config`, reading the client certificate and key when set.
    ///
    /// # Errors
    /// An unreadable or unusable client certificate or key (the message names the file).
    pub fn new(config: &SmtpConfig, options: TransportOptions) -> Result<Self, TransportError> {
        let identity = match (&config.client_cert_path, &config.client_key_path) {
            (Some(c), Some(k)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read(p)
                        .map_err(|e| TransportError(format!("cannot read {}: {e}", p.display())))
                };
                Some(ClientIdentity {
                    cert_pem: read(c)?,
                    key_pem: read(k)?,
                })
            }
            _ => None,
        };
        let transport = SmtpTransport::new(
            config.uri.clone(),
            config.local_name.as_deref(),
            identity,
            options,
        )?;
        Ok(Self {
            sender: config.sender.clone(),
            transport,
        })
    }

    /// Composes the mail for `message` (once per message: retries reuse it).
    ///
    /// # Errors
    /// An invalid recipient: permanent, and nothing was sent.
    pub fn prepare(&self, message: &Message) -> Result<PreparedMail, SendError> {
        mail::compose(&self.sender, message, SystemTime::now())
    }

    /// Sends a prepared mail.
    ///
    /// # Errors
    /// See [`SmtpTransport::send`].
    pub async fn send(&self, mail: &PreparedMail) -> Result<Accepted, SendError> {
        self.transport.send(&mail.envelope, &mail.bytes).await
    }

    /// The transport (its URI, masked when shown).
    pub fn transport(&self) -> &SmtpTransport {
        &self.transport
    }
}
