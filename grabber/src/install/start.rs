//! Starting a release: who it runs as, its port, its directories, and the
//! launch of its shim.

use std::path::Path;

use deploy::{AppName, Manifest, Version};

use super::Engine;
use super::error::InstallErrorKind;
use crate::process::{AppProcess, Launch};
use crate::user::AppUser;

impl Engine {
    /// Everything needed to start (or health-check) `version` of `app`.
    pub(super) fn launch<'a>(
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
    pub(super) fn run_as(&self, manifest: &Manifest) -> Result<Option<AppUser>, String> {
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

    /// The port a release gets on this host.
    pub(super) fn port_for(&self, manifest: &Manifest) -> Result<Option<u16>, String> {
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

    pub(super) fn start(
        &self,
        app: &AppName,
        version: &Version,
        manifest: &Manifest,
    ) -> Result<AppProcess, InstallErrorKind> {
        let layout = &self.cfg.layout;
        let port = self.port_for(manifest).map_err(InstallErrorKind::Start)?;
        let release_dir = layout.release_dir(app, version);
        let log_file = layout.log_file(app);
        let launch = self
            .launch(app, version, manifest, &release_dir, &log_file, port)
            .map_err(InstallErrorKind::Start)?;
        self.app_dirs(app)?;
        let shared = layout.shared_dir(app);
        let owner = launch.user.clone().unwrap_or_else(AppUser::current);
        crate::user::give_to(&shared, &owner).map_err(|e| {
            InstallErrorKind::Host(format!(
                "cannot give {} to {}: {e}",
                shared.display(),
                owner.describe()
            ))
        })?;
        AppProcess::start(&launch).map_err(|e| {
            InstallErrorKind::Start(format!("cannot start `{}`: {e}", manifest.run.command))
        })
    }

    /// The app's directories with their modes: the app passes through its
    /// directory and `releases/` (0755, the grabber's) and has no business
    /// in `log/` and `digests/` (0700, the grabber's). `shared/` is given
    /// to the app's user when it starts.
    pub(super) fn app_dirs(&self, app: &AppName) -> Result<(), InstallErrorKind> {
        let layout = &self.cfg.layout;
        layout
            .ensure_app_dirs(app)
            .map_err(|e| InstallErrorKind::Host(e.to_string()))?;
        let modes = [
            (layout.app_dir(app), 0o755),
            (layout.releases_dir(app), 0o755),
            (layout.log_dir(app), 0o700),
            (layout.digests_dir(app), 0o700),
        ];
        for (dir, mode) in modes {
            crate::user::set_mode(&dir, mode).map_err(|e| {
                InstallErrorKind::Host(format!("cannot set the mode of {}: {e}", dir.display()))
            })?;
        }
        Ok(())
    }
}
