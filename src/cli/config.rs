//! `courier config check`: validate a configuration and print the effective one, secrets masked.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CmdResult, Failure};
use jsonnet_courier::config::Config;
use jsonnet_courier::delivery::Courier;

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate FILE (including loading and compiling every body template) and print the
    /// effective configuration as YAML-compatible JSON, with secrets shown as ***. Exits 2 and
    /// lists every problem, with its key path, if it is invalid.
    Check {
        /// The configuration file (YAML or JSON).
        file: PathBuf,
    },
}

pub(crate) async fn run(args: ConfigArgs) -> CmdResult {
    match args.command {
        ConfigCommand::Check { file } => {
            let config = Config::load(&file).map_err(Failure::usage)?;
            let warnings = config.warnings.clone();
            let shown = serde_json::to_string_pretty(&config).map_err(Failure::failed)?;
            let courier = Courier::new(config).await.map_err(|mut e| {
                e.source = Some(file.display().to_string());
                Failure::usage(e)
            })?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            for route in courier.routes() {
                match &route.template {
                    Some(t) => eprintln!(
                        "channel {}: template {t:?}, ctx style {}",
                        route.channel, route.style
                    ),
                    None => eprintln!("channel {}: no body template", route.channel),
                }
            }
            println!("{shown}");
            eprintln!("{}: ok", file.display());
            Ok(())
        }
    }
}
