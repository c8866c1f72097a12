//! The `courier` binary: logging setup, then the CLI.

mod cli;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

// See Cargo.toml: measurably faster than glibc malloc for the render pool's cross-thread traffic.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Rust ignores SIGPIPE, so printing into a closed pipe (`courier test DIR | head`) panics;
    // the default action ends a one-shot command quietly, as command-line tools do. The service
    // keeps ignoring it: a client closing its socket must not end the process.
    #[cfg(unix)]
    if !cli.is_service() {
        // SAFETY: no other thread exists yet, and SIG_DFL is a valid action for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Logs go to stderr so that payloads and reports on stdout stay machine-readable. The service
    // logs its lifecycle; one-shot commands only warnings.
    let default = if cli.is_service() { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("COURIER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    cli::run(cli)
}
