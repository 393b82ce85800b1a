//! The install engine: downloads, verifies, extracts, switches `current`,
//! restarts and health-checks one release of one app, and rolls back when
//! the new release does not come up. It owns the supervised processes of
//! one host, and knows nothing of the bus: a `Reporter` receives the phases.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use deploy::layout::{AppState, HostLayout, InstallRecord};
use deploy::{AppName, Cluster, DeployAction, DeployId, HostName, HostPhase, Release, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::user::AppUser;
use crate::{RestartPolicy, shim};

mod activate;
mod config;
mod delta;
mod download;
mod error;
mod hooks;
mod prepare;
mod processes;
mod release_phase;
mod report;
mod shared;
mod slot;
mod start;
mod supervise;
mod verify;

pub(crate) use delta::PEER_AUTH_SCHEME;
pub(crate) use download::DownloadTimeouts;
use report::Reports;
pub(crate) use report::{ClientReporter, Reporter};
use slot::AppSlot;

/// How much of the app's log (since its start) a failure report carries.
const FAILURE_LOG_BYTES: u64 = 1024 * 1024;

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

enum Prepared {
    Ready,
    Interrupted,
}

/// Settings of one engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub cluster: Cluster,
    pub host: HostName,
    pub layout: HostLayout,
    pub port_offset: i32,
    pub port_range: std::ops::RangeInclusive<u16>,
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
    /// The ports given to apps (and to their other process types' copies)
    /// that pin none, so two apps installing at once never get the same one.
    ports: Mutex<HashMap<(AppName, Option<processes::CopyId>), u16>>,
    /// Rung when what `installed()` says changes outside an install (a
    /// crash, a restart), so the heartbeat tells AppTracker now.
    pub(crate) changed: tokio::sync::Notify,
    /// Clients of the peers fetched from, by certificate fingerprint.
    peer_clients: Mutex<HashMap<String, reqwest::Client>>,
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
            ports: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            peer_clients: Mutex::new(HashMap::new()),
            me: me.clone(),
        })
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

    /// Installs one release, reporting every phase. Never returns an error:
    /// failures are reported and end in `Outcome::Failed`.
    #[tracing::instrument(skip_all, fields(deploy_id = %req.deploy_id, host = %self.cfg.host, app = %req.app, version = %req.version))]
    pub(crate) async fn install(
        &self,
        req: &Release,
        reporter: &dyn Reporter,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let slot = self.slot(&req.app);
        let ticket = slot.enqueue(req);
        let _serial = tokio::select! {
            g = slot.install.lock() => g,
            _ = shutdown.cancelled() => return Outcome::Interrupted,
        };
        let rep = Reports::new(reporter, req.deploy_id, &self.cfg.cluster);
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
        let state = self.cfg.layout.read_state(&req.app).ok().flatten();
        if req.action == DeployAction::Stop {
            return self.stop_app(req, &slot, &rep, state.as_ref()).await;
        }
        let healthy = state.as_ref().and_then(|s| s.healthy.clone());
        let current = self.cfg.layout.read_current(&req.app).ok().flatten();
        // A restart happens once per deploy, whoever asks again (a sync).
        let restarted = req.action != DeployAction::Restart
            || state.as_ref().and_then(|s| s.last_deploy) == Some(req.deploy_id);
        // Nor are its files: changed by hand (drift), the release is
        // installed again from its artifact (`prepare` refuses to reuse it).
        let running_it = slot.process().filter(|p| {
            p.version == req.version
                && p.is_alive()
                && healthy.as_ref() == Some(&req.version)
                && current.as_ref() == Some(&req.version)
                && state.as_ref().map_or(0, |s| s.config) == req.config_version
                && restarted
        });
        let intact = match running_it {
            Some(_) => match self
                .verify(&req.app, &req.version, Some(&req.artifact.sha256))
                .await
            {
                // Installed by an older grabber: nothing to compare with.
                Ok(()) | Err(verify::Unverified::NoRecord) => true,
                Err(why) => {
                    tracing::warn!(reason = %why, "running this version, but its files changed: installing it again");
                    false
                }
            },
            None => false,
        };
        if let Some(p) = running_it.filter(|_| intact) {
            tracing::info!(pid = p.pid, "already running this version");
            rep.phase(
                HostPhase::Skipped,
                format!(
                    "already running {}{} (pid {})",
                    req.version,
                    activate::config_note(req.config_version),
                    p.pid
                ),
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
                tracing::warn!(phase = %e.phase, error = %e, retryable = e.is_retryable(),
                    "install failed");
                self.mark_failed(req.deploy_id);
                rep.failed(&e, false, "", None).await;
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
}

impl Engine {
    /// `deploy stop`: runs its `pre_stop` hook, stops the app and keeps it
    /// down (the state says `stopped`, which the supervisor, a sync and a
    /// grabber restart obey) until a start or a deploy.
    async fn stop_app(
        &self,
        req: &Release,
        slot: &AppSlot,
        rep: &Reports<'_>,
        state: Option<&AppState>,
    ) -> Outcome {
        let running = slot.process().filter(|p| p.is_alive());
        if state.is_some_and(|s| s.stopped) && running.is_none() {
            rep.phase(HostPhase::Skipped, "already stopped".into())
                .await;
            return Outcome::Skipped;
        }
        let what = match &running {
            Some(p) => format!("{} (pid {})", p.version, p.pid),
            None => "nothing runs".into(),
        };
        rep.phase(HostPhase::Switching, format!("stopping {what}"))
            .await;
        // Its `pre_stop` hook first (drain it), as before any stop; a
        // failure leaves it running.
        if let Err(e) = self.pre_stop(&req.app, slot, rep).await {
            return self
                .fail_early(req, rep, e.in_phase(HostPhase::Switching))
                .await;
        }
        // Out of the slot first, so the supervisor does not restart it.
        if let Some(p) = slot.set_process(None) {
            p.stop().await;
        }
        self.stop_copies(slot).await;
        self.update_state(&req.app, |s| {
            s.stopped = true;
            s.pid = None;
            s.last_deploy = Some(req.deploy_id);
            s.record(record(req, "stopped"));
        });
        self.changed.notify_one();
        tracing::info!("app stopped");
        rep.phase(HostPhase::Done, format!("stopped {what}")).await;
        Outcome::Done
    }
}

fn record(req: &Release, outcome: &str) -> InstallRecord {
    InstallRecord {
        version: req.version.clone(),
        deploy_id: Some(req.deploy_id),
        at: Timestamp::now(),
        outcome: outcome.into(),
    }
}

#[cfg(test)]
mod tests;
