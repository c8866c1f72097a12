//! `courier serve`: the durable delivery service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{watch, CmdResult, Failure};
use jsonnet_courier::config::{ChannelConfig, Config, Secret, SecretUrl};
use jsonnet_courier::delivery::Courier;
use jsonnet_courier::service::Service;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (YAML or JSON); without one, the embedded defaults apply.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Deliver email messages to this URL with the default template (sets or replaces the
    /// email channel's URL; enough to try the service without a config file).
    #[arg(long, value_name = "URL")]
    deliver_to: Option<String>,
    /// API address (default 127.0.0.1:4480, or jsonnet_courier.serve.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// sqlite://PATH or postgres://... (default sqlite://courier.db, or
    /// jsonnet_courier.serve.database).
    #[arg(
        long,
        value_name = "URL",
        env = "COURIER_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// Accepted API bearer tokens, comma-separated (added to jsonnet_courier.serve.tokens).
    #[arg(
        long = "tokens",
        value_name = "TOKENS",
        env = "COURIER_API_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    tokens: Vec<String>,
}

/// The configuration file with the command line's channel override applied.
fn load_config(args: &ServeArgs) -> Result<Config, Failure> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(Failure::usage)?,
        None => Config::default(),
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let Some(url) = &args.deliver_to {
        let valid = url.parse::<hyper::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !valid {
            return Err(Failure::usage(anyhow::anyhow!(
                "--deliver-to {url:?}: not an absolute http(s) URL"
            )));
        }
        match config.channels.iter_mut().find(|c| c.id == "email") {
            Some(ch) => ch.url = url.clone(),
            None => config
                .channels
                .insert(0, ChannelConfig::default_post("email", url)),
        }
    }
    Ok(config)
}

pub(crate) async fn run(args: ServeArgs) -> CmdResult {
    let mut config = load_config(&args)?;
    if config.channels.is_empty() && config.smtp_channels.is_empty() {
        tracing::warn!("no channel is configured: messages are stored but cannot be delivered (use --deliver-to URL or --config FILE)");
    }
    let settings = &mut config.settings.serve;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(db) = &args.database {
        settings.database = SecretUrl::new(db.clone());
    }
    settings.tokens.extend(
        args.tokens
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim())),
    );
    let settings = settings.clone();
    let store = jsonnet_courier::store::open(settings.database.expose())
        .await
        .map_err(|e| Failure::usage(anyhow::anyhow!("database {}: {e}", settings.database)))?;
    let service = Service::new(config, store).await.map_err(Failure::usage)?;
    let courier = service.courier();
    let listener = service.bind().await.map_err(Failure::usage)?;
    eprintln!(
        "courier serve: API on http://{} ({}), store {}",
        listener.local_addr().map_or(settings.listen, |a| a),
        if settings.tokens.is_empty() {
            "no auth: loopback only"
        } else {
            "bearer tokens required"
        },
        settings.database
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let courier = Arc::clone(&courier);
        let rx = rx.clone();
        async move { courier.keep_remotes_fresh(rx).await }
    });
    tokio::spawn(reload_loop(args, courier, rx.clone()));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        let _ = tx.send(true);
    });
    service.run(listener, rx).await;
    Ok(())
}

/// How often file templates are checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(1);

/// Reloads configuration and templates on SIGHUP and when a template file changes on disk (remote
/// templates refresh on their own, see [`Courier::keep_remotes_fresh`]). A configuration that
/// fails to load or compile is logged and counted, and the running one stays.
async fn reload_loop(
    args: ServeArgs,
    courier: Arc<Courier>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut hangup = hangups();
    let mut tick = tokio::time::interval(FILE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut files = watch::stamps(&courier.config());
    loop {
        let why = tokio::select! {
            _ = shutdown.changed() => return,
            Some(()) = recv(&mut hangup) => "SIGHUP",
            _ = tick.tick() => {
                let config = courier.config();
                if watch::stamps(&config) != files {
                    "a template file changed"
                } else {
                    continue;
                }
            }
        };
        let result = match load_config(&args) {
            Ok(config) => courier.reload(config).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("{:#}", e.error)),
        };
        match result {
            Ok(()) => {
                jsonnet_courier::metrics::config_reloaded(true);
                tracing::info!("configuration reloaded ({why})");
            }
            Err(e) => {
                jsonnet_courier::metrics::config_reloaded(false);
                tracing::error!(
                    "configuration reload failed ({why}); the running configuration stays: {e}"
                );
            }
        }
        // After a failed reload too: the same broken file is not retried every second.
        files = watch::stamps(&courier.config());
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The next SIGHUP; never, where there are none.
async fn recv(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(h) = hangups {
        return h.recv().await;
    }
    std::future::pending().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
