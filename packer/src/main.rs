//! The `packer` binary: builds a commit of a local repository into a release
//! tarball. Worker mode (claiming jobs from AppTracker) comes later.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use deploy::{AppName, Version};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "packer",
    version,
    about = "Builds an app at a git commit into a release tarball"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a commit here and print the artifact's path, sha256 and size.
    Build {
        /// The repository: a local path or a file:// URL.
        #[arg(long = "git")]
        git_url: String,
        /// Branch, tag, or full or short commit sha.
        #[arg(long = "ref", default_value = "main")]
        git_ref: String,
        /// The app's registered name.
        #[arg(long)]
        app: AppName,
        /// The release version; default `0-<short sha>`.
        #[arg(long)]
        version: Option<Version>,
        /// Where to write the tarball.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Build {
            git_url,
            git_ref,
            app,
            version,
            out,
        } => {
            let commit = packer::resolve_ref(&git_url, &git_ref)
                .with_context(|| format!("resolving `{git_ref}`"))?;
            let version = match version {
                Some(v) => v,
                None => Version::for_build(0, &commit).context("making a version")?,
            };
            let work = tempfile::tempdir().context("creating a scratch directory")?;
            let req = packer::BuildRequest {
                app: &app,
                git_url: &git_url,
                commit: &commit,
                version: &version,
                work_dir: work.path(),
                out_dir: &out,
            };
            match packer::build(&req) {
                Ok(built) => {
                    println!("artifact: {}", built.artifact_path.display());
                    println!("sha256:   {}", built.sha256);
                    println!("size:     {}", built.size);
                    Ok(())
                }
                Err(e) => {
                    eprint!("{}", e.log());
                    Err(e).context(format!("building {app} at {commit}"))
                }
            }
        }
    }
}
