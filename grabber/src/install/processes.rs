//! Process types besides the web process (`[processes]` in the manifest):
//! every copy of each is started after the web process from the same
//! release, with its own log file (`log/<app>.<type>.<n>.log`) and its own
//! `PORT` when it has one, health-checked (or watched through the grace)
//! and baked with the web process, restarted on its own crash with the same
//! backoff, and stopped with the web process on a switch or a rollback.

use std::path::PathBuf;
use std::time::Duration;

use deploy::{
    AppName, AppRunStatus, HealthCheck, HealthSpec, InstalledApp, InstalledProcess, Manifest,
    ProcessName, ProcessSpec, Version,
};

use super::error::InstallErrorKind;
use super::slot::{AppSlot, Supervision};
use super::verify::read_release_manifest;
use super::{Engine, FAILURE_LOG_BYTES};
use crate::health;
use crate::process::{AppProcess, log_since_start};

/// One copy of a process type: `worker.2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CopyId {
    pub process: ProcessName,
    /// From 1.
    pub index: u32,
}

impl std::fmt::Display for CopyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.process, self.index)
    }
}

/// A copy the slot supervises: its process while one runs, and what its
/// supervisor knows of its crashes.
#[derive(Debug)]
pub(super) struct ProcessCopy {
    pub(super) id: CopyId,
    pub(super) process: Option<AppProcess>,
    pub(super) supervision: Supervision,
}

/// Every copy a release runs besides its web process, in order.
pub(super) fn copies(manifest: &Manifest) -> Vec<(CopyId, &ProcessSpec)> {
    manifest
        .processes
        .iter()
        .filter(|(name, _)| !name.is_web())
        .flat_map(|(name, spec)| {
            (1..=spec.count).map(move |index| {
                let id = CopyId {
                    process: name.clone(),
                    index,
                };
                (id, spec)
            })
        })
        .collect()
}

/// What a copy runs: the release's manifest with `[run]`'s command and
/// port replaced by the copy's (environment, user, paths and stop timeout
/// are shared), and the health check it must pass.
fn as_run(manifest: &Manifest, spec: &ProcessSpec) -> (Manifest, HealthSpec) {
    let mut m = manifest.clone();
    m.run.command = spec.command.clone();
    m.run.port = spec.port;
    let health = spec.health.clone().unwrap_or_else(|| HealthSpec {
        check: HealthCheck::Running,
        ..manifest.health.clone()
    });
    (m, health)
}

impl AppSlot {
    fn with_copies<T>(&self, f: impl FnOnce(&mut Vec<ProcessCopy>) -> T) -> T {
        match self.copies.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The copy's process, when `p` is still it (not stopped on purpose
    /// or replaced).
    fn is_current_copy(&self, id: &CopyId, p: &AppProcess) -> bool {
        self.with_copies(|c| {
            c.iter()
                .any(|c| c.id == *id && c.process.as_ref().is_some_and(|q| q.pid == p.pid))
        })
    }

    /// The copies' running processes, in order.
    pub(super) fn copy_processes(&self) -> Vec<(CopyId, AppProcess)> {
        self.with_copies(|c| {
            c.iter()
                .filter_map(|c| Some((c.id.clone(), c.process.clone()?)))
                .collect()
        })
    }
}

impl Engine {
    /// Where a copy's output goes, beside the web process's log.
    pub(super) fn copy_log_file(&self, app: &AppName, id: &CopyId) -> PathBuf {
        self.cfg.layout.log_dir(app).join(format!("{app}.{id}.log"))
    }

    /// A copy's `PORT`: its type's pinned port shifted by the host's offset
    /// plus the copy's index, else one of the range when its health check
    /// needs a port, else none.
    fn copy_port(
        &self,
        app: &AppName,
        id: &CopyId,
        spec: &ProcessSpec,
    ) -> Result<Option<u16>, String> {
        if let Some(p) = spec.port {
            let shifted = i64::from(p) + i64::from(id.index) - 1 + i64::from(self.cfg.port_offset);
            return u16::try_from(shifted)
                .ok()
                .filter(|p| *p > 0)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "port {p} of `{}` for copy {} shifted by {} is out of range",
                        id.process, id.index, self.cfg.port_offset
                    )
                });
        }
        let needs_port = matches!(
            spec.health.as_ref().map(|h| &h.check),
            Some(HealthCheck::Http { .. } | HealthCheck::Tcp)
        );
        if needs_port {
            self.allocated_port(app, Some(id)).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Starts one copy of `version` (whose web process is started).
    fn start_copy(
        &self,
        app: &AppName,
        version: &Version,
        manifest: &Manifest,
        id: &CopyId,
        spec: &ProcessSpec,
    ) -> Result<AppProcess, InstallErrorKind> {
        let fail = |e: String| InstallErrorKind::Start(format!("cannot start {id}: {e}"));
        let port = self.copy_port(app, id, spec).map_err(fail)?;
        let (m, _) = as_run(manifest, spec);
        let release_dir = self.cfg.layout.release_dir(app, version);
        let log_file = self.copy_log_file(app, id);
        let launch = self
            .launch(app, version, &m, &release_dir, &log_file, port)
            .map_err(fail)?;
        AppProcess::start(&launch).map_err(|e| fail(format!("`{}`: {e}", spec.command)))
    }

    /// Starts every copy of `version` besides its web process and
    /// supervises them. On an error the copies already started stay the
    /// slot's, for the caller's rollback to stop.
    pub(super) fn start_copies(
        &self,
        app: &AppName,
        slot: &AppSlot,
        version: &Version,
        manifest: &Manifest,
    ) -> Result<(), InstallErrorKind> {
        for (id, spec) in copies(manifest) {
            let p = self.start_copy(app, version, manifest, &id, spec)?;
            tracing::info!(host = %self.cfg.host, %app, %version, copy = %id, pid = p.pid, port = ?p.port, "started process");
            slot.with_copies(|c| {
                c.push(ProcessCopy {
                    id: id.clone(),
                    process: None,
                    supervision: Supervision::default(),
                })
            });
            self.adopt_copy(app, slot, &id, p);
        }
        Ok(())
    }

    /// Stops every copy of the slot (before its web process changes).
    pub(super) async fn stop_copies(&self, slot: &AppSlot) {
        let procs: Vec<AppProcess> =
            slot.with_copies(|c| c.drain(..).filter_map(|c| c.process).collect());
        futures::future::join_all(procs.iter().map(AppProcess::stop)).await;
    }

    /// Makes `p` the copy's process and watches it, like the web process:
    /// forgiven its crashes once up `stable_after`, restarted when it exits
    /// on its own.
    fn adopt_copy(&self, app: &AppName, slot: &AppSlot, id: &CopyId, p: AppProcess) {
        slot.with_copies(|c| {
            if let Some(c) = c.iter_mut().find(|c| c.id == *id) {
                c.process = Some(p.clone());
            }
        });
        let (me, app, id) = (self.me.clone(), app.clone(), id.clone());
        tokio::spawn(async move {
            let stable = me
                .upgrade()
                .map(|e| e.cfg.restart.stable_after)
                .unwrap_or(Duration::MAX);
            tokio::select! {
                _ = p.exited() => {}
                _ = tokio::time::sleep(stable) => {
                    if let Some(e) = me.upgrade() {
                        let slot = e.slot(&app);
                        if slot.is_current_copy(&id, &p) && p.is_alive() {
                            slot.with_copies(|c| if let Some(c) = c.iter_mut().find(|c| c.id == id) {
                                c.supervision.crashes = 0;
                                c.supervision.status = AppRunStatus::Running;
                            });
                        }
                    }
                    p.exited().await;
                }
            }
            if let Some(engine) = me.upgrade() {
                engine.copy_exited(&app, &id, p).await;
            }
        });
    }

    /// A copy exited. Unless it was stopped on purpose or an install is
    /// under way (the install decides), start it again after a backoff.
    async fn copy_exited(&self, app: &AppName, id: &CopyId, p: AppProcess) {
        let slot = self.slot(app);
        let wait = {
            let Ok(_busy) = slot.install.try_lock() else {
                return;
            };
            if !slot.is_current_copy(id, &p) {
                return;
            }
            let policy = &self.cfg.restart;
            slot.with_copies(|c| {
                c.iter_mut().find(|c| c.id == *id).map(|c| {
                    (
                        c.supervision.crashed(p.since.elapsed(), policy),
                        c.supervision,
                    )
                })
            })
        };
        let Some((wait, h)) = wait else { return };
        tracing::warn!(
            host = %self.cfg.host, %app, version = %p.version, copy = %id, pid = p.pid, crashes = h.crashes,
            status = %h.status, "process exited on its own; starting it again in {wait:?}"
        );
        self.changed.notify_one();
        tokio::time::sleep(wait).await;
        let Ok(_busy) = slot.install.try_lock() else {
            return;
        };
        if !slot.is_current_copy(id, &p) {
            return;
        }
        let started = match self.verify(app, &p.version, None).await {
            Ok(()) => read_release_manifest(&self.cfg.layout.release_dir(app, &p.version))
                .and_then(|m| {
                    let spec = m.processes.get(&id.process).ok_or_else(|| {
                        InstallErrorKind::Start(format!(
                            "the release has no process `{}`",
                            id.process
                        ))
                    })?;
                    self.start_copy(app, &p.version, &m, id, spec)
                }),
            Err(why) => Err(InstallErrorKind::Untrusted {
                version: p.version.clone(),
                why,
            }),
        };
        match started {
            Ok(new) => {
                tracing::info!(host = %self.cfg.host, %app, version = %p.version, copy = %id, pid = new.pid, "process restarted");
                slot.with_copies(|c| {
                    if let Some(c) = c.iter_mut().find(|c| c.id == *id) {
                        c.supervision.restarts += 1;
                        if c.supervision.status == AppRunStatus::Restarting {
                            c.supervision.status = AppRunStatus::Running;
                        }
                    }
                });
                self.adopt_copy(app, &slot, id, new);
            }
            Err(e) => {
                tracing::error!(host = %self.cfg.host, %app, version = %p.version, copy = %id, error = %e, "cannot restart the process");
                slot.with_copies(|c| {
                    if let Some(c) = c.iter_mut().find(|c| c.id == *id) {
                        c.process = None;
                        c.supervision.status = AppRunStatus::Stopped;
                    }
                });
            }
        }
        self.changed.notify_one();
    }

    /// Checks every copy of `version`: its own health check (only an
    /// answer from its own process group counts), or, without one, that it
    /// stays up through the web process's grace. The first failure, naming
    /// the copy.
    pub(super) async fn check_copies(
        &self,
        app: &AppName,
        slot: &AppSlot,
        version: &Version,
        manifest: &Manifest,
    ) -> Result<(), String> {
        let running = slot.copy_processes();
        let specs = copies(manifest);
        let release_dir = self.cfg.layout.release_dir(app, version);
        let checks = running.into_iter().filter_map(|(id, p)| {
            let (_, spec) = specs.iter().find(|(i, _)| *i == id)?;
            let (m, health) = as_run(manifest, spec);
            let log_file = self.copy_log_file(app, &id);
            let release_dir = &release_dir;
            Some(async move {
                let launch = self.launch(app, version, &m, release_dir, &log_file, p.port)?;
                health::check(&health, &p, &launch, &self.http, &self.cfg.layout)
                    .await
                    .map_err(|e| format!("{id}: {e} (its log: log/{app}.{id}.log)"))
            })
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ())
    }

    /// Whether every copy is still up `bake` from now; the first that
    /// exits fails it, named.
    pub(super) async fn copies_stay_up(
        &self,
        app: &AppName,
        slot: &AppSlot,
        bake: Duration,
    ) -> Result<(), String> {
        if bake.is_zero() {
            return Ok(());
        }
        let passed = tokio::time::Instant::now();
        let running = slot.copy_processes();
        let outs = futures::future::join_all(running.iter().map(|(_, p)| p.survives(bake))).await;
        match running.iter().zip(outs).find(|(_, up)| !up) {
            None => Ok(()),
            Some(((id, _), _)) => Err(format!(
                "{id} exited {:.1?} after passing its health check (bake {bake:?}; its log: \
                 log/{app}.{id}.log)",
                passed.elapsed(),
            )),
        }
    }

    /// Starts and checks the copies of `version`, a release rolled back
    /// to, after its web process.
    pub(super) async fn restore_copies(
        &self,
        app: &AppName,
        slot: &AppSlot,
        version: &Version,
    ) -> Result<(), String> {
        let manifest = read_release_manifest(&self.cfg.layout.release_dir(app, version))
            .map_err(|e| e.to_string())?;
        self.start_copies(app, slot, version, &manifest)
            .map_err(|e| e.to_string())?;
        self.check_copies(app, slot, version, &manifest).await
    }

    /// Every process of the app, the web process first, when it runs more
    /// than that one; else none (the web process is the app's row).
    pub(super) fn installed_processes(
        &self,
        slot: &AppSlot,
        web: &InstalledApp,
    ) -> Vec<InstalledProcess> {
        let copies: Vec<InstalledProcess> = slot.with_copies(|c| {
            c.iter()
                .map(|c| {
                    let alive = c.process.as_ref().filter(|p| p.is_alive());
                    InstalledProcess {
                        process: c.id.process.clone(),
                        index: c.id.index,
                        pid: alive.map(|p| p.pid),
                        port: alive.and_then(|p| p.port),
                        status: run_status(c.supervision.status, alive.is_some()),
                        restarts: c.supervision.restarts,
                    }
                })
                .collect()
        });
        if copies.is_empty() {
            return copies;
        }
        let web = InstalledProcess {
            process: ProcessName::web(),
            index: 1,
            pid: web.pid,
            port: web.port,
            status: web.status,
            restarts: web.restarts,
        };
        std::iter::once(web).chain(copies).collect()
    }

    /// `, worker.1 pid 12, worker.2 pid 13`: the copies for a message.
    pub(super) fn describe_copies(&self, slot: &AppSlot) -> String {
        slot.copy_processes()
            .iter()
            .map(|(id, p)| format!(", {id} pid {}", p.pid))
            .collect()
    }

    /// At start, beside a web process adopted or started again: the
    /// copies of its release, started afresh (a previous grabber's were
    /// stopped with every group it did not record).
    pub(super) fn recover_copies(
        &self,
        app: &AppName,
        slot: &AppSlot,
        version: &Version,
        manifest: &Manifest,
    ) {
        if let Err(e) = self.start_copies(app, slot, version, manifest) {
            tracing::warn!(host = %self.cfg.host, %app, %version, error = %e, "cannot start the release's other processes");
        }
    }

    /// Refuses a release when a pinned port of one of its copies is held
    /// by another app or process, naming the copy and the holder, before
    /// anything running changes (as for the web process's pinned port). The
    /// app's own processes may hold it: they are stopped first.
    pub(super) fn copy_ports_free(&self, app: &AppName, manifest: &Manifest) -> Result<(), String> {
        let app_dir = self.cfg.layout.app_dir(app);
        for (id, spec) in copies(manifest) {
            if spec.port.is_none() {
                continue;
            }
            if let Some(port) = self.copy_port(app, &id, spec)? {
                crate::ports::check_free(port, &self.cfg.layout, |pid| {
                    crate::ports::runs_from(pid, &app_dir)
                })
                .map_err(|e| format!("{id}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The output since its start of the first copy that exited (the one
    /// that failed an install, as a rule), headed by its name, for the
    /// failure report beside the web process's output.
    pub(super) fn exited_copy_log(&self, app: &AppName, slot: &AppSlot) -> Option<String> {
        let id = slot.with_copies(|c| {
            c.iter()
                .find(|c| c.process.as_ref().is_some_and(|p| !p.is_alive()))
                .map(|c| c.id.clone())
        })?;
        let text = log_since_start(&self.copy_log_file(app, &id), FAILURE_LOG_BYTES / 4)?;
        Some(format!(
            "--- {id}'s output since it started (log/{app}.{id}.log) ---\n{text}"
        ))
    }
}

/// What a process's supervisor and its liveness make of it, by the web
/// process's rule.
pub(super) fn run_status(supervised: AppRunStatus, alive: bool) -> AppRunStatus {
    match (supervised, alive) {
        (AppRunStatus::Failing, _) => AppRunStatus::Failing,
        (_, true) => AppRunStatus::Running,
        (AppRunStatus::Restarting, false) => AppRunStatus::Restarting,
        (_, false) => AppRunStatus::Stopped,
    }
}
