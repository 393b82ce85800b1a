//! [`Platform`]: a running AppTracker and its hosts in this process, with
//! what tests and tools do to it: stop and restart a host's grabber or
//! versionchecker, start a replica, register an app, release and wait.
//! [`crate::Builder`] makes one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deploy::{
    AppName, Client, Cluster, CreateDeploy, Deploy, DeployId, GitRef, HostName, HostSelector,
    RegisterApp, Version,
};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The port the example apps (and the tests' app) declare in their
/// `slipway.toml`; each host shifts it by its port offset.
pub const APP_PORT: u16 = 8000;

/// How long a grabber, versionchecker or AppTracker gets to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) type GrabberFn = Arc<dyn Fn(&mut grabber::Config) + Send + Sync>;
type Task = JoinHandle<anyhow::Result<()>>;

/// One running platform: AppTracker plus grabbers (and versioncheckers),
/// all in this process. [`Platform::shutdown`] stops it; dropping it stops
/// it less politely (the apps its hosts recorded are killed).
pub struct Platform {
    /// A client with the admin token.
    pub client: Client,
    pub base_url: String,
    /// The cluster of every host.
    pub cluster: Cluster,
    /// The admin token `client` uses.
    pub admin_token: String,
    /// The cluster's agent token, which the grabbers and versioncheckers use.
    pub agent_token: String,
    pub hosts: Vec<Host>,
    /// What the grabbers trust: AppTracker's signing key unless the builder
    /// said otherwise. A grabber (re)started later takes the value then.
    pub trusted_keys: Vec<deploy::signing::PublicKey>,
    pub(crate) dir: PathBuf,
    /// Holds a temporary `dir` until the platform is dropped.
    pub(crate) _temp: Option<tempfile::TempDir>,
    /// AppTracker's control plane, for fault tests (`tracker.bus().lose`).
    pub tracker: apptracker::Tracker,
    /// AppTracker's configuration, for replicas.
    pub(crate) config: apptracker::Config,
    /// What the in-process clients trust (AppTracker's `tls` settings).
    pub(crate) trust: deploy::tls::Trust,
    /// The builder's grabber settings, applied at every (re)start.
    pub(crate) grabber: Vec<GrabberFn>,
    pub(crate) server_stop: CancellationToken,
    pub(crate) server: Option<Task>,
    pub(crate) replicas: Vec<(CancellationToken, Task)>,
}

/// A host of the platform: a grabber with its own root directory.
pub struct Host {
    pub name: HostName,
    /// The host layout's root (`apps/`, `cache/`, `tmp/`).
    pub root: PathBuf,
    /// What the host adds to every app's declared port.
    pub port_offset: i32,
    /// The port an app declaring [`APP_PORT`] gets on this host.
    pub port: u16,
    /// Leave the host's apps running when its grabber stops (as in
    /// production), instead of stopping them (the platform's default).
    pub keep_apps: bool,
    stop: CancellationToken,
    task: Option<Task>,
    /// The host's versionchecker, when started.
    checker: Option<(CancellationToken, Task)>,
}

impl Host {
    pub(crate) fn new(name: HostName, root: PathBuf, port_offset: i32, port: u16) -> Self {
        Self {
            name,
            root,
            port_offset,
            port,
            keep_apps: false,
            stop: CancellationToken::new(),
            task: None,
            checker: None,
        }
    }

    /// The release `current` names for `app` on this host.
    pub fn current(&self, app: &str) -> Option<String> {
        let link = self.root.join("apps").join(app).join("current");
        let target = std::fs::read_link(link).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }
}

impl Platform {
    /// The platform's directory: `hosts/<name>` below it, and AppTracker's
    /// data (`apptracker/`) unless its configuration said otherwise.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// AppTracker's configuration, as the builder left it.
    pub fn config(&self) -> &apptracker::Config {
        &self.config
    }

    /// The host named `name`; panics if there is none (a test's mistake).
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name.as_str() == name)
            .unwrap_or_else(|| panic!("no host {name} in this platform"))
    }

    /// A machine joining the cluster: a new host (its own root, app ports
    /// shifted by `port_offset`) whose grabber starts now. Returns its index.
    pub fn add_host(&mut self, name: &str, port_offset: i32) -> anyhow::Result<usize> {
        let name = HostName::parse(name)?;
        let port = u16::try_from(i32::from(APP_PORT) + port_offset).with_context(|| {
            format!("host {name}: offset {port_offset} puts port {APP_PORT} out of range")
        })?;
        let root = self.dir.join("hosts").join(name.as_str());
        self.hosts.push(Host::new(name, root, port_offset, port));
        let i = self.hosts.len() - 1;
        self.start_grabber(i);
        Ok(i)
    }

    /// Starts (or restarts) host `i`'s grabber.
    pub fn start_grabber(&mut self, i: usize) {
        let host = &self.hosts[i];
        let mut cfg = grabber::Config {
            server: self.base_url.clone(),
            cluster: self.cluster.clone(),
            host: host.name.clone(),
            root: host.root.clone(),
            port_offset: host.port_offset,
            stop_apps_on_exit: !host.keep_apps,
            token: Some(SecretString::from(self.agent_token.clone())),
            // The bus AppTracker publishes on: Redis when it has one, its
            // relayed event stream otherwise.
            redis_url: self.config.redis_url.clone(),
            redis_prefix: self.config.redis_prefix.clone(),
            trust: self.trust.clone(),
            trusted_keys: self.trusted_keys.clone(),
            ..grabber::Config::default()
        };
        for f in &self.grabber {
            f(&mut cfg);
        }
        let stop = CancellationToken::new();
        let name = host.name.clone();
        let task = tokio::spawn(logged("grabber", name, grabber::run(cfg, stop.clone())));
        let host = &mut self.hosts[i];
        host.stop = stop;
        host.task = Some(task);
    }

    /// Stops host `i`'s grabber (and, unless the host keeps them, its apps).
    pub async fn stop_grabber(&mut self, i: usize) -> anyhow::Result<()> {
        let host = &mut self.hosts[i];
        host.stop.cancel();
        if let Some(task) = host.task.take() {
            stopped(task, "a grabber").await?;
        }
        Ok(())
    }

    /// Starts host `i`'s versionchecker, reporting every `interval` (with
    /// the default 10% jitter).
    pub fn start_versionchecker(&mut self, i: usize, interval: Duration) {
        self.start_versionchecker_with(i, Some(interval));
    }

    /// Starts host `i`'s versionchecker at `interval` or its default.
    pub(crate) fn start_versionchecker_with(&mut self, i: usize, interval: Option<Duration>) {
        let host = &self.hosts[i];
        let mut cfg = versionchecker::AgentConfig {
            token: Some(SecretString::from(self.agent_token.clone())),
            trust: self.trust.clone(),
            ..versionchecker::AgentConfig::new(
                self.base_url.clone(),
                self.cluster.clone(),
                host.name.clone(),
                host.root.clone(),
            )
        };
        if let Some(interval) = interval {
            cfg.interval = interval;
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(logged(
            "versionchecker",
            host.name.clone(),
            versionchecker::agent::run(cfg, stop.clone()),
        ));
        self.hosts[i].checker = Some((stop, task));
    }

    /// Stops host `i`'s versionchecker.
    pub async fn stop_versionchecker(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some((stop, task)) = self.hosts[i].checker.take() {
            stop.cancel();
            stopped(task, "a versionchecker").await?;
        }
        Ok(())
    }

    /// Starts another AppTracker sharing this one's database, bus and store
    /// (and not building: one builder is enough); returns its URL.
    pub async fn start_replica(&mut self) -> anyhow::Result<String> {
        let n = self.replicas.len() + 1;
        let config = apptracker::Config {
            listen: "127.0.0.1:0".parse()?,
            data_dir: self.dir.join(format!("replica-{n}")),
            // Webhook secrets sealed by one replica open on every other.
            secrets_key_file: Some(self.config.secrets_key_path()),
            // Peer tickets minted by one replica verify with the key any
            // other named in its heartbeat answers.
            peers: apptracker::config::PeersConfig {
                ticket_key_file: Some(self.config.peer_ticket_key_path()),
            },
            builder: apptracker::config::BuilderConfig::disabled(),
            ..self.config.clone()
        };
        let app = apptracker::Application::build(config).await?;
        let url = app.base_url().to_string();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run(stop.clone()));
        self.replicas.push((stop, task));
        Ok(url)
    }

    /// Waits until `n` hosts have registered (20 seconds at most).
    pub async fn wait_for_hosts(&self, n: usize) -> anyhow::Result<()> {
        self.wait_for_hosts_within(n, Duration::from_secs(20)).await
    }

    /// Waits until `n` hosts have registered.
    pub async fn wait_for_hosts_within(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.client.hosts().await {
                Ok(hosts) if hosts.len() >= n => return Ok(()),
                Ok(hosts) => format!("{} registered", hosts.len()),
                Err(e) => format!("cannot list hosts: {e}"),
            };
            if Instant::now() > deadline {
                bail!("{n} hosts did not register within {timeout:?} ({last})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers an app from a repository (a path or a URL).
    pub async fn register(&self, app: &str, repo: &Path) -> anyhow::Result<AppName> {
        let name = AppName::parse(app)?;
        self.client
            .register_app(&RegisterApp::new(name.clone(), repo.display().to_string()))
            .await?;
        Ok(name)
    }

    /// Creates a deploy of a git ref (built if needed) or a built version
    /// on the hosts `hosts` selects (all by default).
    pub async fn release(
        &self,
        app: &AppName,
        version_or_ref: &str,
        hosts: Option<&str>,
    ) -> anyhow::Result<Deploy> {
        let (version, git_ref) = if Version::looks_built(version_or_ref) {
            (Some(Version::parse(version_or_ref)?), None)
        } else {
            (None, Some(GitRef::parse(version_or_ref)?))
        };
        Ok(self
            .client
            .create_deploy(&CreateDeploy {
                app: app.clone(),
                version,
                git_ref,
                cluster: self.cluster.clone(),
                hosts: hosts.map(HostSelector::parse).transpose()?,
                strategy: Default::default(),
                max_failures: Default::default(),
                rollback_on_failure: false,
                confirm: None,
                wait: false,
            })
            .await?)
    }

    /// Waits for a deploy to end (90 seconds at most) and returns it.
    pub async fn wait_deploy(&self, id: DeployId) -> anyhow::Result<Deploy> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let d = self.client.deploy(id).await?;
            if d.status.is_terminal() {
                return Ok(d);
            }
            if Instant::now() > deadline {
                bail!("deploy {id} did not finish within 90s: {d:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Releases and waits for the end.
    pub async fn release_and_wait(
        &self,
        app: &AppName,
        version_or_ref: &str,
        hosts: Option<&str>,
    ) -> anyhow::Result<Deploy> {
        let d = self.release(app, version_or_ref, hosts).await?;
        self.wait_deploy(d.id).await
    }

    /// Stops everything: the hosts' versioncheckers and grabbers (which
    /// stop their apps, unless a host keeps them), the replicas, then
    /// AppTracker. Returns the first failure, after stopping the rest.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let mut stops = Vec::new();
        for h in &mut self.hosts {
            let checker = h.checker.take();
            h.stop.cancel();
            let grabber = h.task.take();
            stops.push(async move {
                if let Some((stop, task)) = checker {
                    stop.cancel();
                    stopped(task, "a versionchecker").await?;
                }
                if let Some(task) = grabber {
                    stopped(task, "a grabber").await?;
                }
                anyhow::Ok(())
            });
        }
        let mut results = futures::future::join_all(stops).await;
        for (stop, task) in std::mem::take(&mut self.replicas) {
            stop.cancel();
            results.push(stopped(task, "a replica").await);
        }
        self.server_stop.cancel();
        if let Some(s) = self.server.take() {
            results.push(stopped(s, "apptracker").await);
        }
        results.into_iter().collect()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // A failed test returns before its grabbers can stop their apps (the
        // runtime ends with the test): stop the apps they recorded, checking
        // each pid still runs from this host's releases.
        for h in &self.hosts {
            h.stop.cancel();
            if let Some((stop, _)) = &h.checker {
                stop.cancel();
            }
            kill_apps_under(&h.root);
        }
        for (stop, _) in &self.replicas {
            stop.cancel();
        }
        self.server_stop.cancel();
    }
}

/// Runs an agent, logging why it stopped when it failed (at once: a
/// platform may run for hours before anyone awaits the task).
async fn logged(
    what: &'static str,
    host: HostName,
    run: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let result = run.await;
    if let Err(e) = &result {
        tracing::error!(host = %host, error = ?e, "{what} stopped");
    }
    result
}

/// Awaits a stopping task within [`STOP_TIMEOUT`].
async fn stopped(task: Task, what: &str) -> anyhow::Result<()> {
    tokio::time::timeout(STOP_TIMEOUT, task)
        .await
        .with_context(|| format!("{what} did not stop within {STOP_TIMEOUT:?}"))?
        .with_context(|| format!("{what} panicked"))?
}

/// SIGKILLs the process group of every app recorded under a host root whose
/// process still runs from that root (so a reused pid is never touched).
pub(crate) fn kill_apps_under(root: &Path) {
    let layout = deploy::layout::HostLayout::new(root);
    for app in layout.list_apps().unwrap_or_default() {
        let Some(pid) = layout.read_state(&app).ok().flatten().and_then(|s| s.pid) else {
            continue;
        };
        let ours =
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(root));
        if ours && pid > 1 {
            let Ok(pid) = i32::try_from(pid) else {
                continue;
            };
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
