//! A fleet for the convergence benchmark: AppTracker and N hosts, each a
//! real grabber with its own root directory and app port, either as tasks
//! of this process or as separate `grabber` processes; apps built through
//! the real pipeline (git repository, in-process packer, signed artifact);
//! and the timeline of a deploy read back from the host event history.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deploy::{
    AppName, Build, BuildStatus, Client, Cluster, CreateDeploy, Deploy, DeployEvent, GitRef,
    HostEventRecord, HostName, HostPhase, RegisterApp, RequestBuild, Timestamp, Version,
};
use futures::StreamExt;
use serde::Serialize;
use slipway_platform::Platform;
use slipway_tests::procs::Proc;
use slipway_tests::services;

use crate::stats::Summary;

/// The port every benchmark app declares; each host shifts it.
pub use slipway_platform::APP_PORT;

/// What the control plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// SQLite, the in-process bus (grabbers follow AppTracker's SSE relay)
    /// and the local artifact directory.
    Embedded,
    /// PostgreSQL, Redis (grabbers subscribe to it) and an S3-compatible
    /// store (grabbers download through presigned URLs).
    Production,
}

/// Where the grabbers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrabberMode {
    /// Tasks of this process, beside AppTracker (one runtime, two cores).
    InProcess,
    /// One `grabber` process per host.
    Processes,
}

/// How to start a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub hosts: usize,
    pub backend: Backend,
    pub grabbers: GrabberMode,
    /// The release `grabber` binary: each app's shim, and the host
    /// processes in `GrabberMode::Processes`.
    pub grabber_bin: PathBuf,
    /// Where the fleet's scratch directory goes.
    pub work_dir: PathBuf,
    /// Grabbers' heartbeat (production default: 10 s).
    pub heartbeat: Duration,
    /// The first port hosts' apps may take (`APP_PORT` shifted).
    pub port_base: u16,
    /// AppTracker's `host_deadline` and `host_unreachable`, and the
    /// grabbers' `reconcile_interval`, when not their production defaults
    /// (the soak bounds every deploy, so a host that misses one must time
    /// out within that bound).
    pub timings: Timings,
}

/// Timings a fleet may shorten; `None` keeps the production default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub host_deadline: Option<Duration>,
    pub host_unreachable: Option<Duration>,
    pub reconcile_interval: Option<Duration>,
}

/// A running fleet: AppTracker and in-process grabbers (one
/// [`Platform`]), or AppTracker alone plus `grabber` processes.
/// `shutdown` stops it; dropping it stops it less politely.
pub struct Fleet {
    pub client: Client,
    pub base_url: String,
    pub cluster: Cluster,
    pub hosts: Vec<HostName>,
    /// The port each host's app answers on (`APP_PORT` shifted).
    pub ports: Vec<u16>,
    platform: Platform,
    /// The hosts in `GrabberMode::Processes`.
    processes: Vec<Proc>,
    /// Kept so the database lives as long as the fleet (dropped after).
    _postgres: Option<services::PgDatabase>,
}

/// Ports in `base..` that nothing listens on now, `n` of them.
pub fn free_ports(base: u16, n: usize) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::with_capacity(n);
    let mut p = base;
    while out.len() < n {
        if p == u16::MAX {
            bail!("not enough free ports from {base}");
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            out.push(p);
        }
        p += 1;
    }
    Ok(out)
}

impl Fleet {
    pub async fn start(opts: &FleetOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.work_dir)?;
        let (postgres, redis_url, s3) = match opts.backend {
            Backend::Embedded => (None, None, None),
            Backend::Production => {
                let pg = services::postgres()
                    .await
                    .context("PostgreSQL is not reachable (SLIPWAY_TEST_POSTGRES)")?;
                let redis = services::redis()
                    .await
                    .context("Redis is not reachable (SLIPWAY_TEST_REDIS)")?;
                let s3 = services::s3()
                    .await
                    .context("no S3-compatible server (SLIPWAY_TEST_S3)")?;
                (Some(pg), Some(redis), Some(s3))
            }
        };
        let ports = free_ports(opts.port_base, opts.hosts)?;
        let width = opts.hosts.to_string().len().max(3);
        let hosts: Vec<HostName> = (1..=opts.hosts)
            .map(|i| HostName::parse(format!("host-{i:0width$}")))
            .collect::<Result<_, _>>()?;
        let in_process = opts.grabbers == GrabberMode::InProcess;
        let offsets: Vec<i32> = ports
            .iter()
            .map(|p| i32::from(*p) - i32::from(APP_PORT))
            .collect();
        let database_url = postgres.as_ref().map(|p| p.url.clone());
        let (heartbeat, shim) = (opts.heartbeat, opts.grabber_bin.clone());
        let timings = opts.timings;
        let platform = Platform::builder()
            .temp_dir("slipway-bench-", Some(&opts.work_dir))
            .cluster("bench")
            .token_prefix("bench")
            .configure(move |c| {
                c.database_url = database_url;
                c.redis_url = redis_url;
                c.s3 = s3.as_ref().map(services::S3::config);
                if let Some(d) = timings.host_deadline {
                    c.host_deadline = d;
                }
                if let Some(d) = timings.host_unreachable {
                    c.host_unreachable = d;
                }
            })
            .hosts(if in_process { &hosts[..] } else { &[] })
            .port_offsets(move |i| offsets.get(i).copied().context("no port for this host"))
            .configure_grabbers(move |g| {
                g.heartbeat_interval = heartbeat;
                g.shim = shim.clone();
                // Hosts serve their files to each other, as in production.
                g.peer_listen = "127.0.0.1:0".parse().ok();
                if let Some(d) = timings.reconcile_interval {
                    g.reconcile_interval = d;
                }
            })
            // Every host at once is slower than a test's few (below).
            .wait_for_hosts(None)
            .start()
            .await?;

        let mut processes = Vec::new();
        if !in_process {
            let logs = platform.dir().join("logs");
            std::fs::create_dir_all(&logs)?;
            let config = platform.config();
            let key = platform.trusted_keys.first().context("no signing key")?;
            for (host, port) in hosts.iter().zip(&ports) {
                let root = platform.dir().join("hosts").join(host.as_str());
                let offset = i32::from(*port) - i32::from(APP_PORT);
                let mut args: Vec<String> = vec![
                    "--server".into(),
                    platform.base_url.clone(),
                    "--cluster".into(),
                    platform.cluster.to_string(),
                    "--host".into(),
                    host.to_string(),
                    "--root".into(),
                    root.display().to_string(),
                    "--port-offset".into(),
                    offset.to_string(),
                    "--heartbeat".into(),
                    format!("{}ms", opts.heartbeat.as_millis()),
                    "--stop-apps-on-exit".into(),
                    "--trusted-key".into(),
                    key.to_string(),
                    "--redis-prefix".into(),
                    config.redis_prefix.clone(),
                ];
                if let Some(r) = &config.redis_url {
                    args.push("--redis".into());
                    args.push(r.clone());
                }
                let exe = opts.grabber_bin.display().to_string();
                processes.push(Proc::spawn(
                    host.as_str(),
                    &exe,
                    &args,
                    &[
                        ("SLIPWAY_TOKEN", platform.agent_token.clone()),
                        ("RUST_LOG", "warn".into()),
                    ],
                    &logs,
                )?);
            }
        }
        let fleet = Self {
            client: platform.client.clone(),
            base_url: platform.base_url.clone(),
            cluster: platform.cluster.clone(),
            hosts,
            ports,
            platform,
            processes,
            _postgres: postgres,
        };
        fleet.wait_for_hosts(Duration::from_secs(180)).await?;
        Ok(fleet)
    }

    /// The fleet's scratch directory (removed when it is dropped).
    pub fn dir(&self) -> &Path {
        self.platform.dir()
    }

    /// The platform under the fleet: its hosts' roots, AppTracker's
    /// configuration.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The platform, to stop and restart in-process grabbers (none in
    /// `GrabberMode::Processes`) or start versioncheckers.
    pub fn platform_mut(&mut self) -> &mut Platform {
        &mut self.platform
    }

    /// Waits until every host has heartbeated once.
    async fn wait_for_hosts(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.client.hosts().await.map(|h| h.len()).unwrap_or(0);
            if n >= self.hosts.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "only {n} of {} hosts registered within {timeout:?}",
                    self.hosts.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Registers `app` from the repository at `repo`.
    pub async fn register(&self, app: &AppName, repo: &Path) -> anyhow::Result<()> {
        self.client
            .register_app(&RegisterApp::new(app.clone(), repo.display().to_string()))
            .await?;
        Ok(())
    }

    /// Builds the tip of `main` and waits for the build.
    pub async fn build(&self, app: &AppName) -> anyhow::Result<Build> {
        build(&self.client, app).await
    }

    /// Deploys `version` of `app` to every host and waits for the end;
    /// the clock starts just before the request leaves.
    pub async fn deploy(&self, app: &AppName, version: &Version) -> anyhow::Result<Deployed> {
        let cpu0 = deploy::procfs::cpu_time(std::process::id());
        let t0 = Timestamp::now();
        let started = Instant::now();
        let d = self
            .client
            .create_deploy(&CreateDeploy {
                app: app.clone(),
                version: Some(version.clone()),
                git_ref: None,
                cluster: self.cluster.clone(),
                hosts: None,
                strategy: Default::default(),
                max_failures: Default::default(),
                rollback_on_failure: false,
                confirm: None,
                wait: false,
            })
            .await?;
        let request = started.elapsed();
        // The stream ends after the terminal status; a broken stream falls
        // back to polling.
        let mut ended = false;
        if let Ok(stream) = self.client.deploy_stream(d.id).await {
            let mut stream = std::pin::pin!(stream);
            let wait = async {
                while let Some(ev) = stream.next().await {
                    if let Ok(DeployEvent::Status { status, .. }) = ev
                        && status.is_terminal()
                    {
                        return true;
                    }
                }
                false
            };
            ended = tokio::time::timeout(Duration::from_secs(900), wait)
                .await
                .unwrap_or(false);
        }
        let deadline = Instant::now() + Duration::from_secs(900);
        let deploy = loop {
            let now = self.client.deploy(d.id).await?;
            if now.status.is_terminal() {
                break now;
            }
            if ended || Instant::now() > deadline {
                bail!("deploy {} did not end: {:?}", d.id, now.status);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let wall = started.elapsed();
        let cpu = match (cpu0, deploy::procfs::cpu_time(std::process::id())) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let events = self.client.deploy_events(d.id).await?;
        Ok(Deployed {
            t0,
            request,
            wall,
            cpu,
            deploy,
            events,
        })
    }

    /// Stops the grabbers (and their apps), then AppTracker.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let stops = self.processes.iter_mut().map(|p| async move {
            let _ = p.stop().await;
        });
        futures::future::join_all(stops).await;
        // A benchmark's figures are already taken: a slow stop is no failure.
        let _ = self.platform.shutdown().await;
        Ok(())
    }
}

/// Builds the tip of `app`'s `main` and waits for the build (10 minutes
/// at most).
pub async fn build(client: &Client, app: &AppName) -> anyhow::Result<Build> {
    let b = client
        .request_build(
            app,
            &RequestBuild {
                git_ref: Some(GitRef::parse("main")?),
            },
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let b = client.build(b.id).await?;
        if b.status == BuildStatus::Succeeded {
            return Ok(b);
        }
        if b.status.is_terminal() {
            bail!("build {} failed: {:?}\n{}", b.id, b.error, b.log);
        }
        if Instant::now() > deadline {
            bail!("build {} did not finish within 10 minutes", b.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One deploy as measured: the request's clock and the host event history.
#[derive(Debug)]
pub struct Deployed {
    /// Wall clock (ms) just before the request was sent.
    pub t0: Timestamp,
    /// How long `POST /api/v1/deploys` took.
    pub request: Duration,
    /// Until this client saw the deploy end.
    pub wall: Duration,
    /// CPU this whole process used meanwhile (AppTracker and in-process
    /// grabbers; not separate grabber processes or their apps).
    pub cpu: Option<Duration>,
    pub deploy: Deploy,
    pub events: Vec<HostEventRecord>,
}

/// The steps of an install, as the phases a grabber reports bound them.
pub const STEPS: [(&str, HostPhase, HostPhase); 6] = [
    ("download", HostPhase::Downloading, HostPhase::Verifying),
    ("verify", HostPhase::Verifying, HostPhase::Extracting),
    ("extract", HostPhase::Extracting, HostPhase::Switching),
    ("switch", HostPhase::Switching, HostPhase::Starting),
    ("start", HostPhase::Starting, HostPhase::Checking),
    ("check", HostPhase::Checking, HostPhase::Done),
];

/// Where a deploy's time went, per host, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub hosts: usize,
    pub done: usize,
    pub failed: usize,
    /// From the request to the last host done (its event recorded).
    pub converge_s: f64,
    /// From the request to the deploy's end as its client saw it.
    pub wall_s: f64,
    /// How long the deploy request itself took (server side: checks,
    /// inserts, publish).
    pub request_s: f64,
    /// Per host: request to `done`.
    pub total: Option<Summary>,
    /// Per host: request to the host's first report (publish, bus, the
    /// grabber waking up): the control plane's part.
    pub control: Option<Summary>,
    /// Per host: download, verify, extract and switch (app start excluded).
    pub install: Option<Summary>,
    /// Per host and step (see `STEPS`).
    pub steps: Vec<(String, Summary)>,
    /// Median control time over median total time.
    pub control_share: f64,
    /// CPU seconds this process used during the deploy.
    pub cpu_s: Option<f64>,
    /// Per host: bytes downloaded (the artifact, or the index and the
    /// missing files), as its row reports them.
    pub downloaded: Option<Summary>,
    /// Per host: of those, bytes served by peers.
    pub from_peers: Option<Summary>,
    /// Per host: bytes of files it already had and linked.
    pub reused: Option<Summary>,
}

impl Deployed {
    pub fn timeline(&self) -> Timeline {
        let mut by_host: HashMap<&HostName, HashMap<HostPhase, i64>> = HashMap::new();
        for e in &self.events {
            by_host
                .entry(&e.host)
                .or_default()
                .entry(e.phase)
                .or_insert(e.at.0);
        }
        let t0 = self.t0.0;
        let secs = |ms: i64| ms as f64 / 1000.0;
        let mut total = Vec::new();
        let mut control = Vec::new();
        let mut install = Vec::new();
        let mut steps: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
        let mut last_done = None::<i64>;
        for phases in by_host.values() {
            if let Some(first) = phases.values().min() {
                control.push(secs(first - t0));
            }
            if let Some(done) = phases.get(&HostPhase::Done) {
                total.push(secs(done - t0));
                last_done = Some(last_done.map_or(*done, |l| l.max(*done)));
            }
            for (i, (_, from, to)) in STEPS.iter().enumerate() {
                if let (Some(a), Some(b)) = (phases.get(from), phases.get(to)) {
                    steps[i].push(secs(b - a));
                }
            }
            if let (Some(a), Some(b)) = (
                phases.get(&HostPhase::Downloading),
                phases.get(&HostPhase::Starting),
            ) {
                install.push(secs(b - a));
            }
        }
        let total_s = Summary::of(&total);
        let control_s = Summary::of(&control);
        let share = match (&control_s, &total_s) {
            (Some(c), Some(t)) if t.p50 > 0.0 => c.p50 / t.p50,
            _ => f64::NAN,
        };
        let rows = &self.deploy.hosts;
        let bytes = |f: fn(&deploy::Transfer) -> u64| {
            let v: Vec<f64> = rows
                .iter()
                .filter_map(|h| h.transfer.as_ref().map(|t| f(t) as f64))
                .collect();
            Summary::of(&v)
        };
        Timeline {
            hosts: rows.len(),
            done: rows.iter().filter(|h| h.phase.is_success()).count(),
            failed: rows.iter().filter(|h| h.phase.is_failure()).count(),
            converge_s: last_done.map_or(f64::NAN, |l| secs(l - t0)),
            wall_s: self.wall.as_secs_f64(),
            request_s: self.request.as_secs_f64(),
            total: total_s,
            control: control_s,
            install: Summary::of(&install),
            steps: STEPS
                .iter()
                .zip(&steps)
                .filter_map(|((name, _, _), v)| Summary::of(v).map(|s| (name.to_string(), s)))
                .collect(),
            control_share: share,
            cpu_s: self.cpu.map(|c| c.as_secs_f64()),
            downloaded: bytes(|t| t.bytes_downloaded),
            from_peers: bytes(|t| t.bytes_from_peers),
            reused: bytes(|t| t.bytes_reused),
        }
    }
}

/// A benchmark app: a git repository whose `main` gets a new commit (and so
/// a new version) per build.
pub struct BenchApp {
    pub name: AppName,
    pub repo: slipway_tests::AppRepo,
    commits: u32,
}

/// The app's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A Python web app with a vendored dependency tree (`vendor/`),
    /// checked over HTTP: measures the data plane.
    Data,
    /// A few bytes and `exec sleep`: measures the control plane.
    Control,
}

/// The data app: a standard-library HTTP server answering `/health`,
/// started with the vendored tree on `PYTHONPATH`, without `site` (`-S`):
/// a `.pth` hook some sandboxes install appends their proxy's CA to any
/// importable `certifi/cacert.pem` at interpreter start, which would change
/// a file of every release in place on every start (an app writing into
/// its release), and the hosts would fetch it again at each upgrade.
const DATA_APP: &str = r#"import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

impl BenchApp {
    /// Makes the repository under `dir`; `tree` (data shape) is copied in
    /// as `vendor/`.
    pub fn create(dir: &Path, shape: Shape, tree: Option<&Path>) -> anyhow::Result<Self> {
        let name = AppName::parse(match shape {
            Shape::Data => "data-app",
            Shape::Control => "tiny-app",
        })?;
        Self::named(dir, name, shape, tree, &[])
    }

    /// [`BenchApp::create`] under another name (several apps side by
    /// side), with `extra` files in the first commit; an `extra`
    /// `slipway.toml` replaces the shape's.
    pub fn named(
        dir: &Path,
        name: AppName,
        shape: Shape,
        tree: Option<&Path>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let path = dir.join(name.as_str());
        let repo = slipway_tests::AppRepo::new(path.clone())?;
        let toml = Self::manifest(shape);
        if let Some(tree) = tree {
            crate::tree::copy(tree, &path.join("vendor"))?;
        }
        let mut files = vec![("slipway.toml", toml)];
        if shape == Shape::Data {
            files.push(("app.py", DATA_APP.to_string()));
        }
        files.push(("release.txt", "0\n".to_string()));
        for (n, c) in extra {
            files.retain(|(have, _)| have != n);
            files.push((*n, c.to_string()));
        }
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
        repo.commit(&refs, "benchmark app")?;
        Ok(Self {
            name,
            repo,
            commits: 0,
        })
    }

    /// The shape's `slipway.toml`.
    pub fn manifest(shape: Shape) -> String {
        match shape {
        Shape::Data => format!(
            "type = \"generic\"\n[build]\ncommand = \"true\"\n[run]\ncommand = \"exec python3 -S app.py\"\nport = {APP_PORT}\nstop_timeout = \"5s\"\nenv = {{ PYTHONPATH = \"vendor\" }}\n[health]\nhttp = \"/health\"\ntimeout = \"60s\"\ngrace = \"0s\"\ninterval = \"50ms\"\n"
        ),
        Shape::Control => "type = \"generic\"\n[build]\ncommand = \"true\"\n[run]\ncommand = \"exec sleep 1000000\"\nstop_timeout = \"2s\"\n[health]\ngrace = \"100ms\"\n".to_string(),
    }
    }

    /// Commits a change, so the next build is a new version.
    pub fn bump(&mut self) -> anyhow::Result<()> {
        self.bump_with(&[])
    }

    /// [`BenchApp::bump`], changing `files` in the same commit.
    pub fn bump_with(&mut self, files: &[(&str, &str)]) -> anyhow::Result<()> {
        self.commits += 1;
        let n = format!("{}\n", self.commits);
        let mut all = vec![("release.txt", n.as_str())];
        all.extend_from_slice(files);
        self.repo.commit(&all, "next release")?;
        Ok(())
    }
}
