//! Supervising the apps of a host: adopting and watching their processes,
//! restarting one that exits on its own (with backoff), recovering what a
//! previous grabber left at start, and what the heartbeat reports.

use std::sync::Arc;
use std::time::Duration;

use deploy::{AppName, AppRunStatus, InstalledApp, Version};

use super::Engine;
use super::error::InstallErrorKind;
use super::slot::AppSlot;
use super::verify::{Unverified, read_release_manifest};
use crate::process::{AppProcess, processes_under};
use crate::symlink;

impl Engine {
    /// Makes `p` the app's process and watches it: when it exits on its
    /// own (not stopped by us, not during an install), it is restarted.
    pub(super) fn adopt_process(&self, app: &AppName, slot: &AppSlot, p: AppProcess) {
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

    pub(super) fn stable(&self, app: &AppName, p: &AppProcess) {
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
    pub(super) async fn exited(&self, app: &AppName, p: AppProcess) {
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
                Err(InstallErrorKind::Untrusted {
                    version: p.version.clone(),
                    why,
                })
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

    pub(super) async fn recover_app(&self, app: &AppName) {
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
            // state file names once its shim is gone (the app outlived it),
            // if what is left of it runs the app (a recorded pid may have
            // been given to another process since, after a reboot say). An
            // operator's shell or script that merely runs from a release
            // is none of the grabber's business.
            let orphaned = recorded == Some(group)
                && !crate::process::pid_alive(group)
                && running.iter().any(|(pid, g, _)| {
                    *g == group && crate::process::runs_app(*pid, app, &self.cfg.host)
                });
            if !(crate::process::is_shim(group) || orphaned) {
                let pids: Vec<u32> = running
                    .iter()
                    .filter(|(_, g, _)| *g == group)
                    .map(|(pid, ..)| *pid)
                    .collect();
                tracing::info!(%app, group, ?pids, "leaving alone processes running from a release that no shim leads");
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
            self.adopt_process(
                app,
                &slot,
                AppProcess::adopt(pid, version.clone(), port, stop),
            );
            // Its other processes' groups were stopped above: they start
            // afresh beside it.
            self.recover_copies(app, &slot, &version, &manifest);
            return;
        }
        let Some(version) = current else { return };
        if state.as_ref().is_some_and(|s| s.stopped) {
            tracing::info!(%app, %version, "left stopped (deploy stop)");
            return;
        }
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
                self.recover_copies(app, &slot, &version, &manifest);
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
                let config_version = layout
                    .read_state(&app)
                    .ok()
                    .flatten()
                    .map_or(0, |s| s.config);
                let slot = self.slot(&app);
                let proc = slot.process().filter(|p| p.is_alive());
                let h = slot.supervision();
                let status = super::processes::run_status(h.status, proc.is_some());
                let mut installed = InstalledApp {
                    version,
                    pid: proc.as_ref().map(|p| p.pid),
                    port: proc.as_ref().and_then(|p| p.port),
                    status,
                    restarts: h.restarts,
                    config_version,
                    app,
                    processes: Vec::new(),
                };
                installed.processes = self.installed_processes(&slot, &installed);
                installed
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
            .iter()
            .filter_map(|s| s.set_process(None))
            .map(|p| async move { p.stop().await });
        futures::future::join_all(stops).await;
        futures::future::join_all(slots.iter().map(|s| self.stop_copies(s))).await;
    }
}
