//! The ceiling for `courier bench --smtp`: bare lettre SMTP connections (one per task, TCP_NODELAY
//! as ours) sending one prebuilt mail over and over to the same local sink, with nothing else
//! around them: no composing, no pool, no attempt records.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;

use crate::bench::{stats, RunStats};

/// Sends `mail` to the plain SMTP server at `addr` `total` times over `connections`
/// connections, each sending its share back to back.
pub async fn ceiling(
    addr: SocketAddr,
    envelope: Envelope,
    mail: Arc<Vec<u8>>,
    total: u64,
    connections: usize,
    progress: Arc<AtomicU64>,
) -> RunStats {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (env, mail, next, failed, progress) = (
            envelope.clone(),
            mail.clone(),
            next.clone(),
            failed.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let hello = ClientId::Domain("localhost".into());
            let mut conn = None;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                if conn.is_none() {
                    conn = match tokio::net::TcpStream::connect(addr).await {
                        Ok(tcp) => {
                            let _ = tcp.set_nodelay(true);
                            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                                .await
                                .ok()
                        }
                        Err(_) => None,
                    };
                }
                let ok = match conn.as_mut() {
                    Some(c) => c.send(&env, &mail).await.is_ok(),
                    None => false,
                };
                if !ok {
                    conn = None;
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                progress.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    stats(all, failed.load(Ordering::Relaxed), started.elapsed())
}
