//! The `versionchecker` binary: `scan` prints what a host runs, `agent`
//! reports it to AppTracker every interval, `check` is a Nagios/Icinga
//! plugin over the fleet's drift.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use deploy::{Client, Cluster, DriftQuery, HostName};
use secrecy::SecretString;

use crate::check::{self, Outcome, Range, Thresholds};

#[derive(Parser)]
#[command(
    name = "versionchecker",
    version,
    about = "What runs where on a Slipway host, and the fleet's drift"
)]
struct Cli {
    /// How log lines are written: `text` or `json` (default: text, or json
    /// when SLIPWAY_LOG_JSON is set).
    #[arg(long, global = true, env = deploy::binary::LOG_FORMAT_ENV)]
    log_format: Option<deploy::binary::LogFormat>,
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
    /// Report what this host has installed and running to AppTracker,
    /// every interval, until stopped (SIGTERM/SIGINT).
    Agent {
        /// AppTracker's base URL.
        #[arg(long, env = "SLIPWAY_SERVER", default_value = deploy::DEFAULT_SERVER)]
        server: String,
        #[arg(long, env = "SLIPWAY_CLUSTER", default_value = "local")]
        cluster: Cluster,
        /// This host's name, as its grabber calls it (default: the
        /// machine's host name, from /proc/sys/kernel/hostname or
        /// /etc/hostname).
        #[arg(long, env = "SLIPWAY_HOST")]
        host: Option<HostName>,
        /// Root of the host layout (the grabber's --root).
        #[arg(long, env = "SLIPWAY_ROOT", default_value = "./.slipway/host")]
        root: PathBuf,
        /// Time between reports (e.g. `60s`).
        #[arg(long, env = "SLIPWAY_REPORT_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Random spread of each wait, as a share of the interval (`10%`).
        #[arg(long, env = "SLIPWAY_REPORT_JITTER", default_value = "10%", value_parser = parse_percent)]
        jitter: f64,
        /// File holding the cluster's agent token (or set SLIPWAY_TOKEN,
        /// which the agent then removes from its environment).
        #[arg(long, env = "SLIPWAY_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// PEM file of a private CA to trust besides the system's roots.
        #[arg(long, env = "SLIPWAY_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Nagios/Icinga plugin: one status line with perfdata; exit 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN (AppTracker unreachable, a refused
    /// token, bad flags). Thresholds apply to the drifted hosts (drifted,
    /// not running or missing) and to the stale ones.
    Check {
        /// AppTracker's base URL.
        #[arg(long, env = "SLIPWAY_SERVER", default_value = deploy::DEFAULT_SERVER)]
        server: String,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Warning range (plugin syntax: `0` warns on any, `2` above two).
        #[arg(short = 'w', long = "warning", default_value = "0", value_parser = Range::parse)]
        warning: Range,
        /// Critical range (none by default).
        #[arg(short = 'c', long = "critical", value_parser = Range::parse)]
        critical: Option<Range>,
        /// Give up after this long (UNKNOWN).
        #[arg(short = 't', long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// File holding a viewer token (or set SLIPWAY_TOKEN).
        #[arg(long, env = "SLIPWAY_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// PEM file of a private CA to trust besides the system's roots.
        #[arg(long, env = "SLIPWAY_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
}

/// `10%` or `0.1`.
fn parse_percent(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a share like 10%");
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => s.trim().parse::<f64>().map_err(|_| bad())?,
    };
    (0.0..=0.5)
        .contains(&v)
        .then_some(v)
        .ok_or_else(|| format!("`{s}`: the jitter must be between 0% and 50%"))
}

/// The entry point of the binary (and of the tests' copy of it).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A monitoring system runs `check`: bad flags there are UNKNOWN
            // (3) with one line, not clap's usage error (2).
            let is_check = std::env::args().nth(1).as_deref() == Some("check");
            if is_check && e.use_stderr() {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or("bad arguments");
                println!(
                    "{}",
                    Outcome::unknown(first.trim_start_matches("error: ")).line
                );
                return ExitCode::from(check::Status::Unknown.code());
            }
            e.exit();
        }
    };
    match cli.command {
        Command::Check {
            server,
            app,
            cluster,
            warning,
            critical,
            timeout,
            token_file,
            ca_file,
        } => {
            let outcome = runtime()
                .map_err(|e| Outcome::unknown(format!("{e:#}")))
                .map(|rt| {
                    rt.block_on(run_check(
                        &server,
                        app,
                        cluster,
                        Thresholds {
                            warning: Some(warning),
                            critical,
                        },
                        timeout,
                        token_file.as_deref(),
                        ca_file.as_deref(),
                    ))
                })
                .unwrap_or_else(|o| o);
            println!("{}", outcome.line);
            ExitCode::from(outcome.status.code())
        }
        command => match run(command, cli.log_format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread: the agent does one thing at a time and should stay small.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(command: Command, log_format: Option<deploy::binary::LogFormat>) -> anyhow::Result<()> {
    match command {
        Command::Scan { root } => {
            let mut scanner = crate::Scanner::new(&root);
            let apps = scanner
                .scan()
                .with_context(|| format!("cannot read the host layout under {}", root.display()))?;
            println!("{}", serde_json::to_string_pretty(&apps)?);
        }
        Command::Agent {
            server,
            cluster,
            host,
            root,
            interval,
            jitter,
            token_file,
            ca_file,
        } => {
            deploy::binary::Tracing::new(
                log_format.unwrap_or_else(deploy::binary::LogFormat::from_env),
            )
            .to_stderr()
            .init();
            // Before the runtime starts a thread: the agent drops
            // SLIPWAY_TOKEN from its environment.
            let token = read_token(token_file.as_deref(), true)?;
            let host = match host {
                Some(h) => h,
                None => HostName::of_this_machine()?,
            };
            let cfg = crate::AgentConfig {
                token,
                trust: deploy::tls::Trust::from_ca_file(ca_file.as_deref())?,
                interval,
                jitter,
                ..crate::AgentConfig::new(server, cluster, host, root)
            };
            runtime()?.block_on(async {
                let shutdown =
                    deploy::binary::shutdown_on_signal(std::time::Duration::from_secs(10));
                crate::agent::run(cfg, shutdown).await
            })?;
        }
        Command::Check { .. } => unreachable!("handled in main"),
    }
    Ok(())
}

async fn run_check(
    server: &str,
    app: Option<String>,
    cluster: Option<String>,
    thresholds: Thresholds,
    timeout: Duration,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
) -> Outcome {
    let token = match read_token(token_file, false) {
        Ok(t) => t,
        Err(e) => return Outcome::unknown(format!("{e:#}")),
    };
    let client = deploy::tls::Trust::from_ca_file(ca_file)
        .and_then(|trust| Client::with_trust(server, &trust));
    let mut client = match client {
        Ok(c) => c,
        Err(e) => return Outcome::unknown(e.to_string()),
    };
    if let Some(t) = &token {
        client = client.with_token(secrecy::ExposeSecret::expose_secret(t));
    }
    let what = match (&app, &cluster) {
        (Some(a), Some(c)) => format!("{a} on {c}"),
        (Some(a), None) => a.clone(),
        (None, Some(c)) => format!("every app on {c}"),
        (None, None) => "every app".to_string(),
    };
    let query = DriftQuery {
        app,
        cluster,
        state: None,
    };
    match tokio::time::timeout(timeout, client.drift(&query)).await {
        Err(_) => Outcome::unknown(format!(
            "AppTracker at {server} did not answer within {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Outcome::unknown(e),
        Ok(Ok(report)) => check::evaluate(&report, &what, &thresholds),
    }
}

/// The token: from a file when one is named, else `SLIPWAY_TOKEN` (never a
/// flag, which would show in `ps`); `drop_env` removes the variable from
/// the environment (the agent, a daemon).
fn read_token(file: Option<&Path>, drop_env: bool) -> anyhow::Result<Option<SecretString>> {
    Ok(deploy::binary::read_token(file, drop_env)?.map(SecretString::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_a_share() {
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent("0.25"), Ok(0.25));
        assert!(parse_percent("90%").is_err());
        assert!(parse_percent("some").is_err());
    }
}
