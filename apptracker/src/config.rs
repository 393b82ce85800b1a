//! AppTracker's configuration. `Config::default()` is the embedded setup:
//! SQLite and artifacts under `./.slipway/`, an in-process bus and packer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

pub use crate::drift::{ByteSize, ResourceLimits};
pub use http::HttpConfig;

mod http;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The URL hosts use to reach this server (artifact URLs are built from
    /// it). Defaults to `http://<bound address>`, or `https://…` when
    /// `[tls]` serves HTTPS.
    pub public_url: Option<String>,
    /// HTTPS served here (`cert_file`, `key_file`) and the extra CA
    /// AppTracker's own connections trust (`ca_file`).
    pub tls: crate::tls::TlsConfig,
    /// Where the embedded database and artifacts live.
    pub data_dir: PathBuf,
    /// `sqlite://...` (default: `<data_dir>/apptracker.db`) or `postgres://...`.
    pub database_url: Option<String>,
    /// A host with no progress report for this long is `timed_out`.
    #[serde(with = "humantime_serde_compat")]
    pub host_deadline: Duration,
    /// A host whose grabber has not heartbeated for this long is not
    /// alive: deploys (and the targets preview) leave it out.
    #[serde(with = "humantime_serde_compat")]
    pub host_alive: Duration,
    /// A host under way in a deploy whose grabber has not heartbeated for
    /// this long is `unreachable` (the host is down, not the app); one
    /// whose grabber heartbeats but reports no progress within
    /// `host_deadline` is `timed_out`.
    #[serde(with = "humantime_serde_compat")]
    pub host_unreachable: Duration,
    /// A host asked to install that has reported nothing for this long is
    /// asked again (the bus message may have been lost: a Redis outage, a
    /// grabber reconnecting); again at most this often, until
    /// `host_deadline`.
    #[serde(with = "humantime_serde_compat")]
    pub republish_after: Duration,
    /// How often the deadline sweeper looks.
    #[serde(with = "humantime_serde_compat")]
    pub sweep_interval: Duration,
    /// The in-process builder: whether it runs (`builder = false`, or
    /// `APPTRACKER_BUILDER=false`, turns it off) and how its builds are
    /// sandboxed (`[builder]` table).
    pub builder: BuilderConfig,
    /// How long a worker's claim on a build lasts unless renewed.
    #[serde(with = "humantime_serde_compat")]
    pub build_lease: Duration,
    /// How often a build goes back to the queue because its worker's lease
    /// ran out before it fails instead (with the reason, and so do the
    /// deploys waiting on it).
    pub max_build_requeues: u32,
    /// The largest artifact a worker may upload (`2GiB`, `500MiB`, or
    /// bytes); a larger upload is cut off with 413 and nothing is kept.
    pub max_artifact_size: ByteSize,
    /// An artifact upload that sends nothing for this long is cut off
    /// (408) and nothing is kept.
    #[serde(with = "humantime_serde_compat")]
    pub upload_idle_timeout: Duration,
    /// How often long-lived streams (the bus relay, deploy streams) check
    /// that their token still exists: a revoked token's stream ends within
    /// this (at once when it is revoked through this replica).
    #[serde(with = "humantime_serde_compat")]
    pub token_recheck: Duration,
    /// An S3-compatible bucket for artifacts; the local directory when unset.
    pub s3: Option<crate::store::S3Config>,
    /// `redis://...`: the bus goes through Redis, so several replicas and
    /// remote grabbers share it. In-process when unset.
    pub redis_url: Option<String>,
    /// Namespace of the Redis channels (`<prefix>.deploy.<cluster>`), so
    /// several installations can share one Redis; grabbers must use the same.
    pub redis_prefix: String,
    /// How long a download URL handed to a host stays valid.
    #[serde(with = "humantime_serde_compat")]
    pub artifact_url_ttl: Duration,
    /// No longer used: webhooks are verified with each app's own secret
    /// per provider (`deploy webhook-secret`). One shared secret let a
    /// GitLab token, sent in clear, sign GitHub pushes for every app. Kept
    /// so an old config still loads; AppTracker warns when it is set.
    pub webhook_secret_file: Option<PathBuf>,
    /// How long an app's previous webhook secret keeps working after a
    /// rotation, unless the rotation says otherwise.
    #[serde(with = "humantime_serde_compat")]
    pub webhook_secret_grace: Duration,
    /// How long a webhook delivery id is remembered: a delivery with an id
    /// seen within this window does nothing.
    #[serde(with = "humantime_serde_compat")]
    pub webhook_delivery_retention: Duration,
    /// The key webhook secrets are sealed with in the database (64 hex
    /// digits); `<data_dir>/secrets.key` when unset, generated at first
    /// start. Replicas sharing a database must share it.
    pub secrets_key_file: Option<PathBuf>,
    /// File holding the key that signs local-store download URLs; replicas
    /// serving one directory must share it. `<data_dir>/url-signing.key`
    /// when unset, generated (mode 0600) at first start, so the URLs handed
    /// out survive a restart.
    pub url_signing_key_file: Option<PathBuf>,
    /// The ed25519 key the in-process builder signs artifacts with (the
    /// base64 of a 32-byte seed); `<data_dir>/signing.key` when unset,
    /// generated at first start. Grabbers trust its public key
    /// (`apptracker key show`).
    pub signing_key_file: Option<PathBuf>,
    /// Where the in-process builder keeps remote mirrors and installed
    /// dependencies between builds; `<data_dir>/cache` when unset.
    pub build_cache_dir: Option<PathBuf>,
    /// How to authenticate to git remotes that ask (ref resolution and the
    /// in-process builder; `packer worker` has flags of its own).
    pub git: GitConfig,
    /// How long a dashboard session lasts after signing in.
    #[serde(with = "humantime_serde_compat")]
    pub session_ttl: Duration,
    /// Version reports and drift: the interval assumed for silent hosts,
    /// resource limits, whether `/metrics` needs a token.
    pub drift: DriftConfig,
    /// How often the drift table is looked at for `drift_found`
    /// notifications (only while one wants them): an app that drifts is
    /// announced within this after the report that shows it.
    #[serde(with = "humantime_serde_compat")]
    pub drift_watch_interval: Duration,
    /// Hosts fetching releases' files from each other: `[peers]`.
    pub peers: PeersConfig,
    /// The API's request timeout and concurrency limit: `[http]`.
    pub http: HttpConfig,
}

/// `[peers]` in AppTracker's config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    /// The ed25519 key that signs peer tickets (the base64 of a 32-byte
    /// seed); `<data_dir>/peer-ticket.key` when unset, generated at first
    /// start. Replicas must share one: a grabber accepts the tickets of
    /// the key its last heartbeat's answer named.
    pub ticket_key_file: Option<PathBuf>,
}

/// Credentials for git remotes (the secrets come from files, never from the
/// config itself), and how long a remote may keep us waiting.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitConfig {
    /// HTTP(S) user name (`git` when only a password is set).
    pub username: Option<String>,
    /// File holding the HTTPS password or access token (never sent over
    /// plain http:// or git://).
    pub password_file: Option<PathBuf>,
    /// SSH private key for `ssh://` remotes; the ssh-agent when unset.
    pub ssh_key_file: Option<PathBuf>,
    /// How long to wait for a remote to accept a connection.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// How long a remote may stay silent on an open connection; a ref
    /// resolution (`POST /deploys`, `/builds`) or a build's fetch fails
    /// then, saying so.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for GitConfig {
    fn default() -> Self {
        let t = packer::GitTimeouts::default();
        Self {
            username: None,
            password_file: None,
            ssh_key_file: None,
            connect_timeout: t.connect,
            timeout: t.stall,
        }
    }
}

/// The in-process builder. Written `builder = true|false` (whether it runs,
/// every other setting its default) or as a `[builder]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderConfig {
    /// Run queued builds in this process.
    pub enabled: bool,
    /// `bubblewrap` (the default; builds refuse to run when it cannot be
    /// set up) or `none` (trusted single-user setups only: build steps can
    /// read the signing key and the data directory; every build warns).
    pub sandbox: packer::SandboxKind,
    /// Who build steps run as when AppTracker runs as root: a user name, a
    /// uid or `uid:gid` (default `nobody`).
    pub sandbox_user: String,
    /// The bubblewrap program.
    pub bwrap: PathBuf,
    /// Whether `[build] command` and `npm run build` reach the network
    /// (pip and npm installs always do).
    pub build_network: bool,
    /// Memory a build process may use, in MiB (RLIMIT_DATA).
    pub max_memory_mib: u64,
    /// Processes the sandbox user may run (RLIMIT_NPROC).
    pub max_processes: u64,
    /// Largest file a build may write, in MiB (RLIMIT_FSIZE).
    pub max_file_mib: u64,
    /// Disk a build's checkout, /tmp and download caches may take, in MiB.
    pub max_disk_mib: u64,
    /// Output one build step may print before it is stopped, in MiB.
    pub max_output_mib: u64,
}

impl Default for BuilderConfig {
    fn default() -> Self {
        let sandbox = packer::SandboxConfig::default();
        let l = sandbox.limits;
        Self {
            enabled: true,
            sandbox: sandbox.kind,
            sandbox_user: sandbox.user.name,
            bwrap: sandbox.bwrap,
            build_network: sandbox.build_network,
            max_memory_mib: l.memory >> 20,
            max_processes: l.processes,
            max_file_mib: l.file_size >> 20,
            max_disk_mib: l.disk >> 20,
            max_output_mib: l.output >> 20,
        }
    }
}

impl BuilderConfig {
    /// No in-process builder (packer workers build).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The packer sandbox these settings describe; the sandbox user is
    /// looked up now, so a bad one fails at start-up.
    pub fn sandbox(&self) -> anyhow::Result<packer::SandboxConfig> {
        let user = packer::SandboxUser::parse(&self.sandbox_user)
            .map_err(|e| anyhow::anyhow!("builder.sandbox_user: {e}"))?;
        Ok(packer::SandboxConfig {
            kind: self.sandbox,
            bwrap: self.bwrap.clone(),
            user,
            build_network: self.build_network,
            limits: packer::Limits {
                memory: self.max_memory_mib << 20,
                processes: self.max_processes,
                file_size: self.max_file_mib << 20,
                disk: self.max_disk_mib << 20,
                output: self.max_output_mib << 20,
            },
        })
    }
}

/// The `[builder]` table as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BuilderTable {
    enabled: bool,
    sandbox: packer::SandboxKind,
    sandbox_user: String,
    bwrap: PathBuf,
    build_network: bool,
    max_memory_mib: u64,
    max_processes: u64,
    max_file_mib: u64,
    max_disk_mib: u64,
    max_output_mib: u64,
}

impl Default for BuilderTable {
    fn default() -> Self {
        let d = BuilderConfig::default();
        Self {
            enabled: d.enabled,
            sandbox: d.sandbox,
            sandbox_user: d.sandbox_user,
            bwrap: d.bwrap,
            build_network: d.build_network,
            max_memory_mib: d.max_memory_mib,
            max_processes: d.max_processes,
            max_file_mib: d.max_file_mib,
            max_disk_mib: d.max_disk_mib,
            max_output_mib: d.max_output_mib,
        }
    }
}

impl<'de> Deserialize<'de> for BuilderConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BuilderConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or a [builder] table")
            }

            fn visit_bool<E: serde::de::Error>(self, enabled: bool) -> Result<Self::Value, E> {
                Ok(BuilderConfig {
                    enabled,
                    ..BuilderConfig::default()
                })
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "true" => self.visit_bool(true),
                    "false" => self.visit_bool(false),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let t =
                    BuilderTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(BuilderConfig {
                    enabled: t.enabled,
                    sandbox: t.sandbox,
                    sandbox_user: t.sandbox_user,
                    bwrap: t.bwrap,
                    build_network: t.build_network,
                    max_memory_mib: t.max_memory_mib,
                    max_processes: t.max_processes,
                    max_file_mib: t.max_file_mib,
                    max_disk_mib: t.max_disk_mib,
                    max_output_mib: t.max_output_mib,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            tls: crate::tls::TlsConfig::default(),
            data_dir: PathBuf::from(".slipway"),
            database_url: None,
            host_deadline: Duration::from_secs(300),
            host_alive: Duration::from_secs(120),
            host_unreachable: Duration::from_secs(30),
            republish_after: Duration::from_secs(15),
            sweep_interval: Duration::from_secs(2),
            builder: BuilderConfig::default(),
            build_lease: Duration::from_secs(60),
            max_build_requeues: 3,
            max_artifact_size: ByteSize(2 << 30),
            upload_idle_timeout: Duration::from_secs(60),
            token_recheck: Duration::from_secs(30),
            redis_url: None,
            redis_prefix: deploy::bus::DEFAULT_PREFIX.to_string(),
            s3: None,
            artifact_url_ttl: Duration::from_secs(15 * 60),
            url_signing_key_file: None,
            signing_key_file: None,
            webhook_secret_file: None,
            webhook_secret_grace: Duration::from_secs(24 * 3600),
            webhook_delivery_retention: Duration::from_secs(24 * 3600),
            secrets_key_file: None,
            build_cache_dir: None,
            git: GitConfig::default(),
            session_ttl: Duration::from_secs(12 * 3600),
            drift: DriftConfig::default(),
            drift_watch_interval: Duration::from_secs(15),
            peers: PeersConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file over the defaults; unknown keys are errors that name
    /// the key and the line.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// The layered configuration: defaults, then the TOML file (if any),
    /// then `APPTRACKER_<KEY>` environment variables (`__` for nesting:
    /// `APPTRACKER_S3__BUCKET`). An error names the bad key and where it
    /// came from.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        use figment::Figment;
        use figment::providers::{Env, Format, Toml};
        let mut fig = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            // Parse once with the toml crate for its line-accurate errors.
            Self::from_file(path)?;
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(
            Env::prefixed("APPTRACKER_")
                .split("__")
                .ignore(&["config", "log_json"]),
        );
        fig.extract::<Config>()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("apptracker.db").display()
            )
        })
    }

    /// What packer needs here: the build cache, git credentials (the
    /// password read from its file now, so a bad path fails at start-up),
    /// git timeouts and the build sandbox.
    pub fn packer_settings(&self) -> anyhow::Result<packer::Settings> {
        let password = match &self.git.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read git.password_file {}", path.display()))?;
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                if text.is_empty() {
                    anyhow::bail!("git.password_file {} is empty", path.display());
                }
                Some(secrecy::SecretString::from(text))
            }
            None => None,
        };
        Ok(packer::Settings {
            sandbox: self.builder.sandbox()?,
            git_timeouts: packer::GitTimeouts {
                connect: self.git.connect_timeout,
                stall: self.git.timeout,
                ..packer::GitTimeouts::default()
            },
            cache_dir: Some(
                self.build_cache_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("cache")),
            ),
            git: packer::GitCredentials {
                username: self.git.username.clone(),
                password,
                ssh_key: self.git.ssh_key_file.clone(),
            },
            // Set by the tracker from `signing_key()` (see startup.rs).
            signing_key: None,
        })
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing.key"))
    }

    /// The artifact signing key, generated when the file does not exist
    /// yet; says whether it was (for the caller to tell, by the public key
    /// only).
    pub fn signing_key(&self) -> anyhow::Result<(deploy::signing::SigningKey, bool)> {
        Ok(deploy::signing::SigningKey::load_or_generate(
            &self.signing_key_path(),
        )?)
    }

    pub fn peer_ticket_key_path(&self) -> PathBuf {
        self.peers
            .ticket_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("peer-ticket.key"))
    }

    /// The key that signs peer tickets, generated (mode 0600) when the
    /// file does not exist yet; says whether it was.
    pub fn peer_ticket_key(&self) -> anyhow::Result<(deploy::signing::SigningKey, bool)> {
        Ok(deploy::signing::SigningKey::load_or_generate(
            &self.peer_ticket_key_path(),
        )?)
    }

    pub fn url_signing_key_path(&self) -> PathBuf {
        self.url_signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("url-signing.key"))
    }

    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets.key"))
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }
}

/// Durations as humantime strings ("30s", "5m") in config files.
/// `[drift]` in AppTracker's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// The reporting interval assumed for a host whose versionchecker never
    /// reported (a reporting host says its own): three of them without a
    /// report make a host `stale`.
    #[serde(deserialize_with = "duration")]
    pub report_interval: Duration,
    /// Per-app disk and memory limits (`[drift.limits.default]`,
    /// `[drift.limits.apps.<app>]`): hosts over them are flagged in the
    /// drift table and in `/metrics`.
    pub limits: ResourceLimits,
    /// Serve `/metrics` without a token, as Prometheus scrapes usually
    /// are; when false it needs a viewer token (`bearer_token_file` in the
    /// scrape config).
    pub metrics_public: bool,
    /// How long `/metrics` reuses what it read from the database (the
    /// whole fleet's drift): scrapes within this cost nothing more.
    #[serde(deserialize_with = "duration")]
    pub metrics_cache: Duration,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            report_interval: Duration::from_secs(60),
            limits: ResourceLimits::default(),
            metrics_public: true,
            metrics_cache: Duration::from_secs(5),
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
// figment's `Jail` closures return its (large) error type: not ours to shrink.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn layers_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "apptracker.toml",
                "listen = \"127.0.0.1:9999\"\nhost_deadline = \"1m\"\n[s3]\nbucket = \"from-file\"\n",
            )?;
            jail.set_env("APPTRACKER_HOST_DEADLINE", "90s");
            jail.set_env("APPTRACKER_S3__BUCKET", "from-env");
            jail.set_env("APPTRACKER_BUILDER", "false");
            jail.set_env("APPTRACKER_MAX_ARTIFACT_SIZE", "512MiB");
            jail.set_env("APPTRACKER_TOKEN_RECHECK", "5s");
            jail.set_env("APPTRACKER_TLS__CERT_FILE", "/etc/slipway/cert.pem");
            let c = Config::load(Some(Path::new("apptracker.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9999);
            assert_eq!(c.host_deadline, Duration::from_secs(90));
            assert_eq!(c.s3.map(|s| s.bucket).as_deref(), Some("from-env"));
            assert!(!c.builder.enabled);
            assert_eq!(c.builder.sandbox, packer::SandboxKind::Bubblewrap);
            assert_eq!(c.max_artifact_size.0, 512 << 20);
            assert_eq!(c.token_recheck, Duration::from_secs(5));
            assert_eq!(c.max_build_requeues, 3);
            assert_eq!(
                c.tls.cert_file.as_deref(),
                Some(Path::new("/etc/slipway/cert.pem"))
            );
            assert!(c.tls.key_file.is_none());
            assert_eq!(c.sweep_interval, Config::default().sweep_interval);
            Ok(())
        });
    }

    #[test]
    fn bad_settings_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listen = \"127.0.0.1:1\"\ncolour = \"blue\"\n")?;
            let e = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            let e = format!("{e:#}");
            assert!(e.contains("colour") && e.contains("line 2"), "{e}");

            jail.set_env("APPTRACKER_LISTEN", "not-an-address");
            let e = format!("{:#}", Config::load(None).unwrap_err());
            assert!(e.contains("LISTEN") && e.contains("APPTRACKER_"), "{e}");

            jail.clear_env();
            jail.set_env("APPTRACKER_DATABASE_ULR", "postgres://x");
            let e = format!("{:#}", Config::load(None).unwrap_err());
            assert!(e.to_lowercase().contains("database_ulr"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn builder_is_a_switch_or_a_table() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("on.toml", "builder = true\n")?;
            let c = Config::load(Some(Path::new("on.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.builder, BuilderConfig::default());

            jail.create_file(
                "table.toml",
                "[builder]\nsandbox = \"none\"\nsandbox_user = \"1234:1234\"\nmax_output_mib = 8\n",
            )?;
            let c = Config::load(Some(Path::new("table.toml"))).map_err(|e| e.to_string())?;
            assert!(c.builder.enabled);
            assert_eq!(c.builder.sandbox, packer::SandboxKind::None);
            let sandbox = c.builder.sandbox().map_err(|e| e.to_string())?;
            assert_eq!((sandbox.user.uid, sandbox.user.gid), (1234, 1234));
            assert_eq!(sandbox.limits.output, 8 << 20);

            jail.set_env("APPTRACKER_BUILDER__SANDBOX", "none");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.builder.sandbox, packer::SandboxKind::None);
            assert!(c.builder.enabled);

            jail.create_file("bad.toml", "[builder]\nsandbox = \"chroot\"\n")?;
            let e = format!(
                "{:#}",
                Config::load(Some(Path::new("bad.toml"))).unwrap_err()
            );
            assert!(e.contains("chroot") && e.contains("line 2"), "{e}");
            jail.create_file("typo.toml", "[builder]\nsandbx = \"none\"\n")?;
            let e = format!(
                "{:#}",
                Config::load(Some(Path::new("typo.toml"))).unwrap_err()
            );
            assert!(e.contains("sandbx"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/apptracker.toml"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn config_reads_limits_and_durations() {
        let c: DriftConfig = toml::from_str(
            "report_interval = \"30s\"\nmetrics_public = false\n[limits.default]\ndisk = \"2GiB\"\n[limits.apps.hello]\nmemory = \"256MiB\"\n",
        )
        .unwrap();
        assert_eq!(c.report_interval, Duration::from_secs(30));
        assert!(!c.metrics_public);
        let hello = deploy::AppName::parse("hello").unwrap();
        assert_eq!(c.limits.for_app(&hello).memory.unwrap().0, 256 << 20);
        assert_eq!(c.limits.for_app(&hello).disk.unwrap().0, 2 << 30);
        assert!(toml::from_str::<DriftConfig>("colour = 1").is_err());
    }
}
