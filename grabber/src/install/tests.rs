//! Tests of the install engine against a real HTTP server serving real
//! tarballs, with real app processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use deploy::{
    AppRunStatus, ArtifactRef, HealthCheck, HealthSpec, HostEvent, InstalledApp, Manifest,
    Sha256 as Digest256, Version,
};
use futures::future::BoxFuture;
use sha2::Digest as _;

use super::*;
use crate::extract::tests::{E, build, manifest};
use crate::process::{AppProcess, pid_alive};

// Tests of one concern each, with the helpers above.
mod config;
mod delta;
mod disk;
mod forking;
mod shared;
mod verify;

/// Records every event instead of posting it; names files of an
/// `ArtifactServer` as their sources when it has one.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(DeployId, HostEvent)>>,
    /// The base URL of the server holding `blob-<sha256>` files.
    blobs: Mutex<Option<String>>,
}

impl Reporter for Recorder {
    fn sources<'a>(
        &'a self,
        _deploy: DeployId,
        req: &'a deploy::SourcesRequest,
    ) -> BoxFuture<'a, Result<deploy::Sources, String>> {
        Box::pin(async move {
            let base = self.blobs.lock().unwrap().clone().ok_or("no blob server")?;
            Ok(deploy::Sources {
                blobs: req
                    .blobs
                    .iter()
                    .map(|sha| deploy::BlobSource {
                        sha256: sha.clone(),
                        url: format!("{base}/blob-{sha}"),
                    })
                    .collect(),
                ..Default::default()
            })
        })
    }

    fn report(&self, deploy: DeployId, event: HostEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(mut e) = self.events.lock() {
                e.push((deploy, event));
            }
        })
    }
}

impl Recorder {
    fn phases(&self, id: DeployId) -> Vec<HostPhase> {
        self.of(id).into_iter().map(|e| e.phase).collect()
    }

    fn of(&self, id: DeployId) -> Vec<HostEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| *d == id)
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn last(&self, id: DeployId) -> HostEvent {
        self.of(id).pop().expect("an event")
    }
}

type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A real HTTP server handing out artifacts.
struct ArtifactServer {
    base: String,
    files: Files,
    /// Every name asked for, in order.
    hits: Arc<Mutex<Vec<String>>>,
    /// How many requests to answer 503 (`Retry-After: 1`) before serving.
    busy: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ArtifactServer {
    async fn start() -> Self {
        type Hits = Arc<Mutex<Vec<String>>>;
        type Busy = Arc<std::sync::atomic::AtomicUsize>;
        async fn serve(
            State((files, hits, busy)): State<(Files, Hits, Busy)>,
            UrlPath(name): UrlPath<String>,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            use std::sync::atomic::Ordering;
            hits.lock().unwrap().push(name.clone());
            if busy
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response();
            }
            match files.lock().unwrap().get(&name) {
                Some(b) => (StatusCode::OK, b.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        let files: Files = Default::default();
        let hits: Hits = Default::default();
        let busy: Busy = Default::default();
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state((files.clone(), hits.clone(), busy.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            files,
            hits,
            busy,
            task,
        }
    }

    /// Publishes a release and returns the reference a deploy would carry,
    /// signed by `packer_key()`.
    fn publish(&self, m: &Manifest, entries: &[E<'_>]) -> ArtifactRef {
        let bytes = build(Some(m), entries);
        let name = format!("{}-{}.tar.gz", m.app, m.version);
        let sha256 = Digest256::parse(hex::encode(sha2::Sha256::digest(&bytes))).unwrap();
        let r = ArtifactRef {
            url: format!("{}/{name}", self.base),
            signature: packer_key().sign(&m.app, &m.version, &sha256).to_string(),
            sha256,
            size: bytes.len() as u64,
            index: None,
        };
        self.files.lock().unwrap().insert(name, bytes);
        r
    }
}

impl Drop for ArtifactServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The key the test packer signs with; every test host trusts it.
fn packer_key() -> deploy::signing::SigningKey {
    deploy::signing::SigningKey::from_seed([42; 32])
}

/// An engine on a fresh root; kills whatever app processes the state files
/// still name when dropped, so a failing test leaves nothing running.
struct Host {
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

/// Restarts quick enough for tests.
const TEST_RESTART: RestartPolicy = RestartPolicy {
    initial_backoff: Duration::from_millis(50),
    max_backoff: Duration::from_millis(200),
    stable_after: Duration::from_secs(30),
    failing_after: 3,
};

impl Host {
    fn new() -> Self {
        Self::with(shim::LogLimits::default())
    }

    fn with(log_limits: shim::LogLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::build(dir.path().join("host"), log_limits, dir)
    }

    /// A host whose root is `root` (the disk-full test's tmpfs).
    fn at(root: PathBuf) -> Self {
        Self::build(
            root,
            shim::LogLimits::default(),
            tempfile::tempdir().unwrap(),
        )
    }

    fn build(root: PathBuf, log_limits: shim::LogLimits, dir: tempfile::TempDir) -> Self {
        let layout = HostLayout::new(root);
        layout.ensure_dirs().unwrap();
        let engine = Engine::new(
            EngineConfig {
                cluster: Cluster::parse("local").unwrap(),
                host: HostName::parse("h1").unwrap(),
                layout,
                port_offset: 0,
                port_range: crate::DEFAULT_PORT_RANGE,
                max_artifact_bytes: 1 << 20,
                shim: crate::test_shim(),
                log_limits,
                restart: TEST_RESTART,
                keep_releases: 3,
                trusted_keys: vec![packer_key().public_key()],
                app_user: None,
                download: DownloadTimeouts {
                    response: Duration::from_secs(30),
                    stall: Duration::from_secs(60),
                },
            },
            deploy::tls::Trust::system().http_client().unwrap(),
        );
        Self { engine, _dir: dir }
    }

    fn layout(&self) -> &HostLayout {
        self.engine.layout()
    }

    fn state(&self, app: &AppName) -> AppState {
        self.layout()
            .read_state(app)
            .unwrap()
            .expect("a state file")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let layout = self.engine.layout();
        for app in layout.list_apps().unwrap_or_default() {
            if let Some(pid) = layout.read_state(&app).ok().flatten().and_then(|s| s.pid)
                && pid > 1
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Whether `pid` runs from `dir` (its working directory).
fn runs_from(pid: u32, dir: &Path) -> bool {
    pid_alive(pid) && std::fs::read_link(format!("/proc/{pid}/cwd")).ok() == dir.canonicalize().ok()
}

fn hello() -> AppName {
    AppName::parse("hello").unwrap()
}

fn release(version: &str, command: &str, check: HealthCheck, port: Option<u16>) -> Manifest {
    let mut m = manifest(5);
    m.version = Version::parse(version).unwrap();
    m.run.command = command.into();
    m.run.port = port;
    m.run.stop_timeout_ms = 2_000;
    m.health = HealthSpec {
        check,
        timeout_ms: 10_000,
        grace_ms: 300,
        interval_ms: 50,
        bake_ms: 0,
    };
    m
}

fn request(id: i64, m: &Manifest, artifact: ArtifactRef) -> Release {
    Release {
        deploy_id: DeployId(id),
        app: m.app.clone(),
        version: m.version.clone(),
        artifact,
        config_version: 0,
        action: DeployAction::Deploy,
    }
}

const FILES: &[E<'static>] = &[E::File("hello.txt", b"hello")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_skips_rolls_back_and_refuses_a_bad_checksum() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();

    // Release A comes up.
    let a = release(
        "1-aaaaaaa",
        "echo A up; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref.clone()), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    use HostPhase::*;
    assert_eq!(
        rec.phases(DeployId(1)),
        vec![
            Downloading,
            Verifying,
            Extracting,
            Switching,
            Starting,
            Checking,
            Done
        ]
    );
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    let release_a = host.layout().release_dir(&app, &a.version);
    assert_eq!(
        std::fs::read(release_a.join("hello.txt")).unwrap(),
        b"hello"
    );
    let state = host.state(&app);
    let pid_a = state.pid.expect("a pid");
    assert!(pid_alive(pid_a));
    assert!(runs_from(pid_a, &release_a));
    assert_eq!(state.current, Some(a.version.clone()));
    assert_eq!(state.last_deploy, Some(DeployId(1)));
    // The artifact is not kept once extracted, and no scratch is left.
    assert_eq!(
        std::fs::read_dir(host.layout().cache_dir())
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(host.layout().tmp_dir()).unwrap().count(),
        0
    );
    let installed = host.engine.installed();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].pid, Some(pid_a));

    // The same version again is skipped, the process untouched.
    let out = host
        .engine
        .install(&request(2, &a, a_ref.clone()), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Skipped);
    assert_eq!(rec.phases(DeployId(2)), vec![Skipped]);
    assert_eq!(host.state(&app).pid, Some(pid_a));
    assert!(pid_alive(pid_a));

    // Release B dies at once: failed in checking, rolled back to A.
    let b = release(
        "2-bbbbbbb",
        "echo B is broken >&2; exit 3",
        HealthCheck::Running,
        None,
    );
    let b_ref = server.publish(&b, FILES);
    let out = host
        .engine
        .install(&request(3, &b, b_ref.clone()), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: Checking,
            rolled_back: true
        }
    );
    let last = rec.last(DeployId(3));
    assert_eq!(last.phase, Failed);
    assert_eq!(last.failed_phase, Some(Checking));
    assert!(last.rolled_back);
    let tail = last.log_tail.unwrap_or_default();
    assert!(tail.contains("B is broken"), "log tail: {tail}");
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    let state = host.state(&app);
    assert_eq!(state.current, Some(a.version.clone()));
    let pid_a2 = state.pid.expect("A runs again");
    assert!(pid_alive(pid_a2));
    assert!(runs_from(pid_a2, &release_a));
    assert!(!pid_alive(pid_a), "the first A process was stopped for B");
    // The same failed deploy is not retried by a later sync.
    let out = host
        .engine
        .install(&request(3, &b, b_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::AlreadyFailed);

    // A wrong checksum fails in verifying and touches nothing.
    let c = release("3-ccccccc", "exec sleep 1000", HealthCheck::Running, None);
    let mut c_ref = server.publish(&c, FILES);
    c_ref.sha256 = Digest256::parse("0".repeat(64)).unwrap();
    let out = host
        .engine
        .install(&request(4, &c, c_ref), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: Verifying,
            rolled_back: false
        }
    );
    let last = rec.last(DeployId(4));
    assert_eq!(last.failed_phase, Some(Verifying));
    assert!(!last.rolled_back);
    assert!(last.log_tail.unwrap_or_default().contains("does not match"));
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    assert_eq!(host.state(&app).pid, Some(pid_a2));
    assert!(pid_alive(pid_a2));
    assert!(!host.layout().release_dir(&app, &c.version).exists());
    assert_eq!(
        std::fs::read_dir(host.layout().cache_dir())
            .unwrap()
            .count(),
        0
    );

    host.engine.stop_all().await;
    assert!(!pid_alive(pid_a2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_exits_within_its_bake_is_rolled_back() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    use HostPhase::*;

    // A stays up through its bake: done, and the message says so.
    let mut a = release(
        "1-aaaaaaa",
        "echo A up; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    a.health.bake_ms = 500;
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let done = rec.last(DeployId(1));
    assert_eq!(done.phase, Done);
    let said = done.message.unwrap_or_default();
    assert!(said.contains("up 500ms after its health check"), "{said}");
    let pid_a = host.state(&app).pid.expect("a pid");
    assert!(pid_alive(pid_a));

    // B passes its check (still running after the 300ms grace), then
    // exits a second after it started, inside its 2s bake: the host fails
    // in checking and A runs again.
    let mut b = release(
        "2-bbbbbbb",
        "echo B up; sleep 1; echo B crashed >&2; exit 1",
        HealthCheck::Running,
        None,
    );
    b.health.bake_ms = 2_000;
    let b_ref = server.publish(&b, FILES);
    let out = host
        .engine
        .install(&request(2, &b, b_ref), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: Checking,
            rolled_back: true
        },
        "{:?}",
        rec.of(DeployId(2))
    );
    assert_eq!(
        rec.phases(DeployId(2)),
        vec![
            Downloading,
            Verifying,
            Extracting,
            Switching,
            Starting,
            Checking,
            Failed
        ]
    );
    let last = rec.last(DeployId(2));
    assert_eq!(last.failed_phase, Some(Checking));
    assert!(last.rolled_back);
    let why = last.message.unwrap_or_default();
    assert!(
        why.contains("after passing its health check (bake 2s)"),
        "{why}"
    );
    let tail = last.log_tail.unwrap_or_default();
    assert!(tail.contains("B crashed"), "log tail: {tail}");
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    let state = host.state(&app);
    assert_eq!(state.current, Some(a.version.clone()));
    assert_eq!(state.healthy, Some(a.version.clone()));
    let pid_a2 = state.pid.expect("A runs again");
    assert!(pid_alive(pid_a2));
    assert!(runs_from(
        pid_a2,
        &host.layout().release_dir(&app, &a.version)
    ));
    // B was not restarted by the supervisor while the install held the app.
    let now = installed(&host, &app);
    assert_eq!(now.version, Some(a.version.clone()));
    assert_eq!(now.pid, Some(pid_a2));
    assert_eq!(now.restarts, 0);

    host.engine.stop_all().await;
    assert!(!pid_alive(pid_a2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_release_leaves_nothing_running() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let app = hello();
    let m = release(
        "1-aaaaaaa",
        "exec sleep 1000",
        HealthCheck::Command {
            command: "echo not ready >&2; exit 1".into(),
        },
        None,
    );
    let mut m = m;
    m.health.timeout_ms = 500;
    let r = server.publish(&m, FILES);
    let out = host
        .engine
        .install(&request(1, &m, r), &rec, &CancellationToken::new())
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: false
        }
    );
    let last = rec.last(DeployId(1));
    assert!(last.message.unwrap_or_default().contains("not ready"));
    assert_eq!(host.layout().read_current(&app).unwrap(), None);
    let state = host.state(&app);
    assert_eq!(state.pid, None);
    assert!(host.engine.installed().iter().all(|a| a.pid.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_oversized_and_malicious_artifacts_without_touching_anything() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();

    // More bytes than announced: refused while downloading.
    let m = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let mut r = server.publish(&m, FILES);
    r.size -= 10;
    let out = host.engine.install(&request(1, &m, r), &rec, &token).await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Downloading,
            rolled_back: false
        }
    );
    assert!(
        rec.last(DeployId(1))
            .message
            .unwrap_or_default()
            .contains("larger than")
    );

    // A tarball escaping the release: refused while extracting.
    let m = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    let r = server.publish(&m, &[E::File("../evil", b"x")]);
    let out = host.engine.install(&request(2, &m, r), &rec, &token).await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Extracting,
            rolled_back: false
        }
    );
    let msg = rec.last(DeployId(2)).message.unwrap_or_default();
    assert!(msg.contains("`../evil` escapes"), "{msg}");
    assert!(!host.layout().release_dir(&app, &m.version).exists());
    assert_eq!(host.layout().read_current(&app).unwrap(), None);
    assert_eq!(
        std::fs::read_dir(host.layout().tmp_dir()).unwrap().count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_check_sees_the_port_and_recover_adopts() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let app = hello();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = release(
        "1-aaaaaaa",
        "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1",
        HealthCheck::Http {
            path: "/hello.txt".into(),
            expect: Some("hello".into()),
        },
        Some(port),
    );
    let r = server.publish(&m, FILES);
    let out = host
        .engine
        .install(&request(1, &m, r), &rec, &CancellationToken::new())
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let state = host.state(&app);
    assert_eq!(state.port, Some(port));
    let pid = state.pid.unwrap();

    // A second engine on the same root (a restarted grabber) adopts the
    // running process instead of starting another.
    let again = Engine::new(
        host.engine.cfg.clone(),
        deploy::tls::Trust::system().http_client().unwrap(),
    );
    again.recover().await;
    let installed = again.installed();
    assert_eq!(installed[0].pid, Some(pid));
    assert_eq!(installed[0].port, Some(port));
    again.stop_all().await;
    assert!(!pid_alive(pid));
    // With nothing running, recovery starts `current` again.
    let third = Engine::new(
        host.engine.cfg.clone(),
        deploy::tls::Trust::system().http_client().unwrap(),
    );
    third.recover().await;
    let pid3 = third.installed()[0].pid.expect("restarted");
    assert_ne!(pid3, pid);
    assert!(pid_alive(pid3));
    third.stop_all().await;
    assert!(!pid_alive(pid3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_releases_are_pruned() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let versions = [
        "1-aaaaaaa",
        "2-bbbbbbb",
        "3-ccccccc",
        "4-ddddddd",
        "5-eeeeeee",
    ];
    for (i, v) in versions.iter().enumerate() {
        let mut m = release(v, "exec sleep 1000", HealthCheck::Running, None);
        m.health.grace_ms = 50;
        let r = server.publish(&m, FILES);
        let out = host
            .engine
            .install(&request(i as i64 + 1, &m, r), &rec, &token)
            .await;
        assert_eq!(out, Outcome::Done);
    }
    let left: Vec<String> = host
        .layout()
        .list_releases(&app)
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(left, ["3-ccccccc", "4-ddddddd", "5-eeeeeee"]);
    assert_eq!(
        host.state(&app).previous,
        Some(Version::parse("4-ddddddd").unwrap())
    );
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_asked_again_after_its_retry_after() {
    // 503 with `Retry-After`: AppTracker's limit on requests at once,
    // during a fleet-wide deploy. A busy moment is not a failed host.
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let a_ref = server.publish(&a, FILES);
    server.busy.store(2, std::sync::atomic::Ordering::SeqCst);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &CancellationToken::new())
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let asked = server.hits.lock().unwrap().clone();
    assert_eq!(
        asked.iter().filter(|n| n.ends_with(".tar.gz")).count(),
        3,
        "two busy answers, then the artifact: {asked:?}"
    );
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_download_url_fails_cleanly_and_keeps_the_running_release() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done);
    let pid_a = host.state(&app).pid.expect("a pid");

    // A URL the store refuses (wrong signature, expired, unknown): the
    // server answers an error status instead of the artifact.
    let b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    let mut b_ref = server.publish(&b, FILES);
    b_ref.url = format!("{}/expired-or-tampered", server.base);
    let out = host
        .engine
        .install(&request(2, &b, b_ref), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Downloading,
            rolled_back: false
        }
    );
    let msg = rec.last(DeployId(2)).message.unwrap_or_default();
    assert!(
        msg.contains("404"),
        "the failure says what the server answered: {msg}"
    );
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    assert_eq!(host.state(&app).pid, Some(pid_a));
    assert!(pid_alive(pid_a), "the running release was not touched");
    assert!(!host.layout().release_dir(&app, &b.version).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_for_another_interpreter_is_refused_before_switching() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done);
    let pid_a = host.state(&app).pid.expect("a pid");

    // Built where python3 is 2.7: this host's python3 is not.
    let mut b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    b.runtime = Some(deploy::Runtime {
        kind: deploy::RuntimeKind::Python,
        version: "2.7".into(),
    });
    let b_ref = server.publish(&b, FILES);
    let out = host
        .engine
        .install(&request(2, &b, b_ref), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Switching,
            rolled_back: false
        }
    );
    let msg = rec.last(DeployId(2)).message.unwrap_or_default();
    assert!(
        msg.contains("not switching") && msg.contains("needs python 2.7"),
        "{msg}"
    );
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    assert_eq!(host.state(&app).pid, Some(pid_a));
    assert!(pid_alive(pid_a), "the running release was not touched");
}

/// Polls `f` every 20 ms until it holds, panicking with `what` after `secs`.
async fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn installed(host: &Host, app: &AppName) -> InstalledApp {
    host.engine
        .installed()
        .into_iter()
        .find(|a| a.app == *app)
        .expect("the app is installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_app_is_restarted_and_a_crash_loop_is_reported_failing() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let marks = tempfile::tempdir().unwrap();

    // Healthy at first, then it crashes once; the second run stays up.
    let crashed = marks.path().join("crashed");
    let once = format!(
        "if [ -f '{0}' ]; then exec sleep 1000; else touch '{0}'; sleep 0.5; exit 3; fi",
        crashed.display()
    );
    let m = release("1-aaaaaaa", &once, HealthCheck::Running, None);
    let r = server.publish(&m, FILES);
    let out = host.engine.install(&request(1, &m, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done);
    let first = host.state(&app).pid.unwrap();
    until(10, "the crashed app runs again", || {
        let a = installed(&host, &app);
        a.restarts == 1 && a.pid.is_some_and(|p| p != first && pid_alive(p))
    })
    .await;
    let a = installed(&host, &app);
    assert_eq!(a.status, AppRunStatus::Running);
    assert_eq!(host.state(&app).pid, a.pid, "the state file follows");
    assert!(!pid_alive(first));
    let log = std::fs::read_to_string(host.layout().log_file(&app)).unwrap();
    assert_eq!(log.matches(crate::process::START_MARK).count(), 2, "{log}");

    // Healthy at each start, dead half a second later: a crash loop.
    let m = release(
        "2-bbbbbbb",
        "echo up; sleep 0.5; exit 3",
        HealthCheck::Running,
        None,
    );
    let r = server.publish(&m, FILES);
    let out = host.engine.install(&request(2, &m, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done);
    until(20, "the crash loop is reported", || {
        installed(&host, &app).status == AppRunStatus::Failing
    })
    .await;
    let a = installed(&host, &app);
    assert!(a.restarts >= 2, "{a:?}");
    assert_eq!(a.version, Some(m.version.clone()));
    // Still tried, at the longest backoff: it starts again.
    let restarts = a.restarts;
    until(10, "a failing app is still restarted", || {
        installed(&host, &app).restarts > restarts
    })
    .await;
    // A new install starts the count afresh.
    let m = release("3-ccccccc", "exec sleep 1000", HealthCheck::Running, None);
    let r = server.publish(&m, FILES);
    let out = host.engine.install(&request(3, &m, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done);
    let a = installed(&host, &app);
    assert_eq!((a.status, a.restarts), (AppRunStatus::Running, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_app_stays_under_its_log_cap() {
    let server = ArtifactServer::start().await;
    let limits = shim::LogLimits {
        max_bytes: 64 * 1024,
        keep: 1,
    };
    let host = Host::with(limits);
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    // 20 MB of output as fast as it can, then a last line, then quiet.
    let m = release(
        "1-aaaaaaa",
        "yes 'a noisy line of log output' | head -c 20000000; echo last-line; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    let r = server.publish(&m, FILES);
    let out = host.engine.install(&request(1, &m, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done);
    let log = host.layout().log_file(&app);
    until(60, "the app wrote its last line", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("last-line\n"))
    })
    .await;
    let dir = log.parent().unwrap();
    let mut names = Vec::new();
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let len = e.metadata().unwrap().len();
        assert!(
            len <= limits.max_bytes,
            "{:?} is {len} bytes",
            e.file_name()
        );
        total += len;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names, ["hello.log", "hello.log.1"]);
    assert!(total <= 2 * limits.max_bytes, "{total} bytes of logs");
    // The rotated file holds whole lines of the noise.
    let older = std::fs::read_to_string(dir.join("hello.log.1")).unwrap();
    assert!(older.ends_with("a noisy line of log output\n"));
    assert!(installed(&host, &app).pid.is_some_and(pid_alive));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_back_to_a_release_on_disk_does_not_download() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    let ra = server.publish(&a, FILES);
    let rb = server.publish(&b, FILES);
    for (id, m, r) in [(1, &a, ra.clone()), (2, &b, rb)] {
        assert_eq!(
            host.engine.install(&request(id, m, r), &rec, &token).await,
            Outcome::Done
        );
    }
    // The artifact is gone from the store: only the copy on disk can do.
    server.files.lock().unwrap().clear();
    let out = host.engine.install(&request(3, &a, ra), &rec, &token).await;
    assert_eq!(out, Outcome::Done);
    let phases = rec.phases(DeployId(3));
    assert!(!phases.contains(&HostPhase::Downloading), "{phases:?}");
    assert!(
        rec.of(DeployId(3))
            .iter()
            .any(|e| e.message.as_deref() == Some("reusing release 1-aaaaaaa already on disk")),
    );
    assert_eq!(host.layout().read_current(&app).unwrap(), Some(a.version));
    assert!(installed(&host, &app).pid.is_some_and(pid_alive));
}

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_archives_are_refused_and_the_running_release_is_untouched() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let good = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let r = server.publish(&good, FILES);
    assert_eq!(
        host.engine
            .install(&request(1, &good, r), &rec, &token)
            .await,
        Outcome::Done
    );
    let pid = host.state(&app).pid.unwrap();
    let root = host.layout().root().parent().unwrap().to_path_buf();
    let before = tree(&root);

    let bomb = vec![0u8; 2 << 20]; // compresses to a few KiB; twice the limit unpacked
    let cases: Vec<(&str, Vec<E<'_>>, &str)> = vec![
        ("traversal", vec![E::File("../../evil", b"x")], "escapes"),
        (
            "absolute path",
            vec![E::File("/tmp/slipway-evil", b"x")],
            "absolute",
        ),
        (
            "escaping symlink",
            vec![E::Symlink("link", "../../../../etc")],
            "escapes",
        ),
        (
            "symlink then write through it",
            vec![E::Symlink("d", "/tmp"), E::File("d/slipway-evil", b"x")],
            "`d`",
        ),
        (
            "hard link",
            vec![E::Hardlink("passwd", "/etc/passwd")],
            "link",
        ),
        (
            "device file",
            vec![E::Special("dev", tar::EntryType::Char)],
            "device",
        ),
        (
            "fifo",
            vec![E::Special("fifo", tar::EntryType::Fifo)],
            "fifo",
        ),
        (
            "tar bomb",
            vec![E::File("zeros", &bomb)],
            "expands to more than 1048576 bytes",
        ),
    ];
    for (n, (what, entries, says)) in cases.iter().enumerate() {
        let mut m = release(
            &format!("{}-bbbbbbb", n + 2),
            "exec sleep 1000",
            HealthCheck::Running,
            None,
        );
        // The bomb says what it holds; the host's limit refuses it anyway.
        m.content_bytes = if *what == "tar bomb" { 2 << 20 } else { 10 };
        let r = server.publish(&m, entries);
        let id = DeployId(n as i64 + 2);
        let out = host
            .engine
            .install(&request(id.0, &m, r), &rec, &token)
            .await;
        assert_eq!(
            out,
            Outcome::Failed {
                phase: HostPhase::Extracting,
                rolled_back: false
            },
            "{what}"
        );
        let msg = rec.last(id).message.unwrap_or_default();
        assert!(msg.contains(says), "{what}: {msg}");
        assert!(
            !host.layout().release_dir(&app, &m.version).exists(),
            "{what}"
        );
        assert_eq!(
            std::fs::read_dir(host.layout().tmp_dir()).unwrap().count(),
            0,
            "{what}: tmp/ is cleared"
        );
        assert_eq!(
            host.layout().read_current(&app).unwrap(),
            Some(good.version.clone()),
            "{what}"
        );
        assert!(
            pid_alive(pid) && host.state(&app).pid == Some(pid),
            "{what}"
        );
    }
    assert!(!Path::new("/tmp/slipway-evil").exists());
    // Nothing appeared or vanished anywhere under the host's directory
    // (the state file and the log change in place).
    assert_eq!(tree(&root), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_install_is_superseded_by_a_newer_one() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Arc::new(Recorder::default());
    let token = CancellationToken::new();
    let app = hello();
    // The first install holds the app for a while (its check takes 1.5s).
    let mut slow = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    slow.health.grace_ms = 1_500;
    let r = server.publish(&slow, FILES);
    let first = {
        let (engine, rec, token) = (host.engine.clone(), rec.clone(), token.clone());
        let req = request(1, &slow, r);
        tokio::spawn(async move { engine.install(&req, rec.as_ref(), &token).await })
    };
    until(10, "the first install is checking", || {
        rec.phases(DeployId(1)).contains(&HostPhase::Checking)
    })
    .await;
    // Two more come while it checks; `join!` polls them in order, so the
    // second is queued before the third.
    let b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    let c = release("3-ccccccc", "exec sleep 1000", HealthCheck::Running, None);
    let (rb, rc) = (server.publish(&b, FILES), server.publish(&c, FILES));
    let (req_b, req_c) = (request(2, &b, rb), request(3, &c, rc));
    let (out_b, out_c) = tokio::join!(
        host.engine.install(&req_b, rec.as_ref(), &token),
        host.engine.install(&req_c, rec.as_ref(), &token),
    );
    assert_eq!(first.await.unwrap(), Outcome::Done);
    assert_eq!((out_b, out_c), (Outcome::Superseded, Outcome::Done));
    let skipped = rec.last(DeployId(2));
    assert_eq!(skipped.phase, HostPhase::Skipped);
    assert!(
        skipped
            .message
            .unwrap_or_default()
            .contains("superseded by deploy 3 (3-ccccccc)"),
    );
    assert_eq!(
        rec.phases(DeployId(2)),
        [HostPhase::Skipped],
        "never started"
    );
    assert_eq!(host.layout().read_current(&app).unwrap(), Some(c.version));
    assert!(!host.layout().release_dir(&app, &b.version).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_with_a_wrong_signature_or_none_is_refused_before_extraction() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let pid_a = host.state(&app).pid.expect("a pid");

    let b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    let good = server.publish(&b, FILES);
    let stranger = deploy::signing::SigningKey::from_seed([7; 32]);
    let other_version = Version::parse("9-fffffff").unwrap();
    let cases = [
        // Signed, but by a key this host does not trust.
        (
            stranger.sign(&b.app, &b.version, &good.sha256).to_string(),
            "does not verify with the trusted key",
        ),
        // The trusted key's signature of the same bytes as another version.
        (
            packer_key()
                .sign(&b.app, &other_version, &good.sha256)
                .to_string(),
            "the signature of hello 2-bbbbbbb does not verify",
        ),
        // Not signed at all.
        (String::new(), "the artifact is not signed"),
        (" ".into(), "the artifact is not signed"),
        // Not a signature.
        ("bm90IGEgc2lnbmF0dXJl".into(), "malformed signature"),
    ];
    for (i, (signature, expected)) in cases.into_iter().enumerate() {
        let id = DeployId(i as i64 + 2);
        let mut b_ref = good.clone();
        b_ref.signature = signature;
        let out = host
            .engine
            .install(&request(id.0, &b, b_ref), &rec, &token)
            .await;
        assert_eq!(
            out,
            Outcome::Failed {
                phase: HostPhase::Verifying,
                rolled_back: false
            },
            "{expected}: {:?}",
            rec.of(id)
        );
        use HostPhase::*;
        assert_eq!(rec.phases(id), vec![Downloading, Verifying, Failed]);
        let last = rec.last(id);
        assert_eq!(last.failed_phase, Some(Verifying));
        let msg = last.message.unwrap_or_default();
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
        // Refused before extraction: no release, no download kept, no scratch.
        assert!(!host.layout().release_dir(&app, &b.version).exists());
        assert_eq!(
            std::fs::read_dir(host.layout().tmp_dir()).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(host.layout().cache_dir())
                .unwrap()
                .count(),
            0
        );
        // The running release is untouched.
        assert_eq!(
            host.layout().read_current(&app).unwrap(),
            Some(a.version.clone())
        );
        assert_eq!(host.state(&app).pid, Some(pid_a));
        assert!(pid_alive(pid_a), "the running release was not touched");
    }

    // The same bytes, properly signed, install.
    let out = host
        .engine
        .install(&request(20, &b, good), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(20)));
    host.engine.stop_all().await;
}

/// Changes a file of an installed release, as something other than the
/// grabber would.
fn tamper(host: &Host, m: &Manifest) {
    let dir = host.layout().release_dir(&m.app, &m.version);
    std::fs::write(dir.join("hello.txt"), b"tampered").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_release_on_disk_is_downloaded_again_never_reused() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    let ra = server.publish(&a, FILES);
    let rb = server.publish(&b, FILES);
    for (id, m, r) in [(1, &a, ra.clone()), (2, &b, rb.clone())] {
        assert_eq!(
            host.engine.install(&request(id, m, r), &rec, &token).await,
            Outcome::Done
        );
    }
    let digest = host
        .layout()
        .read_digest(&app, &a.version)
        .unwrap()
        .unwrap();
    assert_eq!(digest.artifact_sha256, ra.sha256);

    // Going back to A after its files changed downloads it again.
    tamper(&host, &a);
    let out = host
        .engine
        .install(&request(3, &a, ra.clone()), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(3)));
    let events = rec.of(DeployId(3));
    let downloading = events
        .iter()
        .find(|e| e.phase == HostPhase::Downloading)
        .expect("downloaded again");
    let said = downloading.message.as_deref().unwrap_or_default();
    assert!(
        said.contains("release 1-aaaaaaa on disk cannot be reused")
            && said.contains("its files changed since it was installed"),
        "{said}"
    );
    let release_a = host.layout().release_dir(&app, &a.version);
    assert_eq!(
        std::fs::read(release_a.join("hello.txt")).unwrap(),
        b"hello"
    );

    // With the artifact gone, a changed release is not run either: the
    // install fails in downloading and what runs keeps running.
    let running = host.state(&app).pid.unwrap();
    tamper(&host, &b);
    server.files.lock().unwrap().clear();
    let out = host
        .engine
        .install(&request(4, &b, rb.clone()), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Downloading,
            rolled_back: false
        }
    );
    assert!(
        !host.layout().release_dir(&app, &b.version).exists(),
        "the changed release is gone, so nothing can run it later"
    );
    assert_eq!(host.state(&app).pid, Some(running));
    assert!(pid_alive(running));
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_release_is_not_rolled_back_to_restarted_or_recovered() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let ra = server.publish(&a, FILES);
    assert_eq!(
        host.engine.install(&request(1, &a, ra), &rec, &token).await,
        Outcome::Done
    );

    // B fails its check; the rollback to a changed A refuses to run it.
    tamper(&host, &a);
    let b = release("2-bbbbbbb", "exit 3", HealthCheck::Running, None);
    let rb = server.publish(&b, FILES);
    let out = host.engine.install(&request(2, &b, rb), &rec, &token).await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: false
        }
    );
    let said = rec.last(DeployId(2)).message.unwrap_or_default();
    assert!(
        said.contains("rollback to 1-aaaaaaa failed")
            && said.contains("cannot be trusted: its files changed"),
        "{said}"
    );
    assert_eq!(host.state(&app).pid, None);

    // A restarted grabber does not start a changed `current` either.
    let c = release("3-ccccccc", "exec sleep 1000", HealthCheck::Running, None);
    let rc = server.publish(&c, FILES);
    assert_eq!(
        host.engine.install(&request(3, &c, rc), &rec, &token).await,
        Outcome::Done
    );
    host.engine.stop_all().await;
    tamper(&host, &c);
    let again = Engine::new(
        host.engine.cfg.clone(),
        deploy::tls::Trust::system().http_client().unwrap(),
    );
    again.recover().await;
    assert_eq!(again.installed()[0].pid, None);
    let state = host.state(&app);
    assert_eq!((state.pid, state.healthy), (None, None));

    // Nor does the supervisor restart a crashed app whose release changed.
    let d = release("4-ddddddd", "sleep 0.5; exit 1", HealthCheck::Running, None);
    let mut d = d;
    d.health.grace_ms = 100;
    let rd = server.publish(&d, FILES);
    assert_eq!(
        again.install(&request(4, &d, rd), &rec, &token).await,
        Outcome::Done
    );
    tamper(&host, &d);
    let first = host.state(&app).pid.unwrap();
    until(20, "the crash is noticed and the restart refused", || {
        let s = host.state(&app);
        !pid_alive(first) && s.pid.is_none() && s.healthy.is_none()
    })
    .await;
    assert_eq!(again.installed()[0].pid, None);
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_the_download_and_frees_the_app() {
    let server = ArtifactServer::start().await;
    let (silent, _task) = silent_server().await;
    let mut host = Host::new();
    let mut cfg = host.engine.cfg.clone();
    cfg.download.response = Duration::from_millis(500);
    host.engine = Engine::new(cfg, deploy::tls::Trust::system().http_client().unwrap());
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let good = server.publish(&a, FILES);
    let stalled = ArtifactRef {
        url: format!("{silent}/hello-1-aaaaaaa.tar.gz"),
        ..good.clone()
    };
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        host.engine.install(&request(1, &a, stalled), &rec, &token),
    )
    .await
    .expect("the install gives up on its own");
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Downloading,
            rolled_back: false
        }
    );
    let said = rec.last(DeployId(1)).message.unwrap_or_default();
    assert!(said.contains("no answer within 500ms"), "{said}");
    // The app's install lock was released: the next deploy goes through.
    let out = host
        .engine
        .install(&request(2, &a, good), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_stalls_midway_fails_after_the_stall_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let _task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut req = [0u8; 1024];
            let _ = sock.read(&mut req).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nsome")
                .await;
            held.push(sock);
        }
    });
    let mut host = Host::new();
    let mut cfg = host.engine.cfg.clone();
    cfg.download.stall = Duration::from_millis(500);
    host.engine = Engine::new(cfg, deploy::tls::Trust::system().http_client().unwrap());
    let rec = Recorder::default();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let r = ArtifactRef {
        url: format!("{base}/a.tar.gz"),
        sha256: Digest256::parse("0".repeat(64)).unwrap(),
        size: 1000,
        signature: String::new(),
        index: None,
    };
    let out = host
        .engine
        .install(&request(1, &a, r), &rec, &CancellationToken::new())
        .await;
    assert!(
        matches!(
            out,
            Outcome::Failed {
                phase: HostPhase::Downloading,
                ..
            }
        ),
        "{out:?}"
    );
    let said = rec.last(DeployId(1)).message.unwrap_or_default();
    assert!(
        said.contains("stalled: nothing arrived for 500ms"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_run_as_the_app_user_and_own_only_their_shared_directory() {
    if !nix::unistd::geteuid().is_root() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "CI=true but the tests do not run as root");
        eprintln!("\n!!! SKIPPING: switching users needs root\n");
        return;
    }
    let nobody = crate::user::AppUser::resolve(&deploy::RunUser::parse("nobody").unwrap())
        .expect("the nobody user exists");
    let server = ArtifactServer::start().await;
    let mut host = Host::new();
    // The app user must be able to reach its release.
    crate::user::set_mode(host._dir.path(), 0o755).unwrap();
    let mut cfg = host.engine.cfg.clone();
    cfg.app_user = Some(nobody.clone());
    host.engine = Engine::new(cfg, deploy::tls::Trust::system().http_client().unwrap());
    let rec = Recorder::default();
    let app = hello();
    let mut a = release(
        "1-aaaaaaa",
        "id -u > ../../shared/id; id -G >> ../../shared/id; \
         (echo x > hello.txt) 2>/dev/null && echo wrote-release >> ../../shared/id; \
         exec sleep 1000",
        HealthCheck::Command {
            command: "test \"$(id -u)\" = 65534".into(),
        },
        None,
    );
    a.health.grace_ms = 0;
    let ra = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, ra), &rec, &CancellationToken::new())
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let shared = host.layout().shared_dir(&app);
    until(10, "the app wrote what it is", || {
        shared.join("id").exists()
    })
    .await;
    until(10, "the app wrote its groups", || {
        std::fs::read_to_string(shared.join("id")).is_ok_and(|s| s.lines().count() >= 2)
    })
    .await;
    let id = std::fs::read_to_string(shared.join("id")).unwrap();
    assert_eq!(
        id,
        format!("{}\n{}\n", nobody.uid, nobody.gid),
        "no extra groups, no write"
    );
    use std::os::unix::fs::MetadataExt;
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(owner(&shared), (nobody.uid, nobody.gid, 0o700));
    let release_dir = host.layout().release_dir(&app, &a.version);
    assert_eq!(owner(&release_dir), (0, 0, 0o755));
    assert_eq!(owner(&host.layout().log_dir(&app)), (0, 0, 0o700));
    assert_eq!(owner(&host.layout().digests_dir(&app)), (0, 0, 0o700));
    // The shim, which holds the log, stays root; the app is nobody.
    let pid = host.state(&app).pid.unwrap();
    assert!(crate::process::is_shim(pid));
    assert_eq!(std::fs::metadata(format!("/proc/{pid}")).unwrap().uid(), 0);
    host.engine.stop_all().await;

    // A release may not ask for root on a host that runs apps as nobody:
    // the host fails in starting, and nothing changed.
    let mut b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    b.run.user = Some(deploy::RunUser::parse("root").unwrap());
    let rb = server.publish(&b, FILES);
    let out = host
        .engine
        .install(&request(2, &b, rb), &rec, &CancellationToken::new())
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Starting,
            rolled_back: false
        }
    );
    let said = rec.last(DeployId(2)).message.unwrap_or_default();
    assert!(said.contains("asks to run as root"), "{said}");
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_stops_only_what_a_shim_leads() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let ra = server.publish(&a, FILES);
    assert_eq!(
        host.engine
            .install(&request(1, &a, ra), &rec, &CancellationToken::new())
            .await,
        Outcome::Done
    );
    // An operator's process in the release directory, in a group of its
    // own (as a shell's job would be).
    let release_dir = host.layout().release_dir(&app, &a.version);
    let mut operator = std::process::Command::new("sleep");
    use std::os::unix::process::CommandExt;
    let mut operator = operator
        .arg("1000")
        .current_dir(&release_dir)
        .process_group(0)
        .spawn()
        .unwrap();
    let theirs = operator.id();
    // A stray copy of the app under a shim that no state file names.
    let stray = AppProcess::start(
        &host
            .engine
            .launch(
                &app,
                &a.version,
                &a,
                &release_dir,
                &host.layout().log_file(&app),
                None,
            )
            .unwrap(),
    )
    .unwrap();
    let ours = host.state(&app).pid.unwrap();

    let again = Engine::new(
        host.engine.cfg.clone(),
        deploy::tls::Trust::system().http_client().unwrap(),
    );
    again.recover().await;
    assert_eq!(
        again.installed()[0].pid,
        Some(ours),
        "the recorded app is adopted"
    );
    assert!(!pid_alive(stray.pid), "the stray shim's group is stopped");
    assert!(pid_alive(theirs), "the operator's process is left alone");
    let _ = operator.kill();
    let _ = operator.wait();
    again.stop_all().await;
}

/// Security finding L4, the part the shim check left: a state file whose
/// recorded pid now leads a group of someone else's (pids are reused, after
/// a reboot say), with that leader gone, does not get that group stopped;
/// the app's own group, left by a shim that died, still is (its processes
/// carry the app's environment). An operator's process in the test's own
/// group is left alone as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_stops_a_recorded_group_without_its_shim_only_when_it_runs_the_app() {
    use std::os::unix::process::CommandExt;
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let ra = server.publish(&a, FILES);
    assert_eq!(
        host.engine
            .install(&request(1, &a, ra), &rec, &CancellationToken::new())
            .await,
        Outcome::Done
    );
    let release_dir = host.layout().release_dir(&app, &a.version);
    // An operator's job: a shell, leader of its group, that left a `sleep`
    // behind in the release directory.
    let job = std::process::Command::new("sh")
        .args(["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
        .current_dir(&release_dir)
        .process_group(0)
        .output()
        .unwrap();
    let left: u32 = String::from_utf8(job.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let group = deploy::procfs::stat(left).unwrap().pgrp;
    assert!(!pid_alive(group), "the job's shell is gone");
    // And a plain one, in this test's group.
    let mut plain = std::process::Command::new("sleep")
        .arg("1000")
        .current_dir(&release_dir)
        .spawn()
        .unwrap();
    // The state file names the job's group (the pid was given to its shell).
    let shim = host.state(&app).pid.unwrap();
    let mut state = host.state(&app);
    state.pid = Some(group);
    host.layout().write_state(&state).unwrap();
    // The grabber that started the app is gone: nothing restarts it.
    host.engine.slot(&app).set_process(None);

    let again = Engine::new(
        host.engine.cfg.clone(),
        deploy::tls::Trust::system().http_client().unwrap(),
    );
    again.recover().await;
    let restarted = again.installed()[0].pid.expect("the app runs again");
    assert_ne!(restarted, shim);
    assert!(!pid_alive(shim), "the unrecorded shim's group is stopped");
    let alive = (pid_alive(left), pid_alive(plain.id()));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(left as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = plain.kill();
    let _ = plain.wait();
    assert_eq!(
        alive,
        (true, true),
        "the operator's processes are left alone"
    );

    // The app outlives its shim (SIGKILLed alone): what is left of the
    // recorded group runs the app, and is stopped. (`recover` returns once
    // the shim runs; the app it forks may take a moment under load.)
    let app_under_shim = || {
        crate::process::processes_under(&host.layout().releases_dir(&app))
            .into_iter()
            .find(|(pid, g, _)| *g == restarted && *pid != restarted)
            .map(|(pid, ..)| pid)
    };
    until(10, "the app under its shim", || {
        app_under_shim().is_some_and(|p| crate::process::runs_app(p, &app, &again.cfg.host))
    })
    .await;
    let app_pid = app_under_shim().expect("the app under its shim");
    assert!(crate::process::runs_app(app_pid, &app, &again.cfg.host));
    assert!(!crate::process::runs_app(
        app_pid,
        &app,
        &HostName::parse("h2").unwrap()
    ));
    again.slot(&app).set_process(None);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(restarted as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    until(10, "the shim is gone", || !pid_alive(restarted)).await;
    assert!(pid_alive(app_pid));
    assert_eq!(host.state(&app).pid, Some(restarted));
    let third = Engine::new(
        host.engine.cfg.clone(),
        deploy::tls::Trust::system().http_client().unwrap(),
    );
    third.recover().await;
    until(10, "the app left by its shim is stopped", || {
        !pid_alive(app_pid)
    })
    .await;
    assert!(third.installed()[0].pid.is_some_and(|p| p != restarted));
    third.stop_all().await;
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// GETs `/hello.txt` on `port`.
async fn serves(port: u16) -> bool {
    let http = deploy::tls::Trust::system().http_client().unwrap();
    match http
        .get(format!("http://127.0.0.1:{port}/hello.txt"))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_port_another_app_holds_fails_in_starting_and_the_first_keeps_serving() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let port = free_port();
    let serve = "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1";
    let check = || HealthCheck::Http {
        path: "/hello.txt".into(),
        expect: Some("hello".into()),
    };
    let first = release("1-aaaaaaa", serve, check(), Some(port));
    let r = server.publish(&first, FILES);
    let out = host
        .engine
        .install(&request(1, &first, r), &rec, &CancellationToken::new())
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let first_pid = host.state(&hello()).pid.expect("the first app runs");

    let other = AppName::parse("other").unwrap();
    let mut second = release("1-bbbbbbb", serve, check(), Some(port));
    second.app = other.clone();
    let r = server.publish(&second, FILES);
    let out = host
        .engine
        .install(&request(2, &second, r), &rec, &CancellationToken::new())
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Starting,
            rolled_back: false
        },
        "{:?}",
        rec.of(DeployId(2))
    );
    let failed = rec.last(DeployId(2));
    let message = failed.message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "port {port} is already in use by app `hello` (pid "
        )),
        "{message}"
    );
    // Nothing of the second app switched or started; the first still serves.
    assert_eq!(host.layout().read_current(&other).unwrap(), None);
    assert!(pid_alive(first_pid));
    assert!(serves(port).await, "the first app stopped serving");
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_answered_by_a_foreign_process_does_not_pass() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let app = hello();
    let port = free_port();
    // A stray of the app (left from an old release, out of its process
    // group) serves the app's port. The pre-start check lets it be, taking
    // it for the app's own; the health check must not take its answer.
    use std::os::unix::process::CommandExt;
    let stray_dir = host.layout().app_dir(&app).join("stray");
    std::fs::create_dir_all(&stray_dir).unwrap();
    std::fs::write(stray_dir.join("hello.txt"), "hello").unwrap();
    let mut stray = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&stray_dir)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until(10, "the stray serves", || {
        deploy::procfs::port_holders(port).listening
    })
    .await;
    assert!(serves(port).await);

    // The release itself never listens.
    let mut m = release(
        "1-aaaaaaa",
        "exec sleep 60",
        HealthCheck::Http {
            path: "/hello.txt".into(),
            expect: Some("hello".into()),
        },
        Some(port),
    );
    m.health.timeout_ms = 1_500;
    let r = server.publish(&m, FILES);
    let out = host
        .engine
        .install(&request(1, &m, r), &rec, &CancellationToken::new())
        .await;
    let _ = stray.kill();
    let _ = stray.wait();
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: false
        },
        "{:?}",
        rec.of(DeployId(1))
    );
    let message = rec.last(DeployId(1)).message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "port {port} answered, but it is held by app `hello` (pid {}), not by the app",
            stray.id()
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_that_pin_no_port_get_different_ports_and_keep_them() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let serve = "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1";
    let check = || HealthCheck::Http {
        path: "/hello.txt".into(),
        expect: Some("hello".into()),
    };
    let other = AppName::parse("other").unwrap();
    let first = release("1-aaaaaaa", serve, check(), None);
    let mut second = release("1-bbbbbbb", serve, check(), None);
    second.app = other.clone();
    let (r1, r2) = (
        server.publish(&first, FILES),
        server.publish(&second, FILES),
    );
    let (q1, q2) = (request(1, &first, r1), request(2, &second, r2));
    let cancel = CancellationToken::new();
    let (a, b) = tokio::join!(
        host.engine.install(&q1, &rec, &cancel),
        host.engine.install(&q2, &rec, &cancel),
    );
    assert_eq!(a, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    assert_eq!(b, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    let p1 = host.state(&hello()).port.expect("the first app's port");
    let p2 = host.state(&other).port.expect("the second app's port");
    assert_ne!(p1, p2);
    for p in [p1, p2] {
        assert!(crate::DEFAULT_PORT_RANGE.contains(&p), "{p}");
        assert!(serves(p).await, "nothing serves on {p}");
    }

    // A new release of the first app keeps its port.
    let next = release("2-ccccccc", serve, check(), None);
    let r = server.publish(&next, FILES);
    let out = host
        .engine
        .install(&request(3, &next, r), &rec, &CancellationToken::new())
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(3)));
    assert_eq!(host.state(&hello()).port, Some(p1));
    host.engine.stop_all().await;
}

/// `[hooks]` and the release phase, with the helpers above.
#[path = "tests_hooks.rs"]
mod hooks;
/// `[processes]`: other process types beside the web process.
mod processes;
