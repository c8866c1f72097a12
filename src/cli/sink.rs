//! `courier sink`: a local HTTP endpoint that prints what it receives, to try `courier send` and
//! `courier serve` without a real provider.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{CmdResult, Failure};
use jsonnet_courier::config::is_sensitive_header;

#[derive(Debug, Args)]
pub(crate) struct SinkArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:4481")]
    listen: SocketAddr,
    /// Status to answer every request with.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Print one line per request instead of headers and body.
    #[arg(long)]
    quiet: bool,
    /// Stop after this many requests (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

pub(crate) async fn run(args: SinkArgs) -> CmdResult {
    let status = hyper::StatusCode::from_u16(args.status).map_err(|_| {
        Failure::usage(anyhow::anyhow!(
            "--status {}: not an HTTP status",
            args.status
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot listen on {}: {e}", args.listen)))?;
    eprintln!(
        "courier sink: listening on http://{}/ (answering {status})",
        args.listen
    );
    let seen = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = done.notified() => return Ok(()),
        };
        let (seen, done, quiet, limit) = (seen.clone(), done.clone(), args.quiet, args.count);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (seen, done) = (seen.clone(), done.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
                    if quiet {
                        println!("#{n} {} {} {} bytes", parts.method, parts.uri, body.len());
                    } else {
                        println!("#{n} {} {}", parts.method, parts.uri);
                        for (k, v) in &parts.headers {
                            let shown = if is_sensitive_header(k.as_str()) {
                                "***".into()
                            } else {
                                String::from_utf8_lossy(v.as_bytes()).into_owned()
                            };
                            println!("{k}: {shown}");
                        }
                        println!("\n{}\n", String::from_utf8_lossy(&body));
                    }
                    if limit.is_some_and(|l| n >= l) {
                        done.notify_one();
                    }
                    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
