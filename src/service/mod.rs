//! `courier serve`: a durable delivery service. The API ([`api`]) stores messages before it
//! acknowledges them; the worker ([`worker`]) claims due messages and delivers them with
//! persisted retries. Several processes may share one PostgreSQL database.

pub mod api;
mod conn;
pub mod worker;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::settings::ServeSettings;
use crate::config::{Config, ConfigError};
use crate::delivery::Courier;
use crate::metrics::Metrics;
use crate::store::MessageStore;

/// Everything `courier serve` runs: the API and the worker over one store, with one courier.
pub struct Service {
    settings: ServeSettings,
    store: Arc<dyn MessageStore>,
    courier: Arc<Courier>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Listening on a non-loopback address needs API tokens.
    #[error("refusing to listen on {0} without API tokens: set jsonnet_courier.serve.tokens (or COURIER_API_TOKENS), or listen on 127.0.0.1")]
    NoTokens(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Service {
    /// The service `config` describes (its `jsonnet_courier.serve` settings and channels) over
    /// `store`: the one way to assemble it, for `courier serve`, `courier bench --service` and
    /// the tests.
    ///
    /// # Errors
    /// As [`Courier::new`]: a channel that cannot be prepared, named by its key path.
    pub async fn new(config: Config, store: Arc<dyn MessageStore>) -> Result<Self, ConfigError> {
        let settings = config.settings.serve.clone();
        let courier = Arc::new(Courier::new(config).await?);
        Ok(Self {
            settings,
            store,
            courier,
        })
    }

    /// The courier delivering for this service (shared: reloading it changes what the worker
    /// sends next).
    pub fn courier(&self) -> Arc<Courier> {
        Arc::clone(&self.courier)
    }

    /// The serve settings in force.
    pub fn settings(&self) -> &ServeSettings {
        &self.settings
    }

    /// Binds the listen address (checking the token rule), returning the bound listener.
    ///
    /// # Errors
    /// See [`ServeError`].
    pub async fn bind(&self) -> Result<TcpListener, ServeError> {
        let addr = self.settings.listen;
        if !addr.ip().is_loopback() && self.settings.tokens.is_empty() {
            return Err(ServeError::NoTokens(addr));
        }
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    }

    /// Serves on `listener` until `shutdown` turns true: then stops accepting connections and
    /// claims, lets in-flight requests and deliveries finish (within the grace period), releases
    /// the rest, and returns.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let metrics = Arc::new(Metrics::new());
        let wake = Arc::new(Notify::new());
        let running = Arc::new(AtomicBool::new(false));
        let worker = worker::Worker {
            id: format!(
                "{}-{}-{}",
                hostname(),
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            ),
            store: Arc::clone(&self.store),
            courier: Arc::clone(&self.courier),
            metrics: Arc::clone(&metrics),
            settings: self.settings.clone(),
            wake: Arc::clone(&wake),
            running: Arc::clone(&running),
        };
        let worker_task = tokio::spawn(worker.run(shutdown.clone()));
        let retention = tokio::spawn(retention_loop(
            Arc::clone(&self.store),
            self.settings.retention,
            shutdown.clone(),
        ));
        let dashboard = Arc::new(crate::dashboard::Dashboard::new(
            Arc::clone(&self.store),
            Arc::clone(&self.courier),
            Arc::clone(&metrics),
            &self.settings,
            Arc::clone(&wake),
            shutdown.clone(),
        ));
        let api = Arc::new(api::Api::new(
            Arc::clone(&self.store),
            Arc::clone(&metrics),
            &self.settings,
            wake,
            running,
        ));
        let connections = conn::Connections::new(&self.settings, metrics);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "courier API listening");
        }
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of file descriptors, typically: give closing ones a moment
                            // rather than spinning.
                            tracing::warn!("accepting an API connection failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let (api, dashboard) = (Arc::clone(&api), Arc::clone(&dashboard));
                    connections.admit(stream, &graceful, move |req: hyper::Request<hyper::body::Incoming>| {
                        let (api, dashboard) = (Arc::clone(&api), Arc::clone(&dashboard));
                        async move {
                            // The browser pages and /openapi.json; everything else is the JSON API.
                            if crate::dashboard::serves(req.uri().path()) {
                                dashboard.handle(req).await
                            } else {
                                api.handle(req).await
                            }
                        }
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: no new connections or claims");
        let grace = self.settings.shutdown_grace;
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("open API connections outlived the grace period");
        }
        let _ = worker_task.await;
        retention.abort();
    }
}

async fn retention_loop(
    store: Arc<dyn MessageStore>,
    keep: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Often enough that the table never holds much more than `keep` of history.
    let every = (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let cutoff = SystemTime::now() - keep;
        match store.delete_finished_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "retention: removed sent and cancelled messages"
            ),
            Err(e) => tracing::warn!("retention failed: {e}"),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "courier".into())
}
