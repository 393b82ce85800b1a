//! [`Builder`]: what a platform runs on (a directory, AppTracker's
//! `Config`, the hosts, their ports and grabber settings) and `start`,
//! which mints the platform's tokens, starts AppTracker and then one
//! grabber per host.
//!
//! Callers change settings with closures over `apptracker::Config` and
//! `grabber::Config` (applied in the order given, after the platform's own
//! wiring), so no knob is restated here and every default stays the
//! component's own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deploy::{Client, Cluster, HostName};
use tokio_util::sync::CancellationToken;

use crate::platform::{APP_PORT, GrabberFn, Host, Platform};

type ConfigFn = Box<dyn FnOnce(&mut apptracker::Config) + Send>;
type PortFn = Box<dyn FnMut(usize) -> anyhow::Result<i32> + Send>;

/// Where the platform keeps its files.
enum Root {
    /// A directory that outlives the platform (`slipway dev`'s `.slipway`).
    Dir(PathBuf),
    /// A fresh directory, removed when the platform is dropped.
    Temp {
        prefix: String,
        parent: Option<PathBuf>,
    },
}

/// How to start a [`Platform`]; see [`Platform::builder`].
pub struct Builder {
    root: Root,
    config: Option<apptracker::Config>,
    configure: Vec<ConfigFn>,
    grabber: Vec<GrabberFn>,
    cluster: String,
    hosts: Vec<String>,
    port_offsets: PortFn,
    token_prefix: String,
    trusted_keys: Option<Vec<deploy::signing::PublicKey>>,
    versioncheckers: bool,
    host_wait: Option<Duration>,
}

impl Platform {
    /// A platform with no hosts in a fresh temporary directory, AppTracker
    /// on a loopback port the OS picks, cluster `local`.
    pub fn builder() -> Builder {
        Builder {
            root: Root::Temp {
                prefix: "slipway-".into(),
                parent: None,
            },
            config: None,
            configure: Vec::new(),
            grabber: Vec::new(),
            cluster: "local".into(),
            hosts: Vec::new(),
            port_offsets: Box::new(|i| {
                let n = i32::try_from(i + 1).context("too many hosts")?;
                n.checked_mul(100).context("too many hosts")
            }),
            token_prefix: "platform".into(),
            trusted_keys: None,
            versioncheckers: false,
            host_wait: Some(Duration::from_secs(20)),
        }
    }
}

impl Builder {
    /// Keeps the platform's files in `dir` (created if missing), which
    /// outlives it: host roots go to `dir/hosts/<name>`.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root = Root::Dir(dir.into());
        self
    }

    /// A fresh directory named `prefix...` (removed when the platform is
    /// dropped), under `parent` or the system's temporary directory.
    pub fn temp_dir(mut self, prefix: &str, parent: Option<&Path>) -> Self {
        self.root = Root::Temp {
            prefix: prefix.into(),
            parent: parent.map(Path::to_path_buf),
        };
        self
    }

    /// AppTracker's configuration before the [`configure`](Self::configure)
    /// closures, used as given. Without it: `apptracker::Config::default()`
    /// listening on `127.0.0.1:0`, with its data under `<dir>/apptracker`
    /// and a Redis prefix of its own (platforms may share a Redis).
    pub fn config(mut self, config: apptracker::Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Changes AppTracker's configuration; closures run in the order given.
    pub fn configure(mut self, f: impl FnOnce(&mut apptracker::Config) + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Changes every grabber's configuration, after the platform's wiring
    /// (server, cluster, host, root, port offset, token, bus, trust) and at
    /// every (re)start; closures run in the order given.
    pub fn configure_grabbers(
        mut self,
        f: impl Fn(&mut grabber::Config) + Send + Sync + 'static,
    ) -> Self {
        self.grabber.push(Arc::new(f));
        self
    }

    /// The cluster every host belongs to (default `local`).
    pub fn cluster(mut self, name: &str) -> Self {
        self.cluster = name.into();
        self
    }

    /// One host (a grabber with its own root) per name.
    pub fn hosts<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.hosts = names.into_iter().map(|n| n.as_ref().to_string()).collect();
        self
    }

    /// What host `i` (from 0) adds to every app's declared port, so the
    /// hosts can share one machine (default: 100 per host, from 100).
    pub fn port_offsets(
        mut self,
        f: impl FnMut(usize) -> anyhow::Result<i32> + Send + 'static,
    ) -> Self {
        self.port_offsets = Box::new(f);
        self
    }

    /// The platform's tokens are `<prefix>-admin` and
    /// `<prefix>-agent-<cluster>` (default prefix `platform`); tokens of
    /// those names are replaced.
    pub fn token_prefix(mut self, prefix: &str) -> Self {
        self.token_prefix = prefix.into();
        self
    }

    /// The keys the grabbers trust instead of AppTracker's own.
    pub fn trusted_keys(mut self, keys: Vec<deploy::signing::PublicKey>) -> Self {
        self.trusted_keys = Some(keys);
        self
    }

    /// Also runs each host's versionchecker at its default interval.
    pub fn versioncheckers(mut self, on: bool) -> Self {
        self.versioncheckers = on;
        self
    }

    /// How long `start` waits for every host to register; `None` returns
    /// as soon as the grabbers are started (default 20 seconds).
    pub fn wait_for_hosts(mut self, timeout: Option<Duration>) -> Self {
        self.host_wait = timeout;
        self
    }

    /// Starts AppTracker, then the hosts.
    pub async fn start(self) -> anyhow::Result<Platform> {
        let Builder {
            root,
            config,
            configure,
            grabber,
            cluster,
            hosts,
            mut port_offsets,
            token_prefix,
            trusted_keys,
            versioncheckers,
            host_wait,
        } = self;
        let (dir, temp) = match root {
            Root::Dir(dir) => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                (dir, None)
            }
            Root::Temp { prefix, parent } => {
                let mut b = tempfile::Builder::new();
                b.prefix(&prefix);
                let temp = match &parent {
                    Some(p) => b.tempdir_in(p),
                    None => b.tempdir(),
                }
                .context("cannot make the platform's directory")?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut config = match config {
            Some(c) => c,
            None => {
                let mut tag = [0u8; 6];
                getrandom::fill(&mut tag).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                apptracker::Config {
                    listen: "127.0.0.1:0".parse()?,
                    data_dir: dir.join("apptracker"),
                    redis_prefix: format!("{token_prefix}-{}", hex::encode(tag)),
                    ..apptracker::Config::default()
                }
            }
        };
        for f in configure {
            f(&mut config);
        }
        let cluster = Cluster::parse(&cluster)?;
        let names: Vec<HostName> = hosts
            .iter()
            .map(HostName::parse)
            .collect::<Result<_, _>>()?;

        // Fresh tokens at every start: only their hashes are stored, so the
        // plaintexts of an earlier run (dev's persistent database) are gone.
        let admin_token = apptracker::bootstrap_token(
            &config,
            &format!("{token_prefix}-admin"),
            "admin",
            None,
            true,
        )
        .await?;
        let agent_token = apptracker::bootstrap_token(
            &config,
            &format!("{token_prefix}-agent-{cluster}"),
            "agent",
            Some(&cluster),
            true,
        )
        .await?;
        // The in-process clients trust what AppTracker's own clients do (its
        // certificate may come from `tls.ca_file`'s CA).
        let trust = config.tls.trust()?;
        let app = apptracker::Application::build(config.clone()).await?;
        let base_url = app.base_url().to_string();
        // The grabbers trust what this AppTracker's builder signs, unless
        // told otherwise.
        let trusted_keys = trusted_keys.unwrap_or_else(|| vec![app.public_key()]);
        let tracker = app.tracker().clone();
        let server_stop = CancellationToken::new();
        let server = tokio::spawn(app.run(server_stop.clone()));
        let client = Client::with_trust(base_url.clone(), &trust)?.with_token(admin_token.clone());

        let mut platform = Platform {
            client,
            base_url,
            cluster,
            admin_token,
            agent_token,
            hosts: Vec::with_capacity(names.len()),
            trusted_keys,
            dir,
            _temp: temp,
            config,
            trust,
            grabber,
            tracker,
            server_stop,
            server: Some(server),
            replicas: Vec::new(),
        };
        for (i, name) in names.into_iter().enumerate() {
            let port_offset = port_offsets(i)?;
            let port = u16::try_from(i32::from(APP_PORT) + port_offset).with_context(|| {
                format!("host {name}: offset {port_offset} puts port {APP_PORT} out of range")
            })?;
            let root = platform.dir.join("hosts").join(name.as_str());
            platform
                .hosts
                .push(Host::new(name, root, port_offset, port));
        }
        for i in 0..platform.hosts.len() {
            platform.start_grabber(i);
            if versioncheckers {
                platform.start_versionchecker_with(i, None);
            }
        }
        if let Some(timeout) = host_wait {
            platform
                .wait_for_hosts_within(platform.hosts.len(), timeout)
                .await?;
        }
        Ok(platform)
    }
}
