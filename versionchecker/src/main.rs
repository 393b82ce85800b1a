//! The `versionchecker` binary: `scan` prints what a host runs, as JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "versionchecker",
    version,
    about = "What runs where on a Slipway host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what the host layout under ROOT holds and runs, as JSON.
    Scan {
        #[arg(long, env = "SLIPWAY_ROOT")]
        root: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Scan { root } => {
            let report = versionchecker::scan(&root)
                .with_context(|| format!("cannot read the host layout under {}", root.display()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
