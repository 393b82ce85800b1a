//! The `packer` binary: `build` builds a commit here; `worker` claims queued
//! builds from AppTracker until SIGTERM/SIGINT.

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
    /// Claim queued builds from AppTracker, build and upload them.
    Worker {
        /// AppTracker's URL.
        #[arg(long, env = "SLIPWAY_SERVER", default_value = deploy::DEFAULT_SERVER)]
        server: String,
        /// File holding an agent token (or set SLIPWAY_TOKEN).
        #[arg(long, env = "SLIPWAY_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// This worker's name; default `<hostname>-<pid>`.
        #[arg(long, env = "SLIPWAY_WORKER_NAME")]
        name: Option<String>,
        /// How often to ask for work when the queue is empty.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        poll: std::time::Duration,
    },
}

/// The binary's entry point (also used by the end-to-end tests' copies of
/// the binary).
pub fn main() -> std::process::ExitCode {
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
        Cmd::Worker {
            server,
            token_file,
            name,
            poll,
        } => {
            let token = match token_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?,
                None => std::env::var("SLIPWAY_TOKEN").unwrap_or_default(),
            };
            let token = token.trim().to_string();
            if token.is_empty() {
                anyhow::bail!("a worker needs an agent token: set SLIPWAY_TOKEN or --token-file");
            }
            let name = name.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "packer".into());
                format!("{host}-{}", std::process::id())
            });
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(async move {
                let shutdown = deploy::binary::shutdown_on_signal();
                let client = deploy::Client::new(server).with_token(token);
                crate::worker::run(client, crate::worker::WorkerConfig { name, poll }, shutdown)
                    .await;
            });
            Ok(())
        }
        Cmd::Build {
            git_url,
            git_ref,
            app,
            version,
            out,
        } => {
            let commit = crate::resolve_ref(&git_url, &git_ref)
                .with_context(|| format!("resolving `{git_ref}`"))?;
            let version = match version {
                Some(v) => v,
                None => Version::for_build(0, &commit).context("making a version")?,
            };
            let work = tempfile::tempdir().context("creating a scratch directory")?;
            let req = crate::BuildRequest {
                app: &app,
                git_url: &git_url,
                commit: &commit,
                version: &version,
                work_dir: work.path(),
                out_dir: &out,
            };
            match crate::build(&req) {
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
