//! The `packer` binary: `build` builds a commit here; `worker` claims queued
//! builds from AppTracker until SIGTERM/SIGINT; `keygen` makes the key
//! artifacts are signed with.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use deploy::binary::{LogFormat, Tracing};
use deploy::{AppName, HostName, Version};

#[derive(Parser)]
#[command(
    name = "packer",
    version,
    about = "Builds an app at a git commit into a release tarball"
)]
struct Cli {
    /// How log lines are written: `text` or `json` (default: text, or json
    /// when SLIPWAY_LOG_JSON is set). Logs go to stderr.
    #[arg(long, global = true, env = deploy::binary::LOG_FORMAT_ENV)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a commit here and print the artifact's path, sha256 and size.
    Build {
        /// The repository: a path or a file://, git://, http(s):// or ssh:// URL.
        #[arg(long = "git")]
        git_url: String,
        /// The commit: a branch, tag, or full or short sha, or `HEAD` (the
        /// tip of `--branch`), with optional `~N`, `^` or `^N` steps back
        /// (`main~2`, `v1.4^`, `HEAD~1`).
        #[arg(long = "ref", default_value = "HEAD")]
        git_ref: String,
        /// The branch the app follows: `HEAD` in `--ref` stands for its tip.
        #[arg(long, default_value = "main")]
        branch: String,
        /// The app's registered name.
        #[arg(long)]
        app: AppName,
        /// The release version; default `0-<short sha>`.
        #[arg(long)]
        version: Option<Version>,
        /// Build this subdirectory of the repository as the project (an
        /// app in a monorepo), like an app registered with `--root`.
        #[arg(long)]
        root: Option<deploy::AppRoot>,
        /// Where to write the tarball.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Claim queued builds from AppTracker, build and upload them.
    Worker {
        /// AppTracker's URL.
        #[arg(long, env = "SLIPWAY_SERVER", default_value = deploy::DEFAULT_SERVER)]
        server: String,
        /// File holding a builder token (or set SLIPWAY_TOKEN, which the
        /// worker then removes from its environment).
        #[arg(long, env = "SLIPWAY_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// PEM file of a private CA to trust besides the system's roots.
        #[arg(long, env = "SLIPWAY_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// This worker's name; default `<host name>-<pid>`, the host name
        /// by the agents' rule (/proc/sys/kernel/hostname, else
        /// /etc/hostname).
        #[arg(long, env = "SLIPWAY_WORKER_NAME")]
        name: Option<String>,
        /// How often to ask for work when the queue is empty.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        poll: std::time::Duration,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Make a signing key (mode 0600) and print its public key, which
    /// grabbers are given with `--trusted-key`. Never replaces a file.
    Keygen {
        /// Where to write the key (the base64 of a 32-byte ed25519 seed).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The cache and git credentials, for both commands.
#[derive(clap::Args)]
struct SettingsArgs {
    /// Where remote mirrors and installed dependencies are kept between
    /// builds [default: $XDG_CACHE_HOME/slipway/packer or ~/.cache/slipway/packer].
    #[arg(long, env = "SLIPWAY_PACKER_CACHE")]
    cache_dir: Option<PathBuf>,
    /// Keep nothing between builds: fetch everything and install every
    /// dependency each time.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// User name for http(s) git remotes (`git` when only a password is set).
    #[arg(long, env = "SLIPWAY_GIT_USERNAME")]
    git_username: Option<String>,
    /// File holding the password or access token for http(s) git remotes.
    #[arg(long, env = "SLIPWAY_GIT_PASSWORD_FILE")]
    git_password_file: Option<PathBuf>,
    /// SSH private key for ssh:// remotes (default: ask the ssh-agent).
    #[arg(long, env = "SLIPWAY_GIT_SSH_KEY")]
    git_ssh_key: Option<PathBuf>,
    /// The key artifacts are signed with (`packer keygen`); required by
    /// `worker`, optional for `build`.
    #[arg(long, env = "SLIPWAY_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// How build steps are confined (see README, "Build sandbox").
#[derive(clap::Args)]
struct SandboxArgs {
    /// `bubblewrap` (builds refuse to run when it cannot be set up) or
    /// `none` (build steps can read everything packer can, its signing key
    /// included: trusted single-user setups only; every build warns).
    #[arg(long, env = "SLIPWAY_SANDBOX", default_value = "bubblewrap")]
    sandbox: crate::SandboxKind,
    /// The bubblewrap program.
    #[arg(long, env = "SLIPWAY_BWRAP", default_value = "bwrap")]
    bwrap: PathBuf,
    /// Who build steps run as when packer runs as root: a user name, a uid,
    /// or uid:gid.
    #[arg(long, env = "SLIPWAY_SANDBOX_USER", default_value = "nobody")]
    sandbox_user: String,
    /// Let `[build] command` and `npm run build` reach the network
    /// (dependency installs always do).
    #[arg(long, env = "SLIPWAY_BUILD_NETWORK")]
    build_network: bool,
    /// Memory a build process may use, in MiB (RLIMIT_DATA).
    #[arg(long, default_value_t = crate::Limits::default().memory >> 20)]
    max_memory_mib: u64,
    /// Processes the sandbox user may run (RLIMIT_NPROC).
    #[arg(long, default_value_t = crate::Limits::default().processes)]
    max_processes: u64,
    /// Largest file a build may write, in MiB (RLIMIT_FSIZE).
    #[arg(long, default_value_t = crate::Limits::default().file_size >> 20)]
    max_file_mib: u64,
    /// Disk a build's checkout, /tmp and caches may take, in MiB.
    #[arg(long, default_value_t = crate::Limits::default().disk >> 20)]
    max_disk_mib: u64,
    /// Output one build step may print, in MiB.
    #[arg(long, default_value_t = crate::Limits::default().output >> 20)]
    max_output_mib: u64,
    /// How long to wait for a git remote to accept a connection.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    git_connect_timeout: std::time::Duration,
    /// How long a git remote may stay silent on an open connection.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    git_timeout: std::time::Duration,
}

impl SandboxArgs {
    fn config(self) -> anyhow::Result<(crate::SandboxConfig, crate::GitTimeouts)> {
        let user = crate::SandboxUser::parse(&self.sandbox_user).map_err(anyhow::Error::msg)?;
        let sandbox = crate::SandboxConfig {
            kind: self.sandbox,
            bwrap: self.bwrap,
            user,
            build_network: self.build_network,
            limits: crate::Limits {
                memory: self.max_memory_mib << 20,
                processes: self.max_processes,
                file_size: self.max_file_mib << 20,
                disk: self.max_disk_mib << 20,
                output: self.max_output_mib << 20,
            },
        };
        let git = crate::GitTimeouts {
            connect: self.git_connect_timeout,
            stall: self.git_timeout,
            ..crate::GitTimeouts::default()
        };
        Ok((sandbox, git))
    }
}

impl SettingsArgs {
    fn settings(self) -> anyhow::Result<crate::Settings> {
        let password = match &self.git_password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the git password file {}", path.display())
                })?;
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                if text.is_empty() {
                    anyhow::bail!("the git password file {} is empty", path.display());
                }
                Some(secrecy::SecretString::from(text))
            }
            None => None,
        };
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.or_else(default_cache_dir)
        };
        let signing_key = match &self.signing_key {
            Some(path) => Some(deploy::signing::SigningKey::load(path)?),
            None => None,
        };
        let (sandbox, git_timeouts) = self.sandbox.config()?;
        if sandbox.kind == crate::SandboxKind::None {
            tracing::warn!(
                "builds are not sandboxed (--sandbox none): build steps can read everything this process can, the signing key included"
            );
        }
        Ok(crate::Settings {
            signing_key,
            sandbox,
            git_timeouts,
            cache_dir,
            git: crate::GitCredentials {
                username: self.git_username,
                password,
                ssh_key: self.git_ssh_key,
            },
        })
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("slipway").join("packer"))
}

/// The binary's entry point (also used by the end-to-end tests' copies of
/// the binary).
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    Tracing::new(cli.log_format.unwrap_or_else(LogFormat::from_env))
        .to_stderr()
        .init();
    match cli.command {
        Cmd::Worker {
            server,
            token_file,
            ca_file,
            name,
            poll,
            settings,
        } => {
            // Before the runtime starts a thread.
            let worker = worker(server, token_file, ca_file, name, poll, settings);
            match worker {
                Ok((client, config)) => deploy::binary::run(async move {
                    // A build under way may finish (the unit allows 15 min).
                    let shutdown =
                        deploy::binary::shutdown_on_signal(std::time::Duration::from_secs(14 * 60));
                    crate::worker::run(client, config, shutdown).await;
                    anyhow::Ok(())
                }),
                Err(e) => deploy::binary::exit_code(Err(e)),
            }
        }
        command => deploy::binary::exit_code(run(command)),
    }
}

/// A worker's client and settings; reads (and drops from the environment)
/// its token, so call it while this is the only thread.
fn worker(
    server: String,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    name: Option<String>,
    poll: std::time::Duration,
    settings: SettingsArgs,
) -> anyhow::Result<(deploy::Client, crate::worker::WorkerConfig)> {
    // First, while this is the only thread: the token leaves the
    // environment, so no build can inherit it.
    let token = deploy::binary::read_token(token_file.as_deref(), true)?;
    let settings = settings.settings()?;
    if settings.signing_key.is_none() {
        anyhow::bail!(
            "a worker signs every artifact and needs a signing key: set --signing-key \
             or SLIPWAY_SIGNING_KEY (make one with `packer keygen --out FILE`)"
        );
    }
    let Some(token) = token else {
        anyhow::bail!("a worker needs a builder token: set SLIPWAY_TOKEN or --token-file");
    };
    let trust = deploy::tls::Trust::from_ca_file(ca_file.as_deref())?;
    let client = deploy::Client::with_trust(server.clone(), &trust)?.with_token(token);
    if let Some(warning) = deploy::tls::cleartext_warning(&server) {
        tracing::warn!("{warning}");
    }
    let name = match name {
        Some(name) => name,
        None => {
            let host = HostName::of_this_machine().map_err(|e| {
                anyhow::anyhow!(
                    "cannot tell this machine's host name for the worker's name ({}); pass --name",
                    e.tried()
                )
            })?;
            format!("{host}-{}", std::process::id())
        }
    };
    Ok((
        client,
        crate::worker::WorkerConfig {
            name,
            poll,
            settings,
        },
    ))
}

/// The commands that run without a runtime.
fn run(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Keygen { out } => {
            let key = deploy::signing::SigningKey::generate_to_file(&out)?;
            eprintln!("wrote the signing key to {}", out.display());
            println!("{}", key.public_key());
            Ok(())
        }
        Cmd::Worker { .. } => unreachable!("a worker runs on a runtime, from main"),
        Cmd::Build {
            git_url,
            git_ref,
            branch,
            app,
            version,
            root,
            out,
            settings,
        } => {
            let settings = settings.settings()?;
            let commit = crate::resolve_ref(&settings, &git_url, &git_ref, &branch)
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
                root: root.as_ref(),
                version: &version,
                work_dir: work.path(),
                out_dir: &out,
                settings: &settings,
                log_sink: None,
            };
            match crate::build(&req) {
                Ok(built) => {
                    println!("artifact: {}", built.artifact_path.display());
                    println!("sha256:   {}", built.sha256);
                    println!("size:     {}", built.size);
                    match &built.signature {
                        Some(sig) => println!("signature: {sig}"),
                        None => println!("signature: none (no --signing-key)"),
                    }
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
