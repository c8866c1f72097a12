//! The ceiling for `courier bench --smtp`: bare lettre SMTP connections (TCP_NODELAY, as ours)
//! sending one prebuilt mail over and over to the same local sink, with nothing else around
//! them: no composing, no attempt records, a plain stack of idle connections.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use courier_loadgen::{drive, RunStats};
use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;

/// Sends `mail` to the plain SMTP server at `addr` `total` times with `concurrency` in flight.
pub(crate) async fn ceiling(
    addr: SocketAddr,
    envelope: Envelope,
    mail: Arc<Vec<u8>>,
    total: u64,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    let idle: Arc<Mutex<Vec<AsyncSmtpConnection>>> = Arc::new(Mutex::new(Vec::new()));
    drive(total, concurrency, progress, move |_| {
        let (idle, env, mail) = (idle.clone(), envelope.clone(), mail.clone());
        async move {
            let pooled = idle.lock().ok().and_then(|mut v| v.pop());
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
                        return false;
                    };
                    let _ = tcp.set_nodelay(true);
                    let hello = ClientId::Domain("localhost".into());
                    match AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await {
                        Ok(c) => c,
                        Err(_) => return false,
                    }
                }
            };
            let ok = conn.send(&env, &mail).await.is_ok();
            if ok {
                if let Ok(mut v) = idle.lock() {
                    v.push(conn);
                }
            }
            ok
        }
    })
    .await
}
