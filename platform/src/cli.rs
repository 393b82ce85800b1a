//! The `slipway` binary: `slipway dev` runs the whole platform on this
//! machine. It runs grabbers in-process, so it is also the shim of the apps
//! they start (re-executed with `__slipway-shim`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::dev::DevOptions;
use crate::repos::EXAMPLES_DIR;

#[derive(Parser)]
#[command(name = "slipway", version, about = "Slipway on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform locally: AppTracker, packer, three grabbers, example apps.
    Dev {
        #[command(flatten)]
        common: apptracker::cli::Common,
        /// Directory of example apps.
        #[arg(long, default_value = EXAMPLES_DIR)]
        examples: PathBuf,
        /// Number of local hosts.
        #[arg(long, default_value_t = 3)]
        hosts: u16,
    },
}

/// The binary's entry point. The apps of the in-process grabbers run under
/// this binary re-executed as their shim, which `dispatch` catches first.
pub fn main() -> std::process::ExitCode {
    if let Some(code) = grabber::shim::dispatch() {
        return code;
    }
    deploy::binary::run(run())
}

async fn run() -> anyhow::Result<()> {
    apptracker::cli::init_tracing();
    let cli = Cli::parse();
    let shutdown = deploy::binary::shutdown_on_signal(std::time::Duration::from_secs(30));
    match cli.command {
        Command::Dev {
            common,
            examples,
            hosts,
        } => {
            let opts = DevOptions {
                config: common.config()?,
                examples,
                hosts,
                ..DevOptions::default()
            };
            crate::dev::run(opts, shutdown)
                .await
                .context("dev platform failed")
        }
    }
}
