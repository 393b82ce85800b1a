//! The install engine: downloads, verifies, extracts, switches `current`,
//! restarts and health-checks one release of one app, and rolls back when
//! the new release does not come up. It owns the supervised processes of
//! one host, and knows nothing of the bus: a `Reporter` receives the phases.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deploy::layout::{AppState, HostLayout, InstallRecord};
use deploy::{
    AppName, AppRunStatus, ArtifactRef, Cluster, DeployId, HostEvent, HostName, HostPhase,
    InstalledApp, MANIFEST_PATH, Manifest, Timestamp, Version,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::process::{AppProcess, Launch, log_since_start, processes_under};
use crate::user::AppUser;
use crate::{RestartPolicy, extract, fault, health, shim, symlink};

/// How much of the app's log (since its start) a failure report carries.
const FAILURE_LOG_BYTES: u64 = 1024 * 1024;

/// How long an artifact download may wait, so a server that never answers
/// cannot hold the app's install lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownloadTimeouts {
    /// For the response's headers (connecting and sending the request
    /// included).
    pub response: Duration,
    /// Between two chunks of the body.
    pub stall: Duration,
}

/// Why a release on disk is not run again as it is.
#[derive(Debug)]
pub(crate) enum Unverified {
    /// No digest was recorded for it (installed by an older grabber, or
    /// the record was removed).
    NoRecord,
    /// It differs from its record, or cannot be read.
    Mismatch(String),
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unverified::NoRecord => f.write_str("no digest was recorded when it was installed"),
            Unverified::Mismatch(why) => f.write_str(why),
        }
    }
}

/// Where phases of an install go: AppTracker in production, a list in
/// tests. Reporting never fails an install.
pub(crate) trait Reporter: Send + Sync {
    fn report(&self, deploy: DeployId, event: HostEvent) -> BoxFuture<'_, ()>;
}

/// Posts host events to AppTracker. A report that fails for a reason that
/// may pass (AppTracker restarting, a 5xx, a broken connection) is sent
/// again with backoff: an end phase (done, skipped, failed) for up to
/// `end_patience`, since a lost one leaves the host hanging in the deploy
/// until its deadline; a progress phase a few times only, so the install is
/// not held up. Anything else is logged and dropped.
pub(crate) struct ClientReporter {
    pub client: deploy::Client,
    pub host: HostName,
    pub end_patience: Duration,
    /// The first wait between tries; it doubles, up to 5 s.
    pub first_wait: Duration,
}

impl ClientReporter {
    pub fn new(client: deploy::Client, host: HostName) -> Self {
        Self {
            client,
            host,
            end_patience: Duration::from_secs(120),
            first_wait: Duration::from_millis(250),
        }
    }
}

/// Tries for progress phases.
const PROGRESS_TRIES: u32 = 3;

impl Reporter for ClientReporter {
    fn report(&self, deploy: DeployId, event: HostEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let end = event.phase.is_terminal();
            let give_up = tokio::time::Instant::now() + self.end_patience;
            let mut wait = self.first_wait;
            let mut tries = 0;
            loop {
                tries += 1;
                let e = match self.client.host_event(deploy, &self.host, &event).await {
                    Ok(_) => return,
                    Err(e) => e,
                };
                let again = e.is_retryable()
                    && if end {
                        tokio::time::Instant::now() + wait < give_up
                    } else {
                        tries < PROGRESS_TRIES
                    };
                if !again {
                    tracing::warn!(deploy_id = %deploy, host = %self.host, phase = %event.phase,
                        tries, error = %e, "cannot report host event; dropped");
                    return;
                }
                tracing::info!(deploy_id = %deploy, host = %self.host, phase = %event.phase,
                    tries, error = %e, "cannot report host event yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        })
    }
}

/// An artifact URL fit for messages and logs: without its query, which
/// holds the download's signature (a presigned URL's credentials), so a
/// failure report shown to viewers or kept in logs grants nothing.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

#[cfg(test)]
mod report_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use axum::routing::post;

    use super::*;

    /// An AppTracker that answers 503 to the first `fail` reports, then
    /// records the phases it accepts.
    async fn flaky(fail: usize) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, g) = (calls.clone(), got.clone());
        let app = axum::Router::new().route(
            "/api/v1/deploys/{id}/hosts/{host}/events",
            post(move |axum::Json(ev): axum::Json<serde_json::Value>| {
                let (c, g) = (c.clone(), g.clone());
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) < fail {
                        let body = serde_json::json!({"code": "internal", "message": "restarting"});
                        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body));
                    }
                    g.lock()
                        .unwrap()
                        .push(ev["phase"].as_str().unwrap_or("?").to_string());
                    let row = serde_json::json!({
                        "host": "h1", "phase": ev["phase"], "failed_phase": null,
                        "rolled_back": false, "message": null, "log_tail": null,
                        "updated_at": 0, "batch": 0,
                    });
                    (StatusCode::OK, axum::Json(row))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls, got)
    }

    fn event(phase: HostPhase) -> HostEvent {
        HostEvent {
            cluster: deploy::Cluster::parse("local").unwrap(),
            phase,
            failed_phase: None,
            rolled_back: false,
            message: None,
            log_tail: None,
        }
    }

    fn reporter(url: String) -> ClientReporter {
        let mut r = ClientReporter::new(deploy::Client::new(url), HostName::parse("h1").unwrap());
        r.first_wait = Duration::from_millis(10);
        r
    }

    #[tokio::test]
    async fn an_end_phase_is_sent_again_until_it_lands() {
        let (url, calls, got) = flaky(4).await;
        let r = reporter(url);
        r.report(DeployId(1), event(HostPhase::Done)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(*got.lock().unwrap(), ["done"]);
    }

    #[tokio::test]
    async fn a_progress_phase_is_tried_a_few_times_only() {
        let (url, calls, got) = flaky(10).await;
        let r = reporter(url);
        r.report(DeployId(1), event(HostPhase::Downloading)).await;
        assert_eq!(calls.load(Ordering::SeqCst), PROGRESS_TRIES as usize);
        assert!(got.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_end_phase_gives_up_after_its_patience() {
        let (url, calls, got) = flaky(usize::MAX).await;
        let mut r = reporter(url);
        r.end_patience = Duration::from_secs(1);
        // Tries again and again (waits of 10, 20, 40 ms… fit in a second),
        // then gives up rather than holding the grabber forever.
        tokio::time::timeout(
            Duration::from_secs(60),
            r.report(DeployId(1), event(HostPhase::Failed)),
        )
        .await
        .expect("the reporter gives up");
        assert!(calls.load(Ordering::SeqCst) >= 3, "{calls:?}");
        assert!(got.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refusal_is_not_sent_again() {
        let (url, calls, _) = flaky(0).await;
        let r = reporter(format!("{url}/nowhere"));
        r.report(DeployId(1), event(HostPhase::Done)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "a 404 is final");
    }
}

/// One release to install, from a deploy message or the desired state.
#[derive(Debug, Clone)]
pub(crate) struct InstallRequest {
    pub deploy_id: DeployId,
    pub app: AppName,
    pub version: Version,
    pub artifact: ArtifactRef,
}

/// How an install ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    Skipped,
    Failed {
        phase: HostPhase,
        rolled_back: bool,
    },
    /// This deploy already failed here; not tried again.
    AlreadyFailed,
    /// A newer request for the app came while this one waited its turn.
    Superseded,
    /// Shutdown came while waiting; nothing was changed.
    Interrupted,
}

/// A step that did not work: the phase it failed in and why.
struct StepError {
    phase: HostPhase,
    message: String,
}

impl StepError {
    fn new(phase: HostPhase, message: impl Into<String>) -> Self {
        Self {
            phase,
            message: message.into(),
        }
    }
}

enum Prepared {
    Ready,
    Interrupted,
}

/// Per-app state: installs (and restarts) of one app are serialised by
/// `install`.
#[derive(Default)]
struct AppSlot {
    install: tokio::sync::Mutex<()>,
    process: Mutex<Option<AppProcess>>,
    health: Mutex<Supervision>,
    /// The newest install request for the app: `(ticket, deploy, version)`.
    /// A request that waited for `install` while a newer one came is
    /// dropped, so a queue of deploys ends at the newest, not the oldest.
    newest: Mutex<(u64, Option<(DeployId, Version)>)>,
}

/// What the supervisor knows of one app's crashes.
#[derive(Debug, Default, Clone, Copy)]
struct Supervision {
    status: AppRunStatus,
    /// Restarts since the release was started by an install.
    restarts: u32,
    /// Crashes since the app last ran `stable_after`.
    crashes: u32,
}

impl Supervision {
    /// Counts a crash of a process that ran for `uptime`; returns how long
    /// to wait before starting it again.
    fn crashed(&mut self, uptime: Duration, policy: &RestartPolicy) -> Duration {
        if uptime >= policy.stable_after {
            self.crashes = 0;
        }
        self.crashes += 1;
        self.status = if self.crashes >= policy.failing_after {
            AppRunStatus::Failing
        } else {
            AppRunStatus::Restarting
        };
        let doublings = self.crashes.saturating_sub(1).min(20);
        policy
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(policy.max_backoff)
    }
}

impl AppSlot {
    fn supervision(&self) -> Supervision {
        self.health.lock().map(|h| *h).unwrap_or_default()
    }

    fn supervise(&self, f: impl FnOnce(&mut Supervision)) {
        match self.health.lock() {
            Ok(mut h) => f(&mut h),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Registers a request; returns its ticket.
    fn enqueue(&self, req: &InstallRequest) -> u64 {
        let mut n = match self.newest.lock() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        n.0 += 1;
        n.1 = Some((req.deploy_id, req.version.clone()));
        n.0
    }

    /// The newer request that came after `ticket`, if any.
    fn newer_than(&self, ticket: u64) -> Option<(DeployId, Version)> {
        let n = self.newest.lock().ok()?;
        (n.0 != ticket).then(|| n.1.clone()).flatten()
    }

    fn is_current(&self, p: &AppProcess) -> bool {
        self.process().is_some_and(|q| q.pid == p.pid)
    }

    fn process(&self) -> Option<AppProcess> {
        self.process.lock().map(|p| p.clone()).unwrap_or(None)
    }

    fn set_process(&self, p: Option<AppProcess>) -> Option<AppProcess> {
        match self.process.lock() {
            Ok(mut guard) => std::mem::replace(&mut *guard, p),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), p),
        }
    }
}

/// Settings of one engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub cluster: Cluster,
    pub host: HostName,
    pub layout: HostLayout,
    pub port_offset: i32,
    pub max_artifact_bytes: u64,
    pub shim: PathBuf,
    pub log_limits: shim::LogLimits,
    pub restart: RestartPolicy,
    /// Releases kept on disk per app, the current and previous included.
    pub keep_releases: usize,
    /// An artifact must be signed by one of these (never empty).
    pub trusted_keys: Vec<deploy::signing::PublicKey>,
    /// `--app-user`, resolved: who apps run as unless their release says.
    pub app_user: Option<AppUser>,
    pub download: DownloadTimeouts,
}

/// Installs and supervises the apps of one host.
pub(crate) struct Engine {
    cfg: EngineConfig,
    http: reqwest::Client,
    slots: Mutex<HashMap<AppName, Arc<AppSlot>>>,
    /// Deploys that failed on this host: a later `Sync` does not retry
    /// them (a new deploy gets a new id).
    failed: Mutex<HashSet<DeployId>>,
    /// Rung when what `installed()` says changes outside an install (a
    /// crash, a restart), so the heartbeat tells AppTracker now.
    pub(crate) changed: tokio::sync::Notify,
    /// Itself, for the watcher task of each process.
    me: Weak<Engine>,
}

impl Engine {
    pub(crate) fn new(cfg: EngineConfig, http: reqwest::Client) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            cfg,
            http,
            slots: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashSet::new()),
            changed: tokio::sync::Notify::new(),
            me: me.clone(),
        })
    }

    /// Everything needed to start (or health-check) `version` of `app`.
    fn launch<'a>(
        &'a self,
        app: &'a AppName,
        version: &'a Version,
        manifest: &'a Manifest,
        release_dir: &'a Path,
        log_file: &'a Path,
        port: Option<u16>,
    ) -> Result<Launch<'a>, String> {
        Ok(Launch {
            app,
            version,
            host: &self.cfg.host,
            release_dir,
            log_file,
            run: &manifest.run,
            port,
            shim: &self.cfg.shim,
            log_limits: self.cfg.log_limits,
            user: self.run_as(manifest)?,
        })
    }

    /// Who a release runs as here: its `[run] user`, else `--app-user`,
    /// else the grabber's own user. `None` when that is the grabber's own
    /// user (nothing to switch). A release may not ask for root on a host
    /// that runs apps as someone else, and a grabber that is not root can
    /// run apps only as itself.
    fn run_as(&self, manifest: &Manifest) -> Result<Option<AppUser>, String> {
        let user = match &manifest.run.user {
            Some(spec) => {
                let user = AppUser::resolve(spec)?;
                if let Some(host) = &self.cfg.app_user
                    && user.uid == 0
                    && host.uid != 0
                {
                    return Err(format!(
                        "the release asks to run as root (`[run] user = \"{spec}\"`), but this \
                         host runs apps as {} (--app-user)",
                        host.describe()
                    ));
                }
                user
            }
            None => match &self.cfg.app_user {
                Some(u) => u.clone(),
                None => return Ok(None),
            },
        };
        let switch = crate::user::must_switch_from_here(&user)?;
        Ok(switch.then_some(user))
    }

    /// Checks the release on disk against the digest recorded when it was
    /// installed (and, given one, the artifact it should come from).
    /// Reads every file of the release.
    async fn verify(
        &self,
        app: &AppName,
        version: &Version,
        artifact: Option<&deploy::Sha256>,
    ) -> Result<(), Unverified> {
        let layout = self.cfg.layout.clone();
        let (app, version, artifact) = (app.clone(), version.clone(), artifact.cloned());
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| verify_release(&layout, &app, &version, artifact.as_ref()))
        })
        .await
        .unwrap_or_else(|e| Err(Unverified::Mismatch(format!("the check failed: {e}"))))
    }

    /// Makes `p` the app's process and watches it: when it exits on its
    /// own (not stopped by us, not during an install), it is restarted.
    fn adopt_process(&self, app: &AppName, slot: &AppSlot, p: AppProcess) {
        slot.set_process(Some(p.clone()));
        let (me, app) = (self.me.clone(), app.clone());
        tokio::spawn(async move {
            let stable = me
                .upgrade()
                .map(|e| e.cfg.restart.stable_after)
                .unwrap_or(Duration::MAX);
            tokio::select! {
                _ = p.exited() => {}
                _ = tokio::time::sleep(stable) => {
                    // Up long enough: whatever crashes came before are
                    // forgiven. Then wait for the exit as before.
                    if let Some(e) = me.upgrade() {
                        e.stable(&app, &p);
                    }
                    p.exited().await;
                }
            }
            if let Some(engine) = me.upgrade() {
                engine.exited(&app, p).await;
            }
        });
    }

    fn stable(&self, app: &AppName, p: &AppProcess) {
        let slot = self.slot(app);
        if slot.is_current(p) && p.is_alive() {
            let was = slot.supervision().status;
            slot.supervise(|h| {
                h.crashes = 0;
                h.status = AppRunStatus::Running;
            });
            if was != AppRunStatus::Running {
                tracing::info!(%app, pid = p.pid, "app is stable again");
                self.changed.notify_one();
            }
        }
    }

    /// `p` exited. Unless it was stopped on purpose (it is no longer the
    /// slot's process) or an install is under way (the install decides),
    /// start the same release again after a backoff.
    async fn exited(&self, app: &AppName, p: AppProcess) {
        let slot = self.slot(app);
        if !slot.is_current(&p) {
            return;
        }
        let wait = {
            let Ok(_busy) = slot.install.try_lock() else {
                return;
            };
            if !slot.is_current(&p) {
                return;
            }
            let mut wait = Duration::ZERO;
            slot.supervise(|h| wait = h.crashed(p.since.elapsed(), &self.cfg.restart));
            wait
        };
        let h = slot.supervision();
        tracing::warn!(
            %app, version = %p.version, pid = p.pid, crashes = h.crashes, status = %h.status,
            "app exited on its own; starting it again in {wait:?}"
        );
        self.changed.notify_one();
        tokio::time::sleep(wait).await;
        // An install may have come meanwhile: it owns the app then.
        let Ok(_busy) = slot.install.try_lock() else {
            return;
        };
        if !slot.is_current(&p) {
            return;
        }
        let layout = &self.cfg.layout;
        let started = match self.verify(app, &p.version, None).await {
            Ok(()) => read_release_manifest(&layout.release_dir(app, &p.version))
                .and_then(|m| self.start(app, &p.version, &m)),
            Err(why) => {
                // Installed again at the next converge, downloading it.
                self.update_state(app, |s| s.healthy = None);
                Err(format!(
                    "release {} on disk cannot be trusted: {why}",
                    p.version
                ))
            }
        };
        match started {
            Ok(new) => {
                tracing::info!(%app, version = %p.version, pid = new.pid, "app restarted");
                let (pid, port) = (new.pid, new.port);
                // The state file first: whoever sees the new process in
                // `installed()` finds it recorded too.
                let restarts = slot.supervision().restarts + 1;
                self.update_state(app, |s| {
                    s.pid = Some(pid);
                    s.port = port;
                    s.restarts = restarts;
                });
                slot.supervise(|h| {
                    h.restarts += 1;
                    if h.status == AppRunStatus::Restarting {
                        h.status = AppRunStatus::Running;
                    }
                });
                self.adopt_process(app, &slot, new);
            }
            Err(e) => {
                tracing::error!(%app, version = %p.version, error = %e, "cannot restart the app");
                slot.set_process(None);
                slot.supervise(|h| h.status = AppRunStatus::Stopped);
                self.update_state(app, |s| s.pid = None);
            }
        }
        self.changed.notify_one();
    }

    #[cfg(test)]
    pub(crate) fn layout(&self) -> &HostLayout {
        &self.cfg.layout
    }

    fn slot(&self, app: &AppName) -> Arc<AppSlot> {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.entry(app.clone()).or_default().clone()
    }

    fn has_failed(&self, id: DeployId) -> bool {
        self.failed.lock().map(|f| f.contains(&id)).unwrap_or(false)
    }

    fn mark_failed(&self, id: DeployId) {
        if let Ok(mut f) = self.failed.lock() {
            f.insert(id);
        }
    }

    /// The port a release gets on this host.
    fn port_for(&self, manifest: &Manifest) -> Result<Option<u16>, String> {
        match manifest.run.port {
            None => Ok(None),
            Some(p) => {
                let shifted = i32::from(p) + self.cfg.port_offset;
                u16::try_from(shifted)
                    .ok()
                    .filter(|p| *p > 0)
                    .map(Some)
                    .ok_or_else(|| {
                        format!(
                            "port {p} shifted by {} is out of range",
                            self.cfg.port_offset
                        )
                    })
            }
        }
    }

    fn start(
        &self,
        app: &AppName,
        version: &Version,
        manifest: &Manifest,
    ) -> Result<AppProcess, String> {
        let layout = &self.cfg.layout;
        let port = self.port_for(manifest)?;
        let release_dir = layout.release_dir(app, version);
        let log_file = layout.log_file(app);
        let launch = self.launch(app, version, manifest, &release_dir, &log_file, port)?;
        self.app_dirs(app)?;
        let shared = layout.shared_dir(app);
        let owner = launch.user.clone().unwrap_or_else(AppUser::current);
        crate::user::give_to(&shared, &owner).map_err(|e| {
            format!(
                "cannot give {} to {}: {e}",
                shared.display(),
                owner.describe()
            )
        })?;
        AppProcess::start(&launch)
            .map_err(|e| format!("cannot start `{}`: {e}", manifest.run.command))
    }

    /// The app's directories with their modes: the app passes through its
    /// directory and `releases/` (0755, the grabber's) and has no business
    /// in `log/` and `digests/` (0700, the grabber's). `shared/` is given
    /// to the app's user when it starts.
    fn app_dirs(&self, app: &AppName) -> Result<(), String> {
        let layout = &self.cfg.layout;
        layout.ensure_app_dirs(app).map_err(|e| e.to_string())?;
        let modes = [
            (layout.app_dir(app), 0o755),
            (layout.releases_dir(app), 0o755),
            (layout.log_dir(app), 0o700),
            (layout.digests_dir(app), 0o700),
        ];
        for (dir, mode) in modes {
            crate::user::set_mode(&dir, mode)
                .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
        }
        Ok(())
    }

    fn update_state(&self, app: &AppName, f: impl FnOnce(&mut AppState)) {
        let layout = &self.cfg.layout;
        let mut state = match layout.read_state(app) {
            Ok(Some(s)) => s,
            Ok(None) => AppState::new(app.clone()),
            Err(e) => {
                tracing::warn!(%app, error = %e, "state file unreadable, starting a new one");
                AppState::new(app.clone())
            }
        };
        f(&mut state);
        if let Err(e) = layout.write_state(&state) {
            tracing::warn!(%app, error = %e, "cannot write state file");
        }
    }

    /// At start: adopt the process a previous grabber recorded, stop any
    /// other process of the app (one it started but died before recording,
    /// or the old release it had not stopped yet), and start `current` of
    /// every app that runs nothing. Afterwards at most one copy of each app
    /// runs, and `current` names the release it runs.
    pub(crate) async fn recover(&self) {
        let layout = &self.cfg.layout;
        let apps = match layout.list_apps() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list installed apps");
                return;
            }
        };
        for app in apps {
            self.recover_app(&app).await;
        }
    }

    async fn recover_app(&self, app: &AppName) {
        let layout = &self.cfg.layout;
        let state = layout.read_state(app).ok().flatten();
        let recorded = state.as_ref().and_then(|s| s.pid);
        let running = processes_under(&layout.releases_dir(app));
        // The recorded process, if it is still a shim leading its group
        // from a complete release of this app.
        let mut kept = recorded
            .and_then(|pid| running.iter().find(|(p, g, _)| *p == pid && *g == pid))
            .filter(|(pid, ..)| crate::process::is_shim(*pid))
            .and_then(|(pid, _, dir)| {
                let version = Version::parse(dir.file_name()?.to_str()?).ok()?;
                let manifest = read_release_manifest(dir).ok()?;
                Some((*pid, version, manifest))
            });
        // Run again only what still is what was installed. A release
        // installed by an older grabber has no digest: its process runs
        // on until the next converge installs it again.
        let mut reinstall = false;
        if let Some((pid, version, _)) = &kept {
            match self.verify(app, version, None).await {
                Ok(()) => {}
                Err(Unverified::NoRecord) => {
                    tracing::warn!(%app, %version, pid, "adopting a release installed without a digest; it is installed again at the next converge");
                    reinstall = true;
                }
                Err(why) => {
                    tracing::error!(%app, %version, pid, reason = %why, "the running release changed on disk since it was installed: stopping it; it is installed again at the next converge");
                    reinstall = true;
                    kept = None;
                }
            }
        }
        let mut groups: Vec<u32> = running.iter().map(|(_, g, _)| *g).collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            if kept.as_ref().is_some_and(|(pid, ..)| *pid == group) {
                continue;
            }
            // Only groups a grabber started: led by a shim, or the one the
            // state file names once its shim is gone (the app outlived it).
            // An operator's shell or script that merely runs from a release
            // is none of the grabber's business.
            let orphaned = recorded == Some(group) && !crate::process::pid_alive(group);
            if !(crate::process::is_shim(group) || orphaned) {
                tracing::info!(%app, group, "leaving alone a process running from a release that no shim leads");
                continue;
            }
            tracing::warn!(%app, group, "stopping a process of this app no grabber owns");
            crate::process::stop_group(group, Duration::from_secs(5)).await;
        }
        if reinstall {
            self.update_state(app, |s| s.healthy = None);
        }

        let current = match layout.read_current(app) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%app, error = %e, "cannot read current release");
                None
            }
        };
        let slot = self.slot(app);
        if let Some((pid, version, manifest)) = kept {
            if current.as_ref() != Some(&version) {
                // Killed between switching and stopping the old release:
                // `current` goes back to what runs; the install comes again.
                tracing::warn!(%app, %version, ?current, "current names another release than the one running; pointing it back");
                if let Err(e) = symlink::switch_current(layout, app, &version) {
                    tracing::warn!(%app, error = %e, "cannot switch current back");
                }
                self.update_state(app, |s| s.current = Some(version.clone()));
            }
            tracing::info!(%app, %version, pid, "adopting running app");
            let port = state.as_ref().and_then(|s| s.port);
            let stop = Duration::from_millis(manifest.run.stop_timeout_ms);
            self.adopt_process(app, &slot, AppProcess::adopt(pid, version, port, stop));
            return;
        }
        let Some(version) = current else { return };
        let manifest = match read_release_manifest(&layout.release_dir(app, &version)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%app, %version, error = %e, "cannot read the current release's manifest");
                return;
            }
        };
        if let Err(why) = self.verify(app, &version, None).await {
            tracing::warn!(%app, %version, reason = %why, "not starting the current release, which cannot be trusted; it is installed again at the next converge");
            self.update_state(app, |s| {
                s.healthy = None;
                s.pid = None;
            });
            return;
        }
        match self.start(app, &version, &manifest) {
            Ok(p) => {
                let (pid, port) = (p.pid, p.port);
                self.update_state(app, |s| {
                    s.current = Some(version.clone());
                    s.pid = Some(pid);
                    s.port = port;
                });
                self.adopt_process(app, &slot, p);
            }
            Err(e) => {
                tracing::warn!(%app, %version, error = %e, "cannot restart current release")
            }
        }
    }

    /// What the heartbeat says this host runs.
    pub(crate) fn installed(&self) -> Vec<InstalledApp> {
        let layout = &self.cfg.layout;
        let apps = layout.list_apps().unwrap_or_default();
        apps.into_iter()
            .map(|app| {
                let version = layout.read_current(&app).ok().flatten();
                let slot = self.slot(&app);
                let proc = slot.process().filter(|p| p.is_alive());
                let h = slot.supervision();
                let status = match (h.status, &proc) {
                    (AppRunStatus::Failing, _) => AppRunStatus::Failing,
                    (_, Some(_)) => AppRunStatus::Running,
                    (AppRunStatus::Restarting, None) => AppRunStatus::Restarting,
                    (_, None) => AppRunStatus::Stopped,
                };
                InstalledApp {
                    version,
                    pid: proc.as_ref().map(|p| p.pid),
                    port: proc.as_ref().and_then(|p| p.port),
                    status,
                    restarts: h.restarts,
                    app,
                }
            })
            .collect()
    }

    /// Stops every supervised app.
    pub(crate) async fn stop_all(&self) {
        let slots: Vec<Arc<AppSlot>> = match self.slots.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        };
        let stops = slots
            .into_iter()
            .filter_map(|s| s.set_process(None))
            .map(|p| async move { p.stop().await });
        futures::future::join_all(stops).await;
    }

    /// Installs one release, reporting every phase. Never returns an error:
    /// failures are reported and end in `Outcome::Failed`.
    #[tracing::instrument(skip_all, fields(deploy_id = %req.deploy_id, host = %self.cfg.host, app = %req.app, version = %req.version))]
    pub(crate) async fn install(
        &self,
        req: &InstallRequest,
        reporter: &dyn Reporter,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let slot = self.slot(&req.app);
        let ticket = slot.enqueue(req);
        let _serial = tokio::select! {
            g = slot.install.lock() => g,
            _ = shutdown.cancelled() => return Outcome::Interrupted,
        };
        let rep = Reports {
            reporter,
            deploy_id: req.deploy_id,
            cluster: &self.cfg.cluster,
            log: Mutex::new(String::new()),
        };
        if let Some((deploy, version)) = slot.newer_than(ticket) {
            tracing::info!(newer = %deploy, %version, "superseded while waiting");
            // The same deploy asked twice (message and sync): the later
            // copy does the work and the reporting.
            if deploy != req.deploy_id {
                rep.phase(
                    HostPhase::Skipped,
                    format!(
                        "superseded by deploy {deploy} ({version}), asked for while this one waited"
                    ),
                )
                .await;
            }
            return Outcome::Superseded;
        }
        // Running this version is not enough: a grabber killed between
        // the switch and the health check left it running unchecked, and
        // `current` may have been pointed elsewhere by hand (drift, which a
        // sync deploys over).
        let healthy = self
            .cfg
            .layout
            .read_state(&req.app)
            .ok()
            .flatten()
            .and_then(|s| s.healthy);
        let current = self.cfg.layout.read_current(&req.app).ok().flatten();
        if let Some(p) = slot.process()
            && p.version == req.version
            && p.is_alive()
            && healthy.as_ref() == Some(&req.version)
            && current.as_ref() == Some(&req.version)
        {
            tracing::info!(pid = p.pid, "already running this version");
            rep.phase(
                HostPhase::Skipped,
                format!("already running {} (pid {})", req.version, p.pid),
            )
            .await;
            return Outcome::Skipped;
        }
        if self.has_failed(req.deploy_id) {
            tracing::debug!("this deploy already failed here, not retrying");
            return Outcome::AlreadyFailed;
        }
        tracing::info!("installing");

        match self.prepare(req, &rep, shutdown).await {
            Ok(Prepared::Ready) => {}
            Ok(Prepared::Interrupted) => return Outcome::Interrupted,
            Err(e) => {
                tracing::warn!(phase = %e.phase, error = %e.message, "install failed");
                self.mark_failed(req.deploy_id);
                rep.failed(e.phase, false, &e.message, None).await;
                self.update_state(&req.app, |s| {
                    s.last_deploy = Some(req.deploy_id);
                    s.record(record(req, "failed"));
                });
                return Outcome::Failed {
                    phase: e.phase,
                    rolled_back: false,
                };
            }
        }
        // From here on the release is on disk; the rest runs to the end
        // even if shutdown comes, so `current` and the process agree.
        self.activate(req, &slot, &rep).await
    }

    /// Downloading, verifying, extracting: nothing the host runs is touched.
    async fn prepare(
        &self,
        req: &InstallRequest,
        rep: &Reports<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Prepared, StepError> {
        let layout = &self.cfg.layout;
        let release_dir = layout.release_dir(&req.app, &req.version);
        let mut again = None;
        if read_release_manifest(&release_dir).is_ok() {
            match self
                .verify(&req.app, &req.version, Some(&req.artifact.sha256))
                .await
            {
                Ok(()) => {
                    rep.phase(
                        HostPhase::Extracting,
                        format!("reusing release {} already on disk", req.version),
                    )
                    .await;
                    return Ok(Prepared::Ready);
                }
                Err(why) => {
                    tracing::warn!(reason = %why, "not reusing the release on disk; downloading it again");
                    // Never run it again: whatever comes next (this
                    // download, or a rollback to it) starts from the artifact.
                    if let Err(e) = std::fs::remove_dir_all(&release_dir) {
                        tracing::warn!(error = %e, "cannot remove the release on disk");
                    }
                    layout.remove_digest(&req.app, &req.version);
                    again = Some(why);
                }
            }
        }
        layout
            .ensure_dirs()
            .map_err(|e| StepError::new(HostPhase::Downloading, e.to_string()))?;
        self.app_dirs(&req.app)
            .map_err(|e| StepError::new(HostPhase::Downloading, e))?;

        let message = match again {
            Some(why) => format!(
                "release {} on disk cannot be reused ({why}): downloading it again from {}",
                req.version,
                without_query(&req.artifact.url)
            ),
            None => format!("downloading {}", without_query(&req.artifact.url)),
        };
        rep.phase(HostPhase::Downloading, message).await;
        let archive = layout.cached_artifact(&req.app, &req.version);
        let part = archive.with_extension("gz.part");
        let downloaded = tokio::select! {
            r = self.download(&req.artifact, &part) => r,
            _ = shutdown.cancelled() => {
                let _ = tokio::fs::remove_file(&part).await;
                return Ok(Prepared::Interrupted);
            }
        };
        let (sha, size) = match downloaded {
            Ok(d) => d,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(StepError::new(HostPhase::Downloading, e));
            }
        };

        rep.phase(HostPhase::Verifying, format!("{size} bytes, sha256 {sha}"))
            .await;
        if size != req.artifact.size || sha != req.artifact.sha256.as_str() {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(StepError::new(
                HostPhase::Verifying,
                format!(
                    "artifact does not match: got {size} bytes with sha256 {sha}, expected {} bytes with sha256 {}",
                    req.artifact.size, req.artifact.sha256
                ),
            ));
        }
        // The sha256 is the downloaded file's: a valid signature over it
        // means a trusted packer built these bytes. Checked before anything
        // is unpacked, and never skipped.
        if let Err(e) = deploy::signing::verify(
            &self.cfg.trusted_keys,
            &req.app,
            &req.version,
            &req.artifact.sha256,
            &req.artifact.signature,
        ) {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(StepError::new(HostPhase::Verifying, e.to_string()));
        }
        tokio::fs::rename(&part, &archive).await.map_err(|e| {
            StepError::new(
                HostPhase::Verifying,
                format!("cannot keep the artifact: {e}"),
            )
        })?;
        fault::point("verified").await;

        rep.phase(
            HostPhase::Extracting,
            format!("extracting into {}", release_dir.display()),
        )
        .await;
        let result = self.extract(req, &archive, &release_dir).await;
        // The release is on disk (or refused): the archive is not needed.
        let _ = tokio::fs::remove_file(&archive).await;
        result.map_err(|e| StepError::new(HostPhase::Extracting, e))?;
        Ok(Prepared::Ready)
    }

    /// Streams the artifact into `part`, hashing on the way; returns the
    /// hex sha256 and the size.
    async fn download(&self, artifact: &ArtifactRef, part: &Path) -> Result<(String, u64), String> {
        let limit = self.cfg.max_artifact_bytes.min(artifact.size);
        let too_big = |n: u64| {
            if n > self.cfg.max_artifact_bytes {
                format!(
                    "artifact is larger than the {} bytes this host accepts",
                    self.cfg.max_artifact_bytes
                )
            } else {
                format!(
                    "artifact is larger than the {} bytes announced",
                    artifact.size
                )
            }
        };
        let timeouts = self.cfg.download;
        let resp = tokio::time::timeout(timeouts.response, self.http.get(&artifact.url).send())
            .await
            .map_err(|_| {
                format!(
                    "cannot download {}: no answer within {:?}",
                    without_query(&artifact.url),
                    timeouts.response
                )
            })?
            .map_err(|e| {
                format!(
                    "cannot download {}: {}",
                    without_query(&artifact.url),
                    deploy::tls::error_chain(&e.without_url())
                )
            })?;
        if !resp.status().is_success() {
            return Err(format!(
                "cannot download {}: HTTP {}",
                without_query(&artifact.url),
                resp.status()
            ));
        }
        if let Some(len) = resp.content_length()
            && len > limit
        {
            return Err(too_big(len));
        }
        let mut file = tokio::fs::File::create(part)
            .await
            .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut halfway = false;
        let mut body = resp.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(timeouts.stall, body.next()).await {
                Err(_) => {
                    return Err(format!(
                        "download of {} stalled: nothing arrived for {:?}",
                        without_query(&artifact.url),
                        timeouts.stall
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(format!(
                        "download of {} broke: {}",
                        without_query(&artifact.url),
                        e.without_url()
                    ));
                }
                Ok(Some(Ok(c))) => c,
            };
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_big(size));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
            if !halfway && size * 2 >= artifact.size {
                halfway = true;
                let _ = file.flush().await;
                fault::point("downloading").await;
            }
        }
        file.sync_all()
            .await
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Unpacks into a scratch directory under `tmp/`, then renames it to
    /// `releases/<version>`.
    async fn extract(
        &self,
        req: &InstallRequest,
        archive: &Path,
        release_dir: &Path,
    ) -> Result<(), String> {
        let layout = &self.cfg.layout;
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{}-{}-", req.app, req.version))
            .tempdir_in(layout.tmp_dir())
            .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
        let (archive, dest, max) = (
            archive.to_path_buf(),
            scratch.path().to_path_buf(),
            self.cfg.max_artifact_bytes,
        );
        let span = tracing::Span::current();
        let extract::Unpacked {
            manifest,
            tree_sha256,
        } = tokio::task::spawn_blocking(move || {
            span.in_scope(|| extract::unpack_checked(&archive, &dest, max))
        })
        .await
        .map_err(|e| format!("extraction task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        if manifest.app != req.app || manifest.version != req.version {
            return Err(format!(
                "the archive holds {} {}, not {} {}",
                manifest.app, manifest.version, req.app, req.version
            ));
        }
        fault::point("extracted").await;
        // Recorded before the release is in place, so a complete release
        // always has its digest (a digest without a release is harmless).
        let digest = deploy::layout::ReleaseDigest {
            artifact_sha256: req.artifact.sha256.clone(),
            tree_sha256,
        };
        layout
            .write_digest(&req.app, &req.version, &digest)
            .map_err(|e| format!("cannot record the release's digest: {e}"))?;
        // A leftover of an interrupted earlier attempt is incomplete by
        // construction (complete ones were reused above): replace it.
        if release_dir.exists() {
            let _ = std::fs::remove_dir_all(release_dir);
        }
        std::fs::rename(scratch.path(), release_dir).map_err(|e| {
            format!(
                "cannot move the release into {}: {e}",
                release_dir.display()
            )
        })?;
        let _ = deploy::layout::sync_dir(&layout.releases_dir(&req.app));
        Ok(())
    }

    /// Switching, starting, checking, and the rollback when one fails.
    async fn activate(&self, req: &InstallRequest, slot: &AppSlot, rep: &Reports<'_>) -> Outcome {
        let layout = &self.cfg.layout;
        let app = &req.app;
        let release_dir = layout.release_dir(app, &req.version);
        let manifest = match read_release_manifest(&release_dir) {
            Ok(m) => m,
            Err(e) => return self.fail_early(req, rep, HostPhase::Extracting, e).await,
        };
        let state = layout.read_state(app).ok().flatten();
        let was_current = layout.read_current(app).ok().flatten();
        // Where a rollback goes: the release that ran before, unless it is
        // this very version (a crashed app being reinstalled).
        let rollback_to = match &was_current {
            Some(v) if *v == req.version => state.as_ref().and_then(|s| s.previous.clone()),
            other => other.clone(),
        }
        .filter(|v| read_release_manifest(&layout.release_dir(app, v)).is_ok());

        // A user the release cannot run as fails the host in `starting`,
        // before anything running changes.
        if let Err(e) = self.run_as(&manifest) {
            let message = format!("cannot start {}: {e}", req.version);
            return self
                .fail_early(req, rep, HostPhase::Starting, message)
                .await;
        }
        rep.phase(
            HostPhase::Switching,
            format!("current -> releases/{}", req.version),
        )
        .await;
        if let Some(runtime) = &manifest.runtime {
            let port = self.port_for(&manifest).unwrap_or(None);
            let log_file = layout.log_file(app);
            let checked =
                match self.launch(app, &req.version, &manifest, &release_dir, &log_file, port) {
                    Ok(launch) => {
                        crate::runtime::check(runtime, launch.env(), launch.user.as_ref()).await
                    }
                    Err(e) => Err(e),
                };
            if let Err(e) = checked {
                let message = format!("not switching: {e}");
                return self
                    .fail_early(req, rep, HostPhase::Switching, message)
                    .await;
            }
        }
        if let Err(e) = symlink::switch_current(layout, app, &req.version) {
            return self
                .fail_early(req, rep, HostPhase::Switching, e.to_string())
                .await;
        }
        self.update_state(app, |s| {
            s.current = Some(req.version.clone());
            s.healthy = None;
            if rollback_to.is_some() {
                s.previous = rollback_to.clone();
            }
        });
        fault::point("switched").await;

        rep.phase(
            HostPhase::Starting,
            format!("starting `{}`", manifest.run.command),
        )
        .await;
        if let Some(old) = slot.set_process(None) {
            old.stop().await;
        }
        let proc = match self.start(app, &req.version, &manifest) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .roll_back(req, slot, rep, HostPhase::Starting, e, None, rollback_to)
                    .await;
            }
        };
        fault::point("started").await;
        self.update_state(app, |s| {
            s.pid = Some(proc.pid);
            s.port = proc.port;
            s.restarts = 0;
        });
        slot.supervise(|h| *h = Supervision::default());
        self.adopt_process(app, slot, proc.clone());
        fault::point("checking").await;

        rep.phase(
            HostPhase::Checking,
            health::describe(&manifest.health.check),
        )
        .await;
        let log_file = layout.log_file(app);
        let checked = match self.launch(
            app,
            &req.version,
            &manifest,
            &release_dir,
            &log_file,
            proc.port,
        ) {
            Ok(launch) => health::check(&manifest.health, &proc, &launch, &self.http).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            return self
                .roll_back(
                    req,
                    slot,
                    rep,
                    HostPhase::Checking,
                    e,
                    Some(proc),
                    rollback_to,
                )
                .await;
        }

        self.update_state(app, |s| {
            s.healthy = Some(req.version.clone());
            s.last_deploy = Some(req.deploy_id);
            s.record(record(req, "done"));
        });
        tracing::info!(pid = proc.pid, "release is up");
        self.prune_releases(app, &req.version, rollback_to.as_ref());
        rep.phase(
            HostPhase::Done,
            format!("running {} (pid {})", req.version, proc.pid),
        )
        .await;
        Outcome::Done
    }

    /// Keeps `releases/` bounded: the current and previous releases stay,
    /// plus the most recently installed others up to `keep_releases`.
    fn prune_releases(&self, app: &AppName, current: &Version, previous: Option<&Version>) {
        let layout = &self.cfg.layout;
        let mut others: Vec<(std::time::SystemTime, Version)> = layout
            .list_releases(app)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v != current && Some(v) != previous)
            .map(|v| {
                let mtime = std::fs::metadata(layout.release_dir(app, &v))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (mtime, v)
            })
            .collect();
        let kept = 1 + usize::from(previous.is_some());
        let room = self.cfg.keep_releases.max(2).saturating_sub(kept);
        if others.len() <= room {
            return;
        }
        others.sort();
        let drop_count = others.len() - room;
        for (_, v) in others.into_iter().take(drop_count) {
            let dir = layout.release_dir(app, &v);
            layout.remove_digest(app, &v);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(version = %v, "removed old release"),
                Err(e) => tracing::warn!(version = %v, error = %e, "cannot remove old release"),
            }
        }
    }

    /// A failure before anything running changed.
    async fn fail_early(
        &self,
        req: &InstallRequest,
        rep: &Reports<'_>,
        phase: HostPhase,
        message: String,
    ) -> Outcome {
        tracing::warn!(%phase, error = %message, "install failed");
        self.mark_failed(req.deploy_id);
        rep.failed(phase, false, &message, None).await;
        Outcome::Failed {
            phase,
            rolled_back: false,
        }
    }

    /// The new release did not come up: stop it, put the previous one back
    /// (or nothing, if there was none) and report why.
    #[allow(clippy::too_many_arguments)]
    async fn roll_back(
        &self,
        req: &InstallRequest,
        slot: &AppSlot,
        rep: &Reports<'_>,
        phase: HostPhase,
        message: String,
        new: Option<AppProcess>,
        rollback_to: Option<Version>,
    ) -> Outcome {
        tracing::warn!(%phase, error = %message, ?rollback_to, "release failed, rolling back");
        self.mark_failed(req.deploy_id);
        let layout = &self.cfg.layout;
        let app = &req.app;
        slot.set_process(None);
        if let Some(p) = new {
            p.stop().await;
        }
        let app_log = log_since_start(&layout.log_file(app), FAILURE_LOG_BYTES);

        let mut rolled_back = false;
        let note = match rollback_to {
            Some(prev) => match self.restore(app, &prev).await {
                Ok((p, health)) => {
                    rolled_back = true;
                    let (pid, port) = (p.pid, p.port);
                    let healthy = health.is_ok().then(|| prev.clone());
                    self.update_state(app, |s| {
                        s.current = Some(prev.clone());
                        s.healthy = healthy;
                        s.pid = Some(pid);
                        s.port = port;
                        s.restarts = 0;
                    });
                    slot.supervise(|h| *h = Supervision::default());
                    self.adopt_process(app, slot, p);
                    match health {
                        Ok(()) => format!("; rolled back to {prev}, which is healthy"),
                        Err(e) => {
                            tracing::error!(%prev, error = %e, "rolled back, but the previous release is unhealthy");
                            format!("; rolled back to {prev}, but it is unhealthy too: {e}")
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(%prev, error = %e, "rollback failed: nothing runs");
                    self.update_state(app, |s| {
                        s.current = layout.read_current(app).ok().flatten();
                        s.pid = None;
                        s.port = None;
                    });
                    format!("; rollback to {prev} failed: {e}")
                }
            },
            None => {
                if let Err(e) = symlink::remove_current(layout, app) {
                    tracing::warn!(error = %e, "cannot remove current");
                }
                self.update_state(app, |s| {
                    s.current = None;
                    s.pid = None;
                    s.port = None;
                });
                "; no previous release to roll back to".to_string()
            }
        };
        self.update_state(app, |s| {
            s.last_deploy = Some(req.deploy_id);
            s.record(record(
                req,
                if rolled_back { "rolled_back" } else { "failed" },
            ));
        });
        let message = format!("{message}{note}");
        rep.failed(phase, rolled_back, &message, app_log).await;
        Outcome::Failed { phase, rolled_back }
    }

    /// Points `current` back at `version`, starts it and runs its health
    /// check, so a host reports `rolled_back` only once the previous release
    /// serves again (or says that it does not).
    async fn restore(
        &self,
        app: &AppName,
        version: &Version,
    ) -> Result<(AppProcess, Result<(), String>), String> {
        let layout = &self.cfg.layout;
        let release_dir = layout.release_dir(app, version);
        let manifest = read_release_manifest(&release_dir)?;
        // No artifact to download it again from here: an untrusted
        // release is not run at all.
        self.verify(app, version, None)
            .await
            .map_err(|why| format!("release {version} on disk cannot be trusted: {why}"))?;
        symlink::switch_current(layout, app, version).map_err(|e| e.to_string())?;
        let proc = self.start(app, version, &manifest)?;
        let log_file = layout.log_file(app);
        let health = match self.launch(app, version, &manifest, &release_dir, &log_file, proc.port)
        {
            Ok(launch) => health::check(&manifest.health, &proc, &launch, &self.http).await,
            Err(e) => Err(e),
        };
        Ok((proc, health))
    }
}

/// [`Engine::verify`]'s blocking part.
fn verify_release(
    layout: &HostLayout,
    app: &AppName,
    version: &Version,
    artifact: Option<&deploy::Sha256>,
) -> Result<(), Unverified> {
    let recorded = match layout.read_digest(app, version) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(Unverified::NoRecord),
        Err(e) => return Err(Unverified::Mismatch(e.to_string())),
    };
    if let Some(want) = artifact
        && *want != recorded.artifact_sha256
    {
        return Err(Unverified::Mismatch(format!(
            "it was installed from the artifact with sha256 {}, not {want}",
            recorded.artifact_sha256
        )));
    }
    let started = std::time::Instant::now();
    let now = extract::tree_digest(&layout.release_dir(app, version))
        .map_err(|e| Unverified::Mismatch(format!("cannot read it: {e}")))?;
    tracing::debug!(%app, %version, elapsed = ?started.elapsed(), "checked the release on disk");
    if now != recorded.tree_sha256 {
        return Err(Unverified::Mismatch(
            "its files changed since it was installed".to_string(),
        ));
    }
    Ok(())
}

fn record(req: &InstallRequest, outcome: &str) -> InstallRecord {
    InstallRecord {
        version: req.version.clone(),
        deploy_id: Some(req.deploy_id),
        at: Timestamp::now(),
        outcome: outcome.into(),
    }
}

/// The manifest of an extracted release; its presence marks the release as
/// complete (releases are renamed into place whole).
pub(crate) fn read_release_manifest(release_dir: &Path) -> Result<Manifest, String> {
    let path: PathBuf = release_dir.join(MANIFEST_PATH);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid manifest {}: {e}", path.display()))
}

/// Builds and sends the events of one install, and keeps its log: a
/// failure sends the whole install log and the app's output since it
/// started (up to `FAILURE_LOG_BYTES`), not just a tail.
struct Reports<'a> {
    reporter: &'a dyn Reporter,
    deploy_id: DeployId,
    cluster: &'a Cluster,
    log: Mutex<String>,
}

impl Reports<'_> {
    fn note(&self, phase: impl std::fmt::Display, message: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.push_str(&format!("{} {phase}: {message}\n", Timestamp::now()));
        }
    }

    async fn phase(&self, phase: HostPhase, message: String) {
        tracing::debug!(%phase, %message, "phase");
        self.note(phase, &message);
        self.reporter
            .report(
                self.deploy_id,
                HostEvent {
                    cluster: self.cluster.clone(),
                    phase,
                    failed_phase: None,
                    rolled_back: false,
                    message: Some(message),
                    log_tail: None,
                },
            )
            .await;
    }

    async fn failed(
        &self,
        phase: HostPhase,
        rolled_back: bool,
        message: &str,
        app_log: Option<String>,
    ) {
        self.note(format!("failed in {phase}"), message);
        let mut log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        if let Some(app_log) = app_log {
            log.push_str("--- the app's output since it started ---\n");
            log.push_str(&app_log);
        }
        let log_tail = Some(log);
        self.reporter
            .report(
                self.deploy_id,
                HostEvent {
                    cluster: self.cluster.clone(),
                    phase: HostPhase::Failed,
                    failed_phase: Some(phase),
                    rolled_back,
                    message: Some(message.to_string()),
                    log_tail,
                },
            )
            .await;
    }
}

#[cfg(test)]
mod tests;
