//! `courier sink`: a local HTTP endpoint (or, with `--smtp`, an SMTP server) that prints what it
//! receives, to try `courier send` and `courier serve` without a real provider.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use courier_loadgen::{Record, Recorded, Reply, Sink};

use super::{CmdResult, Failure};
use jsonnet_courier::config::is_sensitive_header;
use jsonnet_courier::smtp::sink::{OnMail, Received, SinkOptions, SinkTls, SmtpSink};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Args)]
pub(crate) struct SinkArgs {
    /// Address to listen on (default 127.0.0.1:4481, or 127.0.0.1:2525 with --smtp).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Status to answer every request with.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Print one line per request instead of headers and body.
    #[arg(long)]
    quiet: bool,
    /// Stop after this many requests (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// Be an SMTP server instead: print each mail's envelope, authentication (password masked),
    /// headers and parts.
    #[arg(long)]
    smtp: bool,
    /// With --smtp: plain (no TLS), starttls (offered), or implicit (TLS from the first byte).
    #[arg(long, value_enum, default_value = "plain", requires = "smtp")]
    tls: SinkTlsMode,
    /// With --tls starttls or implicit: the server certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "smtp")]
    cert: Option<PathBuf>,
    /// With --tls starttls or implicit: the server's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "smtp")]
    key: Option<PathBuf>,
    /// With --smtp: accept only this USER:PASSWORD (default: AUTH offered, any credentials
    /// accepted).
    #[arg(long, value_name = "USER:PASSWORD", requires = "smtp")]
    user: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SinkTlsMode {
    Plain,
    Starttls,
    Implicit,
}

async fn run_smtp(args: SinkArgs) -> CmdResult {
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2525)));
    let server = |args: &SinkArgs| -> Result<Arc<rustls::ServerConfig>, Failure> {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            return Err(Failure::usage(anyhow::anyhow!(
                "--tls starttls and --tls implicit need --cert and --key (PEM files)"
            )));
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Failure::usage(anyhow::anyhow!("--cert {}: {e}", cert.display())))?;
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Failure::usage(anyhow::anyhow!("--key {}: {e}", key.display())))?;
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(Failure::failed)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| Failure::usage(anyhow::anyhow!("--cert/--key: {e}")))?;
        Ok(Arc::new(cfg))
    };
    let tls = match args.tls {
        SinkTlsMode::Plain => SinkTls::None,
        SinkTlsMode::Starttls => SinkTls::StartTls(server(&args)?),
        SinkTlsMode::Implicit => SinkTls::Implicit(server(&args)?),
    };
    let users = match &args.user {
        None => Vec::new(),
        Some(up) => match up.split_once(':') {
            Some((u, p)) => vec![(u.to_owned(), p.to_owned())],
            None => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "--user: write USER:PASSWORD"
                )))
            }
        },
    };
    let done = Arc::new(tokio::sync::Notify::new());
    let (quiet, limit, stop) = (args.quiet, args.count, done.clone());
    let on_mail: OnMail = Arc::new(move |m: &Received| {
        print_mail(m, quiet);
        if limit.is_some_and(|l| m.number >= l) {
            stop.notify_one();
        }
    });
    let any_user = users.is_empty();
    let sink = SmtpSink::start(
        listen,
        SinkOptions {
            tls,
            users,
            any_user,
            keep: false,
            on_mail: Some(on_mail),
        },
    )
    .await
    .map_err(|e| Failure::usage(anyhow::anyhow!("cannot listen on {listen}: {e}")))?;
    let mode = match args.tls {
        SinkTlsMode::Plain => "smtp://...?disable_starttls=true",
        SinkTlsMode::Starttls => "smtp://",
        SinkTlsMode::Implicit => "smtps://",
    };
    eprintln!(
        "courier sink: SMTP on {} ({mode}; AUTH {})",
        sink.addr(),
        if any_user {
            "accepts any credentials"
        } else {
            "accepts --user only"
        }
    );
    done.notified().await;
    Ok(())
}

fn print_mail(m: &Received, quiet: bool) {
    let auth = m.auth.as_ref().map_or("none".to_owned(), |a| {
        format!("{} {}:***", a.mechanism, a.user)
    });
    println!(
        "#{} MAIL FROM:<{}> RCPT TO:<{}> ({}, EHLO {}, AUTH {auth}, {} bytes)",
        m.number,
        m.mail_from,
        m.rcpt_to.join(">, <"),
        if m.tls { "TLS" } else { "cleartext" },
        m.helo,
        m.data.len()
    );
    if !quiet {
        println!(
            "{}\n",
            String::from_utf8_lossy(&m.data).replace("\r\n", "\n")
        );
    }
}

pub(crate) async fn run(args: SinkArgs) -> CmdResult {
    if args.smtp {
        return run_smtp(args).await;
    }
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4481)));
    let status = hyper::StatusCode::from_u16(args.status).map_err(|_| {
        Failure::usage(anyhow::anyhow!(
            "--status {}: not an HTTP status",
            args.status
        ))
    })?;
    let done = Arc::new(tokio::sync::Notify::new());
    let (quiet, limit, finished) = (args.quiet, args.count, Arc::clone(&done));
    let sink = Sink::bind(listen, Record::Count, move |n, req| {
        let n = n as u64 + 1;
        print_request(n, req, quiet);
        if limit.is_some_and(|l| n >= l) {
            finished.notify_one();
        }
        Reply::status(status.as_u16())
    })
    .await
    .map_err(|e| Failure::usage(anyhow::anyhow!("cannot listen on {listen}: {e}")))?;
    eprintln!(
        "courier sink: listening on http://{}/ (answering {status})",
        sink.addr
    );
    done.notified().await;
    Ok(())
}

fn print_request(n: u64, req: &Recorded, quiet: bool) {
    if quiet {
        println!("#{n} {} {} {} bytes", req.method, req.path, req.body.len());
        return;
    }
    println!("#{n} {} {}", req.method, req.path);
    for (k, v) in &req.headers {
        let shown = if is_sensitive_header(k.as_str()) {
            "***".into()
        } else {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        };
        println!("{k}: {shown}");
    }
    println!("\n{}\n", String::from_utf8_lossy(&req.body));
}
