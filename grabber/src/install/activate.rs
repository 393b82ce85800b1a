//! Activating a prepared release: switch `current`, stop the old process,
//! start the new one, health-check it, watch it stay up for the bake, and
//! roll back when it does not come up or does not stay. Runs to the end
//! once begun, so `current` and the process agree.

use deploy::{AppName, HostPhase, Version};

use super::error::{InstallError, InstallErrorKind};
use super::report::Reports;
use super::slot::{AppSlot, Supervision};
use super::verify::read_release_manifest;
use super::{Engine, FAILURE_LOG_BYTES, Outcome, Release, record};
use crate::process::{AppProcess, log_since_start};
use crate::{fault, health, symlink};

impl Engine {
    /// Switching, starting, checking, and the rollback when one fails.
    pub(super) async fn activate(
        &self,
        req: &Release,
        slot: &AppSlot,
        rep: &Reports<'_>,
    ) -> Outcome {
        let layout = &self.cfg.layout;
        let app = &req.app;
        let release_dir = layout.release_dir(app, &req.version);
        let manifest = match read_release_manifest(&release_dir) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .fail_early(req, rep, e.in_phase(HostPhase::Extracting))
                    .await;
            }
        };
        let state = layout.read_state(app).ok().flatten();
        let was_current = layout.read_current(app).ok().flatten();
        let (config, previous_config) = state
            .as_ref()
            .map_or((0, 0), |s| (s.config, s.previous_config));
        // A restart, a start, or a new config of the release that is
        // current: a failure puts that release back with the config it ran.
        let same_release = was_current.as_ref() == Some(&req.version)
            && (req.config_version != config || !req.action.is_deploy());
        // Where a rollback goes otherwise: the release that ran before,
        // unless it is this very version (a crashed app being reinstalled).
        let rollback_to: Option<(Version, u64)> = match &was_current {
            Some(v) if same_release => Some((v.clone(), config)),
            Some(v) if *v == req.version => state
                .as_ref()
                .and_then(|s| s.previous.clone())
                .map(|p| (p, previous_config)),
            other => other.clone().map(|v| (v, config)),
        }
        .filter(|(v, _)| read_release_manifest(&layout.release_dir(app, v)).is_ok());

        // A user the release cannot run as fails the host in `starting`,
        // before anything running changes; so does a config that cannot be
        // fetched.
        let user = match self.run_as(&manifest) {
            Ok(u) => u,
            Err(e) => {
                let e = InstallErrorKind::Start(format!("cannot start {}: {e}", req.version))
                    .in_phase(HostPhase::Starting);
                return self.fail_early(req, rep, e).await;
            }
        };
        if let Err(e) = self
            .ensure_config(app, req.config_version, user.as_ref(), rep)
            .await
        {
            return self
                .fail_early(req, rep, e.in_phase(HostPhase::Starting))
                .await;
        }
        // A pinned port another app or process listens on fails the host in
        // `starting` too, naming the holder, while the old release still
        // serves. The app's own running release may hold it: it is stopped
        // before the new one starts.
        if let Ok(Some(port)) = self.port_for(app, &manifest)
            && manifest.run.port.is_some()
        {
            let own_group = state.as_ref().and_then(|s| s.pid);
            let app_dir = layout.app_dir(app);
            let own = |pid: u32| {
                own_group.is_some_and(|g| deploy::procfs::stat(pid).is_some_and(|s| s.pgrp == g))
                    || crate::ports::runs_from(pid, &app_dir)
            };
            if let Err(e) = crate::ports::check_free(port, layout, own) {
                let e = InstallErrorKind::Start(format!("cannot start {}: {e}", req.version))
                    .in_phase(HostPhase::Starting);
                return self.fail_early(req, rep, e).await;
            }
        }
        if let Err(e) = self.copy_ports_free(app, &manifest) {
            let e = InstallErrorKind::Start(format!("cannot start {}: {e}", req.version))
                .in_phase(HostPhase::Starting);
            return self.fail_early(req, rep, e).await;
        }
        rep.phase(
            HostPhase::Switching,
            format!("current -> releases/{}", req.version),
        )
        .await;
        // From here the new release runs with the new config (starts and
        // health commands read it from the state).
        self.update_state(app, |s| s.config = req.config_version);
        if let Some(runtime) = &manifest.runtime {
            let port = self.port_for(app, &manifest).unwrap_or(None);
            let log_file = layout.log_file(app);
            let checked =
                match self.launch(app, &req.version, &manifest, &release_dir, &log_file, port) {
                    Ok(launch) => {
                        crate::runtime::check(runtime, launch.env(), launch.user.as_ref()).await
                    }
                    Err(e) => Err(e),
                };
            if let Err(e) = checked {
                let e = InstallErrorKind::Start(format!("not switching: {e}"))
                    .in_phase(HostPhase::Switching);
                return self.fail_early(req, rep, e).await;
            }
        }
        // The running release's `pre_stop` hook (`hooks.rs`), last before
        // anything changes: a failure leaves it running and current.
        if let Err(e) = self.pre_stop(app, slot, rep).await {
            return self
                .fail_early(req, rep, e.in_phase(HostPhase::Switching))
                .await;
        }
        if let Err(e) = symlink::switch_current(layout, app, &req.version) {
            let e = InstallErrorKind::Host(e.to_string()).in_phase(HostPhase::Switching);
            return self.fail_early(req, rep, e).await;
        }
        self.update_state(app, |s| {
            s.current = Some(req.version.clone());
            s.healthy = None;
            s.stopped = false;
            if let Some((v, c)) = &rollback_to
                && *v != req.version
            {
                s.previous = Some(v.clone());
                s.previous_config = *c;
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
        self.stop_copies(slot).await;
        let proc = match self.start(app, &req.version, &manifest) {
            Ok(p) => p,
            Err(e) => {
                let e = e.in_phase(HostPhase::Starting);
                return self.roll_back(req, slot, rep, e, None, rollback_to).await;
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
        if let Err(e) = self.start_copies(app, slot, &req.version, &manifest) {
            let e = e.in_phase(HostPhase::Starting);
            return self
                .roll_back(req, slot, rep, e, Some(proc), rollback_to)
                .await;
        }
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
            Ok(launch) => {
                health::check(
                    &manifest.health,
                    &proc,
                    &launch,
                    &self.http,
                    &self.cfg.layout,
                )
                .await
            }
            Err(e) => Err(e),
        };
        // Healthy once is not yet done: the app must also stay up for the
        // bake, or it is rolled back like one that never passed.
        let bake = std::time::Duration::from_millis(manifest.health.bake_ms);
        let checked = match checked {
            Ok(()) => self.check_copies(app, slot, &req.version, &manifest).await,
            Err(e) => Err(e),
        };
        let checked = match checked {
            Ok(()) => {
                let (web, copies) =
                    tokio::join!(stays_up(&proc, bake), self.copies_stay_up(app, slot, bake));
                web.and(copies)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            let e = InstallErrorKind::Unhealthy(e).in_phase(HostPhase::Checking);
            return self
                .roll_back(req, slot, rep, e, Some(proc), rollback_to)
                .await;
        }
        let hook = self.run_hook(
            deploy::HookKind::PostStart,
            app,
            &req.version,
            &manifest,
            proc.port,
            proc.pid,
            rep,
        );
        if let Err(e) = hook.await {
            let e = e.in_phase(HostPhase::Checking);
            return self
                .roll_back(req, slot, rep, e, Some(proc), rollback_to)
                .await;
        }

        self.update_state(app, |s| {
            s.healthy = Some(req.version.clone());
            s.last_deploy = Some(req.deploy_id);
            s.record(record(req, "done"));
        });
        tracing::info!(
            pid = proc.pid,
            config_version = req.config_version,
            "release is up"
        );
        let previous = rollback_to.as_ref().map(|(v, _)| v);
        self.prune_releases(app, &req.version, previous.filter(|v| **v != req.version));
        let kept_config = rollback_to.as_ref().map_or(0, |(_, c)| *c);
        self.prune_configs(app, &[req.config_version, kept_config, previous_config]);
        let baked = if bake.is_zero() {
            String::new()
        } else {
            format!(", up {bake:?} after its health check")
        };
        let copies = self.describe_copies(slot);
        rep.phase(
            HostPhase::Done,
            format!(
                "running {}{} (pid {}{copies}){baked}",
                req.version,
                config_note(req.config_version),
                proc.pid
            ),
        )
        .await;
        Outcome::Done
    }

    /// Keeps `releases/` bounded: the current and previous releases stay,
    /// plus the most recently installed others up to `keep_releases`.
    pub(super) fn prune_releases(
        &self,
        app: &AppName,
        current: &Version,
        previous: Option<&Version>,
    ) {
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
        // The content only the removed releases held goes with them.
        let store = crate::content::ContentStore::new(layout.content_dir(app));
        match store.collect_garbage() {
            Ok((0, _)) => {}
            Ok((files, bytes)) => {
                tracing::info!(files, bytes, "removed content no release holds any more")
            }
            Err(e) => tracing::warn!(error = %e, "cannot clean the content store"),
        }
    }

    /// A failure before anything running changed.
    pub(super) async fn fail_early(
        &self,
        req: &Release,
        rep: &Reports<'_>,
        error: InstallError,
    ) -> Outcome {
        tracing::warn!(phase = %error.phase, error = %error, retryable = error.is_retryable(),
            "install failed");
        self.mark_failed(req.deploy_id);
        rep.failed(&error, false, "", None).await;
        Outcome::Failed {
            phase: error.phase,
            rolled_back: false,
        }
    }

    /// The new release did not come up: stop it, put the previous one back
    /// (or nothing, if there was none) and report why.
    pub(super) async fn roll_back(
        &self,
        req: &Release,
        slot: &AppSlot,
        rep: &Reports<'_>,
        error: InstallError,
        new: Option<AppProcess>,
        rollback_to: Option<(Version, u64)>,
    ) -> Outcome {
        let phase = error.phase;
        tracing::warn!(%phase, %error, ?rollback_to, "release failed, rolling back");
        self.mark_failed(req.deploy_id);
        let layout = &self.cfg.layout;
        let app = &req.app;
        slot.set_process(None);
        if let Some(p) = new {
            p.stop().await;
        }
        let copy_log = self.exited_copy_log(app, slot);
        self.stop_copies(slot).await;
        let app_log = log_since_start(&layout.log_file(app), FAILURE_LOG_BYTES);
        let app_log = match (app_log, copy_log) {
            (Some(web), Some(copy)) => Some(format!("{web}\n{copy}")),
            (web, copy) => web.or(copy),
        };

        let mut rolled_back = false;
        let note = match rollback_to {
            Some((prev, config)) => match self.restore_with(app, &prev, config).await {
                Ok((p, health)) => {
                    let copies = self.restore_copies(app, slot, &prev).await;
                    let health = health.and(copies);
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
                    self.adopt_process(app, slot, p.clone());
                    match health {
                        Ok(()) => format!(
                            "; rolled back to {prev}, which is healthy{}",
                            self.post_start_restored(app, &prev, &p, rep).await
                        ),
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
        rep.failed(&error, rolled_back, &note, app_log).await;
        Outcome::Failed { phase, rolled_back }
    }

    /// [`Engine::restore`] with the config the release ran with.
    async fn restore_with(
        &self,
        app: &AppName,
        version: &Version,
        config: u64,
    ) -> Result<(AppProcess, Result<(), String>), InstallErrorKind> {
        self.update_state(app, |s| s.config = config);
        self.restore(app, version).await
    }

    /// Points `current` back at `version`, starts it and runs its health
    /// check, so a host reports `rolled_back` only once the previous release
    /// serves again (or says that it does not). No bake: that release ran
    /// before, the host is failing already and should say so soon, and if it
    /// exits later the supervisor restarts it like any crash (there is
    /// nothing further to roll back to).
    pub(super) async fn restore(
        &self,
        app: &AppName,
        version: &Version,
    ) -> Result<(AppProcess, Result<(), String>), InstallErrorKind> {
        let layout = &self.cfg.layout;
        let release_dir = layout.release_dir(app, version);
        let manifest = read_release_manifest(&release_dir)?;
        // No artifact to download it again from here: an untrusted
        // release is not run at all.
        self.verify(app, version, None)
            .await
            .map_err(|why| InstallErrorKind::Untrusted {
                version: version.clone(),
                why,
            })?;
        symlink::switch_current(layout, app, version)
            .map_err(|e| InstallErrorKind::Host(e.to_string()))?;
        let proc = self.start(app, version, &manifest)?;
        let log_file = layout.log_file(app);
        let health = match self.launch(app, version, &manifest, &release_dir, &log_file, proc.port)
        {
            Ok(launch) => {
                health::check(
                    &manifest.health,
                    &proc,
                    &launch,
                    &self.http,
                    &self.cfg.layout,
                )
                .await
            }
            Err(e) => Err(e),
        };
        Ok((proc, health))
    }
}

/// Whether the app, just past its health check, is still running `bake`
/// later. The install holds the slot's lock meanwhile, so the supervisor
/// does not restart an app that exits here: the install rolls it back.
async fn stays_up(proc: &AppProcess, bake: std::time::Duration) -> Result<(), String> {
    if bake.is_zero() {
        return Ok(());
    }
    let passed = tokio::time::Instant::now();
    if proc.survives(bake).await {
        Ok(())
    } else {
        Err(format!(
            "the app exited {:.1?} after passing its health check (bake {bake:?})",
            passed.elapsed()
        ))
    }
}

/// ` with config N`, or nothing when the app has no config.
pub(super) fn config_note(version: u64) -> String {
    if version == 0 {
        String::new()
    } else {
        format!(" with config {version}")
    }
}
