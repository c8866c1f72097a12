//! `courier sink`: a local HTTP endpoint that prints what it receives, to try `courier send` and
//! `courier serve` without a real provider.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use courier_loadgen::{Record, Recorded, Reply, Sink};

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
    let done = Arc::new(tokio::sync::Notify::new());
    let (quiet, limit, finished) = (args.quiet, args.count, Arc::clone(&done));
    let sink = Sink::bind(args.listen, Record::Count, move |n, req| {
        let n = n as u64 + 1;
        print_request(n, req, quiet);
        if limit.is_some_and(|l| n >= l) {
            finished.notify_one();
        }
        Reply::status(status.as_u16())
    })
    .await
    .map_err(|e| Failure::usage(anyhow::anyhow!("cannot listen on {}: {e}", args.listen)))?;
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
