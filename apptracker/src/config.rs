//! AppTracker's configuration. `Config::default()` is the embedded setup:
//! SQLite and artifacts under `./.slipway/`, an in-process bus and packer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

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
    /// How often the deadline sweeper looks.
    #[serde(with = "humantime_serde_compat")]
    pub sweep_interval: Duration,
    /// Run queued builds in this process.
    pub builder: bool,
    /// How long a worker's claim on a build lasts unless renewed.
    #[serde(with = "humantime_serde_compat")]
    pub build_lease: Duration,
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
    /// File holding the shared secret VCS webhooks are signed with (GitHub,
    /// Gitea/Forgejo: HMAC-SHA256 of the body; GitLab: the token itself).
    /// Webhooks are refused when unset.
    pub webhook_secret_file: Option<PathBuf>,
    /// File holding the key that signs local-store download URLs; replicas
    /// serving one directory must share it. Random per process when unset.
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
    /// Version reports and drift: the interval assumed for silent hosts,
    /// resource limits, whether `/metrics` needs a token.
    pub drift: crate::drift::DriftConfig,
}

/// Credentials for git remotes; the secrets come from files, never from the
/// config itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitConfig {
    /// HTTP(S) user name (`git` when only a password is set).
    pub username: Option<String>,
    /// File holding the HTTP(S) password or access token.
    pub password_file: Option<PathBuf>,
    /// SSH private key for `ssh://` remotes; the ssh-agent when unset.
    pub ssh_key_file: Option<PathBuf>,
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
            sweep_interval: Duration::from_secs(2),
            builder: true,
            build_lease: Duration::from_secs(60),
            redis_url: None,
            redis_prefix: deploy::bus::DEFAULT_PREFIX.to_string(),
            s3: None,
            artifact_url_ttl: Duration::from_secs(15 * 60),
            url_signing_key_file: None,
            signing_key_file: None,
            webhook_secret_file: None,
            build_cache_dir: None,
            git: GitConfig::default(),
            drift: crate::drift::DriftConfig::default(),
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

    /// What packer needs here: the build cache and git credentials (the
    /// password read from its file now, so a bad path fails at start-up).
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

    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }
}

/// Durations as humantime strings ("30s", "5m") in config files.
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
            jail.set_env("APPTRACKER_TLS__CERT_FILE", "/etc/slipway/cert.pem");
            let c = Config::load(Some(Path::new("apptracker.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9999);
            assert_eq!(c.host_deadline, Duration::from_secs(90));
            assert_eq!(c.s3.map(|s| s.bucket).as_deref(), Some("from-env"));
            assert!(!c.builder);
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
    fn a_missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/apptracker.toml"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
