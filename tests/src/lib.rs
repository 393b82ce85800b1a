//! End-to-end test helpers: a whole Slipway platform per test, wired as in
//! production with the embedded defaults (AppTracker's HTTP API, SQLite, the
//! local artifact store, the in-process packer, real grabbers talking HTTP and
//! SSE, real app processes), on loopback ports picked by the OS.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deploy::{
    AppName, Client, Cluster, CreateDeploy, Deploy, DeployId, GitRef, HostName, HostSelector,
    RegisterApp, Version,
};
use tokio::task::JoinHandle;

pub mod githttp;
pub mod procs;
pub mod services;
pub mod tls;
use tokio_util::sync::CancellationToken;

/// The port the test app declares in its `slipway.toml`; each host shifts it.
pub const APP_PORT: u16 = 8000;

/// One running platform: AppTracker plus grabbers, all in this process.
pub struct Platform {
    /// A client with an admin token.
    pub client: Client,
    /// The bus the grabbers subscribe to, when Redis.
    pub redis_url: Option<String>,
    /// The admin token `client` uses.
    pub admin_token: String,
    /// The agent token of cluster `local`.
    pub agent_token: String,
    pub base_url: String,
    pub dir: tempfile::TempDir,
    server_stop: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    pub hosts: Vec<TestHost>,
    /// The first AppTracker's config, for replicas.
    config: apptracker::Config,
    /// What the grabbers trust: AppTracker's signing key unless the test
    /// said otherwise.
    pub trusted_keys: Vec<deploy::signing::PublicKey>,
    replicas: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

/// A grabber of cluster `local` and the port its apps get.
pub struct TestHost {
    pub name: HostName,
    pub root: PathBuf,
    /// What `PORT` the test app gets on this host.
    pub port: u16,
    /// Leave the host's apps running when its grabber stops (as in
    /// production), instead of stopping them (the tests' default).
    pub keep_apps: bool,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The host's versionchecker agent, when started.
    checker: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

/// A port that was free a moment ago.
///
/// Test processes run in parallel and a port is only reserved once an app
/// binds it, so ports come from a random draw below the kernel's ephemeral
/// range (32768+), where `bind(0)` in other tests tends not to land, rather
/// than from `bind(0)` itself, whose picks repeat across processes.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let port = 20_000 + u16::from_le_bytes(b) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Installs a test subscriber once, so failures come with the platform's logs.
/// Text unless `SLIPWAY_LOG_FORMAT` (or `SLIPWAY_LOG_JSON`) says JSON.
pub fn init_tracing() {
    use deploy::binary::{LogFormat, Tracing};
    Tracing::new(LogFormat::from_env())
        .default_filter("info,sqlx=warn,tower_http=warn")
        .to_test_writer()
        .init();
}

/// What a test platform runs on; the default is the embedded setup.
#[derive(Default)]
pub struct Options {
    /// A PostgreSQL database instead of SQLite.
    pub database_url: Option<String>,
    /// Redis as the bus, for AppTracker and the grabbers.
    pub redis_url: Option<String>,
    /// An S3-compatible artifact store (a fresh bucket).
    pub s3: Option<services::S3>,
    /// How long download URLs stay valid (default: AppTracker's).
    pub artifact_url_ttl: Option<Duration>,
    /// Credentials for git remotes that ask: (user name, password).
    pub git_credentials: Option<(String, String)>,
    /// AppTracker's `host_deadline` (default: its own, 5 minutes).
    pub host_deadline: Option<Duration>,
    /// AppTracker's `host_unreachable` (default: its own, 30 seconds).
    pub host_unreachable: Option<Duration>,
    /// The keys the grabbers trust instead of AppTracker's own.
    pub trusted_keys: Option<Vec<deploy::signing::PublicKey>>,
    /// How long dashboard sessions last (default: AppTracker's).
    pub session_ttl: Option<Duration>,
    /// AppTracker's `[builder]` (default: its own, sandboxed, enabled).
    pub builder: Option<apptracker::config::BuilderConfig>,
    /// AppTracker's git connect and stall timeouts (default: its own).
    pub git_timeout: Option<Duration>,
}

impl Platform {
    /// Starts AppTracker (embedded defaults) and one grabber per name.
    pub async fn start(host_names: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(host_names, Options::default()).await
    }

    /// Starts AppTracker with `opts` and one grabber per name.
    pub async fn start_with(host_names: &[&str], opts: Options) -> anyhow::Result<Self> {
        init_tracing();
        let dir = tempfile::Builder::new().prefix("slipway-e2e-").tempdir()?;
        let git = match &opts.git_credentials {
            Some((user, password)) => {
                let path = dir.path().join("git.password");
                std::fs::write(&path, password)?;
                apptracker::config::GitConfig {
                    username: Some(user.clone()),
                    password_file: Some(path),
                    ssh_key_file: None,
                    ..apptracker::config::GitConfig::default()
                }
            }
            None => apptracker::config::GitConfig::default(),
        };
        let git = match opts.git_timeout {
            Some(t) => apptracker::config::GitConfig {
                connect_timeout: t,
                timeout: t,
                ..git
            },
            None => git,
        };
        // Tests share one Redis: each platform talks on channels of its own.
        let mut tag = [0u8; 6];
        getrandom::fill(&mut tag).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let config = apptracker::Config {
            redis_prefix: format!("test-{}", hex::encode(tag)),
            git,
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.path().join("apptracker"),
            database_url: opts.database_url,
            redis_url: opts.redis_url.clone(),
            s3: opts.s3.as_ref().map(services::S3::config),
            sweep_interval: Duration::from_millis(200),
            artifact_url_ttl: opts
                .artifact_url_ttl
                .unwrap_or(apptracker::Config::default().artifact_url_ttl),
            host_deadline: opts
                .host_deadline
                .unwrap_or(apptracker::Config::default().host_deadline),
            host_unreachable: opts
                .host_unreachable
                .unwrap_or(apptracker::Config::default().host_unreachable),
            session_ttl: opts
                .session_ttl
                .unwrap_or(apptracker::Config::default().session_ttl),
            builder: opts.builder.unwrap_or_default(),
            ..apptracker::Config::default()
        };
        let app = apptracker::Application::build(config.clone()).await?;
        let base_url = app.base_url().to_string();
        let trusted_keys = opts.trusted_keys.unwrap_or_else(|| vec![app.public_key()]);
        let admin = app
            .tracker()
            .create_token("test-admin", "admin", None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let agent_token = app
            .tracker()
            .create_token("test-agent-local", "agent", Some(&Self::cluster()))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let server_stop = CancellationToken::new();
        let server = tokio::spawn(app.run(server_stop.clone()));
        let mut platform = Self {
            config,
            trusted_keys,
            replicas: Vec::new(),
            redis_url: opts.redis_url,
            client: Client::new(base_url.clone()).with_token(admin.clone()),
            admin_token: admin,
            agent_token,
            base_url,
            dir,
            server_stop,
            server: Some(server),
            hosts: Vec::new(),
        };
        for name in host_names {
            let port = free_port()?;
            let host = TestHost {
                name: HostName::parse(*name)?,
                root: platform.dir.path().join("hosts").join(name),
                port,
                keep_apps: false,
                stop: CancellationToken::new(),
                task: None,
                checker: None,
            };
            platform.hosts.push(host);
        }
        for i in 0..platform.hosts.len() {
            platform.start_grabber(i);
        }
        platform.wait_for_hosts(host_names.len()).await?;
        Ok(platform)
    }

    pub fn cluster() -> Cluster {
        Cluster::parse("local").unwrap_or_else(|_| unreachable!())
    }

    /// Starts (or restarts) host `i`'s grabber.
    pub fn start_grabber(&mut self, i: usize) {
        let base_url = self.base_url.clone();
        let token = grabber::AgentToken::from(self.agent_token.clone());
        let host = &mut self.hosts[i];
        host.stop = CancellationToken::new();
        let cfg = grabber::Config {
            server: base_url,
            cluster: Self::cluster(),
            host: host.name.clone(),
            root: host.root.clone(),
            port_offset: i32::from(host.port) - i32::from(APP_PORT),
            heartbeat_interval: Duration::from_millis(500),
            stop_apps_on_exit: !host.keep_apps,
            token: Some(token),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.config.redis_prefix.clone(),
            shim: grabber_shim(),
            // Quick restarts, so a crash loop shows within seconds.
            restart: grabber::RestartPolicy {
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                stable_after: Duration::from_secs(30),
                failing_after: 3,
            },
            trusted_keys: self.trusted_keys.clone(),
            ..grabber::Config::default()
        };
        host.task = Some(tokio::spawn(grabber::run(cfg, host.stop.clone())));
    }

    /// Stops host `i`'s grabber (and, as configured for tests, its apps).
    pub async fn stop_grabber(&mut self, i: usize) -> anyhow::Result<()> {
        let host = &mut self.hosts[i];
        host.stop.cancel();
        if let Some(task) = host.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("grabber did not stop within 30s")???;
        }
        Ok(())
    }

    /// Starts host `i`'s versionchecker agent, reporting every `interval`
    /// (with the default 10% jitter).
    pub fn start_versionchecker(&mut self, i: usize, interval: Duration) {
        let cfg = versionchecker::AgentConfig {
            interval,
            token: Some(grabber::AgentToken::from(self.agent_token.clone())),
            ..versionchecker::AgentConfig::new(
                self.base_url.clone(),
                Self::cluster(),
                self.hosts[i].name.clone(),
                self.hosts[i].root.clone(),
            )
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(versionchecker::agent::run(cfg, stop.clone()));
        self.hosts[i].checker = Some((stop, task));
    }

    /// Stops host `i`'s versionchecker agent.
    pub async fn stop_versionchecker(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some((stop, task)) = self.hosts[i].checker.take() {
            stop.cancel();
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .context("versionchecker did not stop within 10s")???;
        }
        Ok(())
    }

    /// Starts another AppTracker sharing this one's database, bus and store
    /// (and not building: one builder is enough); returns its URL.
    pub async fn start_replica(&mut self) -> anyhow::Result<String> {
        let n = self.replicas.len() + 1;
        let config = apptracker::Config {
            listen: "127.0.0.1:0".parse()?,
            data_dir: self.dir.path().join(format!("replica-{n}")),
            // Webhook secrets sealed by one replica open on every other.
            secrets_key_file: Some(self.config.secrets_key_path()),
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

    /// Waits until `n` hosts have registered.
    pub async fn wait_for_hosts(&self, n: usize) -> anyhow::Result<()> {
        poll(Duration::from_secs(20), || async {
            Ok(self.client.hosts().await?.len() >= n)
        })
        .await
        .with_context(|| format!("{n} hosts did not register"))
    }

    /// Registers an app from a local repository.
    pub async fn register(&self, app: &str, repo: &Path) -> anyhow::Result<AppName> {
        let name = AppName::parse(app)?;
        self.client
            .register_app(&RegisterApp::new(name.clone(), repo.display().to_string()))
            .await?;
        Ok(name)
    }

    /// Creates a deploy of a git ref (built if needed) or a built version.
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
                cluster: Self::cluster(),
                hosts: hosts.map(HostSelector::parse).transpose()?,
                strategy: Default::default(),
                max_failures: Default::default(),
                rollback_on_failure: false,
                confirm: None,
                wait: false,
            })
            .await?)
    }

    /// Waits for a deploy to end and returns it.
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

    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts
            .iter()
            .find(|h| h.name.as_str() == name)
            .unwrap_or_else(|| panic!("no test host {name}"))
    }

    /// Stops everything; app processes are stopped by their grabbers.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for i in 0..self.hosts.len() {
            self.stop_versionchecker(i).await?;
            self.stop_grabber(i).await?;
        }
        for (stop, task) in self.replicas.drain(..) {
            stop.cancel();
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("a replica did not stop within 30s")???;
        }
        self.server_stop.cancel();
        if let Some(s) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), s)
                .await
                .context("apptracker did not stop within 30s")???;
        }
        Ok(())
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

/// SIGKILLs the process group of every app recorded under a host root whose
/// process still runs from that root (so a reused pid is never touched).
fn kill_apps_under(root: &Path) {
    let layout = deploy::layout::HostLayout::new(root);
    for app in layout.list_apps().unwrap_or_default() {
        let Some(pid) = layout.read_state(&app).ok().flatten().and_then(|s| s.pid) else {
            continue;
        };
        let ours =
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(root));
        if ours && pid > 1 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl TestHost {
    /// The release `current` names.
    pub fn current(&self, app: &str) -> Option<String> {
        let link = self.root.join("apps").join(app).join("current");
        let target = std::fs::read_link(link).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// GET `/` from the app on this host.
    pub async fn get(&self) -> anyhow::Result<String> {
        get_app(self.port).await
    }
}

/// GET `/` from the app listening on `port`.
pub async fn get_app(port: u16) -> anyhow::Result<String> {
    let url = format!("http://127.0.0.1:{port}/");
    let resp = http()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    Ok(resp.text().await?)
}

/// An HTTP client for a test's own requests, trusting the system's roots.
/// reqwest has no TLS provider of its own in this workspace (ring is
/// installed by `deploy::tls`), so tests use this, never
/// `reqwest::Client::new()` or `reqwest::get`.
pub fn http() -> reqwest::Client {
    deploy::tls::Trust::system()
        .http_client()
        .unwrap_or_else(|e| panic!("cannot build an HTTP client: {e}"))
}

/// Calls `check` until it says yes or `timeout` passes.
pub async fn poll<F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("condition not met within {timeout:?}")),
                None => anyhow::anyhow!("condition not met within {timeout:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serves every repository under `served` with `git daemon` (the `git://`
/// protocol) on a free loopback port; returns the process and the base URL
/// (`git://127.0.0.1:PORT`, repositories below it by directory name).
pub async fn start_git_daemon(served: &Path, logs: &Path) -> anyhow::Result<(procs::Proc, String)> {
    let port = free_port()?;
    let args: Vec<String> = [
        "daemon",
        "--export-all",
        "--reuseaddr",
        "--listen=127.0.0.1",
        &format!("--port={port}"),
        &format!("--base-path={}", served.display()),
        &served.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    std::fs::create_dir_all(logs)?;
    let daemon = procs::Proc::spawn("git-daemon", "git", &args, &[], logs)?;
    let addr = format!("127.0.0.1:{port}");
    poll(Duration::from_secs(10), || async {
        Ok(tokio::net::TcpStream::connect(&addr).await.is_ok())
    })
    .await
    .context("git daemon did not start listening")?;
    Ok((daemon, format!("git://{addr}")))
}

/// A git repository of a test app with a `main` branch.
pub struct AppRepo {
    pub path: PathBuf,
    repo: git2::Repository,
}

impl AppRepo {
    pub fn new(path: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&path)?;
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = git2::Repository::init_opts(&path, &opts)?;
        Ok(Self { path, repo })
    }

    /// Writes files and commits them on `main`; returns the commit sha.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> anyhow::Result<String> {
        for (name, content) in files {
            let p = self.path.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, content)?;
        }
        let oid = apptracker::dev::commit_all(&self.repo, message)?;
        Ok(oid.to_string())
    }
}

/// The test app: hello-python whose greeting is `message`. With `healthy`
/// false, `/health` answers 500 and the app says why on stderr.
pub fn hello_app(message: &str, healthy: bool) -> Vec<(&'static str, String)> {
    let toml = format!(
        "name = \"hello\"\ntype = \"python\"\n\n[run]\ncommand = \"python3 app.py\"\nport = {APP_PORT}\nstop_timeout = \"3s\"\n\n[health]\nhttp = \"/health\"\ntimeout = \"{}\"\ngrace = \"200ms\"\n",
        if healthy { "20s" } else { "2s" }
    );
    let app = format!(
        r#"import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTHY = {healthy}

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health" and not HEALTHY:
            print("health check broken on purpose in {message}", file=sys.stderr, flush=True)
            self.send_response(500)
            self.end_headers()
            return
        body = "{message} " + os.environ.get("SLIPWAY_VERSION", "?") + "\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *a):
        pass

print("starting {message} on", os.environ["PORT"], flush=True)
# A test can make a release slow to come up by committing `delay.txt`.
if os.path.exists("delay.txt"):
    import time
    time.sleep(float(open("delay.txt").read()))
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#,
        healthy = if healthy { "True" } else { "False" },
    );
    vec![("slipway.toml", toml), ("app.py", app)]
}

/// Commits a version of the test app.
pub fn commit_hello(repo: &AppRepo, message: &str, healthy: bool) -> anyhow::Result<String> {
    let files = hello_app(message, healthy);
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, message)
}

/// The `slipway-grabber` binary next to the test executable, run as the
/// shim of the apps the in-process grabbers start (the test executable
/// itself cannot be one). Cargo builds it for this package's tests.
pub fn grabber_shim() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("slipway-grabber"))
        .unwrap_or_else(|| PathBuf::from("slipway-grabber"))
}
