//! The ceiling for `courier bench --smtp`: a bare lettre client (its own pooled async transport)
//! sending one prebuilt mail over and over to the same local sink, so the courier's SMTP path
//! (compose + pooled send) can be compared with it in one run.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use lettre::address::Envelope;
use lettre::transport::smtp::client::Tls;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::bench::{drive, RunStats};

/// Sends `mail` to the SMTP server at `addr` (plain, no AUTH) `total` times with `concurrency`
/// in flight, through lettre's pooled transport keeping up to `pool` idle connections.
pub async fn ceiling(
    addr: SocketAddr,
    envelope: Envelope,
    mail: Arc<Vec<u8>>,
    total: u64,
    concurrency: usize,
    pool: u32,
    progress: Arc<AtomicU64>,
) -> RunStats {
    let transport: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .tls(Tls::None)
            .pool_config(PoolConfig::new().max_size(pool))
            .build();
    drive(total, concurrency, progress, move |_| {
        let (t, env, mail) = (transport.clone(), envelope.clone(), mail.clone());
        async move { t.send_raw(&env, &mail).await.is_ok() }
    })
    .await
}
