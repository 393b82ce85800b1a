//! The release phase on this host: AppTracker asked it (and no other host)
//! to run a deploy's `[release] command` before any host switches. The
//! release is prepared as an install would (download, verify, extract into
//! `releases/<version>`, so the install that follows reuses it), without
//! reporting host phases: the host's own install comes later. Nothing the
//! host runs is touched; the command runs from the new release as the
//! app's user with the app's environment (`SLIPWAY_PHASE=release`, no
//! `PORT`), and its result goes back to AppTracker.

use std::time::Duration;

use deploy::{HostEvent, ReleaseOutcome, ReleasePhaseResult};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::hooks::run_command;
use super::report::{Reporter, Reports};
use super::verify::read_release_manifest;
use super::{Engine, Prepared, Release};
use crate::user::AppUser;

/// Drops the phases of the preparation: they belong to no host's install.
/// Config still comes from the real reporter.
struct Unreported<'a>(&'a dyn Reporter);

impl Reporter for Unreported<'_> {
    fn report(&self, _: deploy::DeployId, _: HostEvent) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn config<'a>(
        &'a self,
        app: &'a deploy::AppName,
        version: u64,
    ) -> BoxFuture<'a, Result<deploy::HostConfig, String>> {
        self.0.config(app, version)
    }
}

impl Engine {
    /// Runs the release phase of `req` here; `None` when shutdown came
    /// before the command started (AppTracker's deadline fails the deploy).
    #[tracing::instrument(skip_all, fields(deploy_id = %req.deploy_id, host = %self.cfg.host, app = %req.app, version = %req.version))]
    pub(crate) async fn release_phase(
        &self,
        req: &Release,
        reporter: &dyn Reporter,
        shutdown: &CancellationToken,
    ) -> Option<ReleasePhaseResult> {
        let result = |outcome, message: String, log: String| {
            Some(ReleasePhaseResult {
                cluster: self.cfg.cluster.clone(),
                outcome,
                message,
                log,
            })
        };
        let unreported = Unreported(reporter);
        let rep = Reports::new(&unreported, req.deploy_id, &self.cfg.cluster);
        {
            // Not beside an install of the app: both write its releases.
            let slot = self.slot(&req.app);
            let _serial = tokio::select! {
                g = slot.install.lock() => g,
                _ = shutdown.cancelled() => return None,
            };
            tracing::info!("preparing the release for its release phase");
            match self.prepare(req, &rep, shutdown).await {
                Ok(Prepared::Ready) => {}
                Ok(Prepared::Interrupted) => return None,
                Err(e) => {
                    tracing::warn!(phase = %e.phase, error = %e, "cannot prepare the release phase");
                    return result(
                        ReleaseOutcome::Failed,
                        format!("cannot prepare {} on this host: {e}", req.version),
                        rep.log(),
                    );
                }
            }
        }
        let (app, version) = (&req.app, &req.version);
        let layout = &self.cfg.layout;
        let release_dir = layout.release_dir(app, version);
        let manifest = match read_release_manifest(&release_dir) {
            Ok(m) => m,
            Err(e) => return result(ReleaseOutcome::Failed, e.to_string(), rep.log()),
        };
        let Some(phase) = &manifest.release else {
            return result(
                ReleaseOutcome::Succeeded,
                format!("{version} has no `[release] command`: nothing to run"),
                String::new(),
            );
        };
        let log_file = layout.log_file(app);
        let mut launch = match self.launch(app, version, &manifest, &release_dir, &log_file, None) {
            Ok(l) => l,
            Err(e) => {
                let why = format!("cannot run the release command as the app: {e}");
                return result(ReleaseOutcome::Failed, why, String::new());
            }
        };
        // The command runs with the config the deploy brings, not the one
        // the running release has.
        let config = match self
            .ensure_config(app, req.config_version, launch.user.as_ref(), &rep)
            .await
        {
            Ok(()) if req.config_version == 0 => Ok(Default::default()),
            Ok(()) => self.read_config(app, req.config_version),
            Err(e) => Err(e.to_string()),
        };
        match config {
            Ok(c) => launch.config = c,
            Err(e) => {
                let why = format!("cannot run the release command with its config: {e}");
                return result(ReleaseOutcome::Failed, why, String::new());
            }
        }
        // The app's `shared/` (SLIPWAY_SHARED) is the app user's, as when
        // it starts.
        let shared = layout.shared_dir(app);
        let owner = launch.user.clone().unwrap_or_else(AppUser::current);
        if let Err(e) = self
            .app_dirs(app)
            .map_err(|e| e.to_string())
            .and_then(|()| crate::user::give_to(&shared, &owner).map_err(|e| e.to_string()))
        {
            let why = format!("cannot prepare {} for the app: {e}", shared.display());
            return result(ReleaseOutcome::Failed, why, String::new());
        }
        tracing::info!(command = %phase.command, "running the release command");
        let ran = run_command(
            "release command",
            &phase.command,
            &launch,
            &[("SLIPWAY_PHASE", "release".to_string())],
            Duration::from_millis(phase.timeout_ms),
        )
        .await;
        tracing::info!(ok = ran.ok, message = %ran.message, "release phase ran");
        let outcome = if ran.ok {
            ReleaseOutcome::Succeeded
        } else {
            ReleaseOutcome::Failed
        };
        result(outcome, ran.message, ran.output)
    }
}
