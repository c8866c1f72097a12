//! SMTP attempts: a prepared mail sent through a [`Mailer`], recorded as an [`Attempt`]. The
//! reply code goes in `status`, the reply text in `response_body`, and the error names the step
//! (`RCPT failed: 550 5.1.1 ...`). SMTP classifies itself: 4xx, network, TLS and timeouts are
//! retryable; 5xx (535 included) and invalid mails are permanent.

use std::time::Instant;

use crate::smtp::{FailureKind, Mailer, PreparedMail, SendError, Step};

use super::{Attempt, AttemptClass, ErrorKind};

/// Makes attempt `number`: sends `prepared` (or records why it could not be composed), with the
/// notes of composing its subject and bodies.
pub(super) async fn attempt(
    mailer: &Mailer,
    prepared: Result<&PreparedMail, &SendError>,
    notes: Vec<String>,
    number: u32,
) -> Attempt {
    let clock = Instant::now();
    let mut a = Attempt::start(number);
    a.notes = notes;
    let result = match prepared {
        Ok(mail) => mailer.send(mail).await,
        Err(e) => Err(e.clone()),
    };
    a.latency_ms = clock.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(accepted) => {
            a.class = AttemptClass::Delivered;
            a.status = Some(accepted.code);
            a.response_body = Some(accepted.text).filter(|t| !t.is_empty());
        }
        Err(e) => {
            a.class = if e.is_transient() {
                AttemptClass::Retryable
            } else {
                AttemptClass::Permanent
            };
            a.status = e.code;
            a.error_kind = Some(match (e.kind, e.step) {
                (FailureKind::Reply, _) => ErrorKind::Status,
                (FailureKind::Timeout, _) => ErrorKind::Timeout,
                (FailureKind::Invalid, Step::Compose) => ErrorKind::Encode,
                (
                    FailureKind::Network | FailureKind::Tls | FailureKind::Invalid,
                    Step::Connect | Step::Tls | Step::Auth,
                ) => ErrorKind::Connect,
                _ => ErrorKind::Transport,
            });
            if e.code.is_some() {
                a.response_body = Some(e.text.clone());
            }
            a.error = Some(e.to_string());
        }
    }
    a
}
