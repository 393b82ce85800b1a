//! End-to-end test helpers: a whole Slipway platform per test
//! ([`platform`], the one builder `slipway dev` and the benchmarks use too,
//! with the tests' settings), wired as in production with the embedded
//! defaults (AppTracker's HTTP API, SQLite, the local artifact store, the
//! in-process packer, real grabbers talking HTTP and SSE, real app
//! processes), on loopback ports picked by the OS; real services and
//! processes; git repositories of a test app.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

pub mod browser;
pub mod githttp;
pub mod procs;
pub mod proxy;
pub mod services;
pub mod tls;

pub use slipway_platform::{APP_PORT, Builder, Host, Platform};

/// A port that was free a moment ago.
///
/// Test processes run in parallel and a port is only reserved once an app
/// binds it, so ports come from a random draw below the kernel's ephemeral
/// range (32768+), where `bind(0)` in other tests tends not to land, rather
/// than from `bind(0)` itself, whose picks repeat across processes. The
/// draw stays below [`GRABBER_PORTS`], where the tests' grabbers give ports
/// to apps that pin none, so the two never meet.
///
/// Within one test process a port is never handed out twice: the ten hosts
/// of a platform drew their ports before any app bound one, and two draws
/// of the same port made one host fail `starting` (`port … is already in
/// use`), a CI flake.
pub fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .map_err(|_| anyhow::anyhow!("the ports given are poisoned"))?;
    for _ in 0..200 {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let port = 20_000 + u16::from_le_bytes(b) % 6_000;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The ports the tests' grabbers give apps that pin none: apart from what
/// [`free_port`] draws (a pinned port another test's app holds fails the
/// host in `starting`, as it should).
pub const GRABBER_PORTS: std::ops::RangeInclusive<u16> = 26_000..=31_999;

/// Installs a test subscriber once, so failures come with the platform's logs.
/// Text unless `SLIPWAY_LOG_FORMAT` (or `SLIPWAY_LOG_JSON`) says JSON.
pub fn init_tracing() {
    use deploy::binary::{LogFormat, Tracing};
    Tracing::new(LogFormat::from_env())
        .default_filter("info,sqlx=warn,tower_http=warn")
        .to_test_writer()
        .init();
}

/// A platform builder with the tests' settings: a fresh directory, ports
/// from [`free_port`], tokens `test-admin` and `test-agent-local`, a 200 ms
/// deadline sweep, grabbers heartbeating every 500 ms that restart a
/// crashed app within half a second and use [`grabber_shim`]. Add hosts
/// and settings, then `start()`.
pub fn platform() -> Builder {
    init_tracing();
    Platform::builder()
        .temp_dir("slipway-e2e-", None)
        .token_prefix("test")
        .port_offsets(|_| Ok(i32::from(free_port()?) - i32::from(APP_PORT)))
        .configure(|c| c.sweep_interval = Duration::from_millis(200))
        .configure_grabbers(|g| {
            g.heartbeat_interval = Duration::from_millis(500);
            g.port_range = GRABBER_PORTS;
            g.shim = grabber_shim();
            // Quick restarts, so a crash loop shows within seconds.
            g.restart = grabber::RestartPolicy {
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                stable_after: Duration::from_secs(30),
                failing_after: 3,
            };
        })
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

/// A git repository of a test app with a `main` branch (and others
/// [`AppRepo::switch`] makes).
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

    /// Makes `branch` the one the next commits go on: created at the
    /// current commit when it does not exist, and checked out.
    pub fn switch(&self, branch: &str) -> anyhow::Result<()> {
        if self
            .repo
            .find_branch(branch, git2::BranchType::Local)
            .is_err()
        {
            let head = self.repo.head()?.peel_to_commit()?;
            self.repo.branch(branch, &head, false)?;
        }
        self.repo.set_head(&format!("refs/heads/{branch}"))?;
        self.repo
            .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
        Ok(())
    }

    /// Writes files and commits them on the current branch (`main` unless
    /// [`AppRepo::switch`] chose another); returns the commit sha.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> anyhow::Result<String> {
        for (name, content) in files {
            let p = self.path.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, content)?;
        }
        let oid = slipway_platform::repos::commit_all(&self.repo, message)?;
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
