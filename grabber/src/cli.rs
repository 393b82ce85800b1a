//! The `grabber` binary: parses flags and environment, starts tracing, turns
//! SIGTERM/SIGINT into a cancellation and runs the agent.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use deploy::signing::PublicKey;
use deploy::{Cluster, HostName};

/// Slipway's per-host agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// AppTracker's base URL.
    #[arg(long, env = "SLIPWAY_SERVER", default_value = deploy::DEFAULT_SERVER)]
    server: String,
    /// The cluster this host belongs to.
    #[arg(long, env = "SLIPWAY_CLUSTER", default_value = "local")]
    cluster: Cluster,
    /// This host's name (default: the machine's host name, from
    /// /proc/sys/kernel/hostname or /etc/hostname).
    #[arg(long, env = "SLIPWAY_HOST")]
    host: Option<HostName>,
    /// How log lines are written: `text` or `json` (default: text, or json
    /// when SLIPWAY_LOG_JSON is set).
    #[arg(long, env = deploy::binary::LOG_FORMAT_ENV)]
    log_format: Option<deploy::binary::LogFormat>,
    /// Root of the host layout.
    #[arg(long, env = "SLIPWAY_ROOT", default_value = "./.slipway/host")]
    root: PathBuf,
    /// Added to every app's port.
    #[arg(
        long,
        env = "SLIPWAY_PORT_OFFSET",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    port_offset: i32,
    /// Ports for apps whose `slipway.toml` pins none, as `LOW-HIGH`: each
    /// such app gets a free one, passed as `PORT` and kept across releases.
    #[arg(long, env = "SLIPWAY_PORT_RANGE", default_value = "20000-29999", value_parser = parse_port_range)]
    port_range: std::ops::RangeInclusive<u16>,
    /// Time between heartbeats (e.g. `10s`).
    #[arg(long, env = "SLIPWAY_HEARTBEAT", default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Stop the apps when the grabber exits (dev mode).
    #[arg(long, env = "SLIPWAY_STOP_APPS_ON_EXIT")]
    stop_apps_on_exit: bool,
    /// Subscribe to the cluster's channel on this Redis instead of
    /// AppTracker's relayed stream.
    #[arg(long = "redis", env = "SLIPWAY_REDIS_URL")]
    redis_url: Option<String>,
    /// Namespace of the Redis channels (AppTracker's `redis_prefix`).
    #[arg(long, env = "SLIPWAY_REDIS_PREFIX", default_value = deploy::bus::DEFAULT_PREFIX)]
    redis_prefix: String,
    /// PEM file of a private CA to trust besides the system's roots
    /// (AppTracker, artifact downloads, `rediss://`).
    #[arg(long, env = "SLIPWAY_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// File holding the cluster's agent token (or set SLIPWAY_TOKEN). It
    /// must be readable by this user only (`chmod 600`).
    #[arg(long, env = "SLIPWAY_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Run apps as this user (a name, or uid[:gid]) unless a release's
    /// `[run] user` says otherwise; the grabber must be root to switch.
    /// Without it apps run as the grabber's own user (root warns).
    #[arg(long, env = "SLIPWAY_APP_USER")]
    app_user: Option<deploy::RunUser>,
    /// How long an artifact server may take to answer a download (its
    /// response headers) before the install fails.
    #[arg(long, env = "SLIPWAY_DOWNLOAD_RESPONSE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    download_response_timeout: Duration,
    /// How long a download may deliver nothing before the install fails.
    #[arg(long, env = "SLIPWAY_DOWNLOAD_STALL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    download_stall_timeout: Duration,
    /// Size at which an app's log is rotated (e.g. `10MiB`).
    #[arg(long, env = "SLIPWAY_LOG_MAX", default_value = "10MiB", value_parser = parse_size)]
    log_max: u64,
    /// Rotated log files kept per app (`app.log.1` …).
    #[arg(long, env = "SLIPWAY_LOG_KEEP", default_value_t = 2)]
    log_keep: u32,
    /// The first wait before restarting a crashed app; doubled per crash.
    #[arg(long, env = "SLIPWAY_RESTART_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    restart_backoff: Duration,
    /// The longest wait between restarts of a crashing app.
    #[arg(long, env = "SLIPWAY_RESTART_BACKOFF_MAX", default_value = "60s", value_parser = humantime::parse_duration)]
    restart_backoff_max: Duration,
    /// Crashes (without a minute of stable running between them) after
    /// which an app is reported `failing`.
    #[arg(long, env = "SLIPWAY_FAILING_AFTER", default_value_t = 5)]
    failing_after: u32,
    /// Releases kept on disk per app (at least 2), for rollbacks without
    /// a download.
    #[arg(long, env = "SLIPWAY_KEEP_RELEASES", default_value_t = 3)]
    keep_releases: usize,
    /// Serve this host's release files to the other hosts of its cluster
    /// on this address (HTTPS, a certificate made at start and vouched for
    /// by AppTracker; only hosts with a ticket from AppTracker are
    /// answered), e.g. `0.0.0.0:7946`. Off when unset.
    #[arg(long, env = "SLIPWAY_PEER_LISTEN", value_name = "ADDR:PORT")]
    peer_listen: Option<std::net::SocketAddr>,
    /// The address or name other hosts reach the peer listener by (needed
    /// when --peer-listen binds 0.0.0.0 or ::).
    #[arg(long, env = "SLIPWAY_PEER_ADVERTISE", value_name = "HOST")]
    peer_advertise: Option<String>,
    /// How often to fetch the desired state even when the bus is quiet.
    #[arg(long, env = "SLIPWAY_RECONCILE", default_value = "5m", value_parser = humantime::parse_duration)]
    reconcile: Duration,
    /// A packer's public key (`ed25519:<base64>`): artifacts must be signed
    /// by one of the trusted keys. Repeatable (or SLIPWAY_TRUSTED_KEYS,
    /// comma-separated); at least one key is required, here or in
    /// --trusted-keys-file.
    #[arg(
        long = "trusted-key",
        value_name = "KEY",
        env = "SLIPWAY_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    trusted_keys: Vec<PublicKey>,
    /// File of trusted public keys, one per line (`#` comments allowed).
    #[arg(long, env = "SLIPWAY_TRUSTED_KEYS_FILE")]
    trusted_keys_file: Option<PathBuf>,
}

/// `1048576`, `512KiB`, `10MiB`, `1GiB` (binary units; `KB`/`MB`/`GB` are
/// read the same way, as people mean them for log sizes).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 10MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a usable size"))
}

/// The keys of `--trusted-key` and `--trusted-keys-file` together.
fn trusted_keys(args: &Args) -> anyhow::Result<Vec<PublicKey>> {
    let mut keys = args.trusted_keys.clone();
    if let Some(path) = &args.trusted_keys_file {
        keys.extend(deploy::signing::read_public_keys(path).map_err(anyhow::Error::msg)?);
    }
    let mut unique: Vec<PublicKey> = Vec::with_capacity(keys.len());
    for k in keys {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    Ok(unique)
}

/// The binary's entry point (also used by the end-to-end tests' copies of
/// the binary). Started as an app's shim, it is only that.
pub fn main() -> std::process::ExitCode {
    if let Some(code) = crate::shim::dispatch() {
        return code;
    }
    let args = Args::parse();
    // Read, then dropped from the environment, while this is the only
    // thread. Like ssh with a private key, a token file others may read is
    // refused.
    let token = deploy::binary::read_token(args.token_file.as_deref(), true);
    let token = match token {
        Ok(t) => t.map(crate::AgentToken::from),
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    deploy::binary::run(run(args, token))
}

async fn run(args: Args, token: Option<crate::AgentToken>) -> anyhow::Result<()> {
    deploy::binary::init_tracing(
        args.log_format
            .unwrap_or_else(deploy::binary::LogFormat::from_env),
    );

    let trusted_keys = trusted_keys(&args)?;
    let host = match args.host {
        Some(h) => h,
        None => HostName::of_this_machine()?,
    };
    let config = crate::Config {
        trusted_keys,
        server: args.server,
        cluster: args.cluster,
        host,
        root: args.root,
        port_offset: args.port_offset,
        port_range: args.port_range,
        heartbeat_interval: args.heartbeat,
        stop_apps_on_exit: args.stop_apps_on_exit,
        token,
        redis_url: args.redis_url,
        redis_prefix: args.redis_prefix,
        trust: deploy::tls::Trust::from_ca_file(args.ca_file.as_deref())?,
        log_limits: crate::shim::LogLimits {
            max_bytes: args.log_max,
            keep: args.log_keep,
        },
        restart: crate::RestartPolicy {
            initial_backoff: args.restart_backoff,
            max_backoff: args.restart_backoff_max,
            failing_after: args.failing_after.max(1),
            ..crate::RestartPolicy::default()
        },
        reconcile_interval: args.reconcile,
        keep_releases: args.keep_releases.max(2),
        peer_listen: args.peer_listen,
        peer_advertise: args.peer_advertise,
        app_user: args.app_user,
        download_response_timeout: args.download_response_timeout,
        download_stall_timeout: args.download_stall_timeout,
        ..crate::Config::default()
    };

    // Under the unit's TimeoutStopSec (2 min): an install under way ends
    // first when it can; a killed one converges at the next start.
    let shutdown = deploy::binary::shutdown_on_signal(std::time::Duration::from_secs(90));
    crate::run(config, shutdown).await
}

/// `LOW-HIGH`, both ports, LOW at most HIGH.
fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("`{s}` is not a port range like 20000-29999");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}
