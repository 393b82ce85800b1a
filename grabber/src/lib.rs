//! Slipway's per-host agent: knows its cluster and host name, follows the
//! cluster's bus, installs releases (download, verify, extract, switch the
//! `current` symlink, stop the old process, start the new one, health-check,
//! roll back) and supervises the app processes.
//!
//! Several grabbers may run in one process (dev mode, tests): all state
//! hangs off the `run` call, nothing is global.

use std::path::PathBuf;
use std::time::Duration;

use deploy::signing::PublicKey;
use deploy::{Cluster, HostName};
use secrecy::SecretString;

mod agent;
pub mod cli;
pub(crate) mod content;
mod doorbell;
pub mod extract;
mod fault;
mod health;
mod install;
mod log_piece;
mod peer;
mod ports;
mod process;
mod runtime;
pub mod shim;
mod symlink;
mod user;

pub use agent::run;
pub use secrecy::SecretString as AgentToken;

/// How one grabber runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// AppTracker's base URL.
    pub server: String,
    pub cluster: Cluster,
    pub host: HostName,
    /// The host layout's root (`apps/`, `cache/`, `tmp/`).
    pub root: PathBuf,
    /// Added to every release's `run.port` to make `PORT`, so several hosts
    /// can share one machine.
    pub port_offset: i32,
    /// Where the ports of apps that pin none come from (`PORT`), one per
    /// app, kept across its releases and restarts.
    pub port_range: std::ops::RangeInclusive<u16>,
    pub heartbeat_interval: Duration,
    /// Stop the supervised apps when the grabber stops (dev mode and
    /// tests); in production they keep running and are adopted on restart.
    pub stop_apps_on_exit: bool,
    /// The largest artifact (and extracted size) accepted.
    pub max_artifact_bytes: u64,
    /// The cluster's agent token, sent to AppTracker; never logged.
    pub token: Option<SecretString>,
    /// Subscribe to this Redis (`redis://...`) for the cluster's channel
    /// instead of AppTracker's relayed event stream.
    pub redis_url: Option<String>,
    /// Namespace of the Redis channels; AppTracker's `redis_prefix`.
    pub redis_prefix: String,
    /// Which CAs the certificates of AppTracker, the artifact store
    /// (presigned https URLs) and a `rediss://` bus may come from.
    pub trust: deploy::tls::Trust,
    /// The packers' public keys: an artifact is installed only when one of
    /// them signed it. Never learnt from AppTracker; `run` refuses to start
    /// without one.
    pub trusted_keys: Vec<PublicKey>,
    /// The binary re-executed as each app's shim (see `shim`): this
    /// process's own executable unless told otherwise. Every binary that
    /// runs grabbers calls `shim::dispatch()` first in `main`.
    pub shim: PathBuf,
    /// Size cap and rotation of each app's log.
    pub log_limits: shim::LogLimits,
    /// When and how often a crashed app is started again.
    pub restart: RestartPolicy,
    /// Releases kept on disk per app (at least 2: current and previous),
    /// for rollbacks without a download.
    pub keep_releases: usize,
    /// Where to serve this host's release files to its peers (`peer`);
    /// off when `None`.
    pub peer_listen: Option<std::net::SocketAddr>,
    /// The address other hosts reach the peer listener by, when it binds
    /// an unspecified address.
    pub peer_advertise: Option<String>,
    /// How often the desired state is fetched even when the bus is quiet
    /// (bus messages are only a faster trigger).
    pub reconcile_interval: Duration,
    /// Who apps run as unless their release says (`[run] user`): a user
    /// name or `uid[:gid]`. `None`: as the grabber's own user (root, when
    /// the grabber is; it warns at start).
    pub app_user: Option<deploy::RunUser>,
    /// Time allowed for an artifact server to answer (connect, request,
    /// response headers); the app's install lock is held meanwhile.
    pub download_response_timeout: Duration,
    /// A download that delivers nothing for this long is abandoned.
    pub download_stall_timeout: Duration,
}

/// Restarts of an app that exits on its own, with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The wait before the first restart; doubled for each further crash.
    pub initial_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// An app up this long is stable again: the crash count starts over.
    pub stable_after: Duration,
    /// This many crashes without a stable run make the app `failing`
    /// (still restarted, at `max_backoff`).
    pub failing_after: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
            failing_after: 5,
        }
    }
}

/// The ports apps that pin none get by default: above the usual services,
/// below the kernel's ephemeral range (32768 and up).
pub const DEFAULT_PORT_RANGE: std::ops::RangeInclusive<u16> = 20000..=29999;

impl Default for Config {
    fn default() -> Self {
        Self {
            server: deploy::DEFAULT_SERVER.to_string(),
            cluster: Cluster::parse("local")
                .unwrap_or_else(|_| unreachable!("valid cluster literal")),
            host: default_host(),
            root: PathBuf::from("./.slipway/host"),
            port_offset: 0,
            port_range: DEFAULT_PORT_RANGE,
            heartbeat_interval: Duration::from_secs(10),
            stop_apps_on_exit: false,
            max_artifact_bytes: 2 * 1024 * 1024 * 1024,
            token: None,
            redis_url: None,
            redis_prefix: deploy::bus::DEFAULT_PREFIX.to_string(),
            trust: deploy::tls::Trust::system(),
            shim: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("grabber")),
            log_limits: shim::LogLimits::default(),
            restart: RestartPolicy::default(),
            keep_releases: 3,
            peer_listen: None,
            peer_advertise: None,
            reconcile_interval: Duration::from_secs(300),
            trusted_keys: Vec::new(),
            app_user: None,
            download_response_timeout: Duration::from_secs(30),
            download_stall_timeout: Duration::from_secs(60),
        }
    }
}

/// The machine's host name by the agents' one rule
/// ([`HostName::of_this_machine`]), or `localhost` when it has none: the
/// placeholder of [`Config::default`] and of in-process setups, which name
/// their hosts themselves. The `grabber` binary refuses to start instead.
pub fn default_host() -> HostName {
    HostName::of_this_machine().unwrap_or_else(|_| {
        HostName::parse("localhost").unwrap_or_else(|_| unreachable!("valid host name literal"))
    })
}

/// The `grabber` binary next to the test executable (cargo builds it for
/// the package's integration tests), to run as the shim in unit tests.
#[cfg(test)]
pub(crate) fn test_shim() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("grabber"))
        .unwrap_or_default();
    assert!(
        bin.is_file(),
        "{} is missing: build the grabber binary first (`cargo build -p grabber`)",
        bin.display()
    );
    bin
}
