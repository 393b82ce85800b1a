//! Starting a release: who it runs as, its port, its directories, and the
//! launch of its shim.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::Path;

use deploy::{AppName, Manifest, Version};

use super::Engine;
use super::error::InstallErrorKind;
use super::processes::CopyId;
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
            cluster: &self.cfg.cluster,
            release_dir,
            log_file,
            run: &manifest.run,
            port,
            shim: &self.cfg.shim,
            log_limits: self.cfg.log_limits,
            user: self.run_as(manifest)?,
            config: self.current_config(app)?,
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

    /// The port a release of `app` gets on this host: its pinned port
    /// shifted by the host's offset, or the app's own port from the range.
    pub(super) fn port_for(
        &self,
        app: &AppName,
        manifest: &Manifest,
    ) -> Result<Option<u16>, String> {
        match manifest.run.port {
            None => self.allocated_port(app, None).map(Some),
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

    /// The port of an app that pins none: the one it had (in memory, or in
    /// its state file from before a restart of the grabber) while nothing
    /// else took it, else a free one of the range. Free means no other app
    /// of this host has it and nothing listens on it. The search starts at
    /// a place that depends on the app and the host, so hosts sharing one
    /// machine rarely race for the same port. `copy` asks for a copy of
    /// another process type of the app (`[processes]`), which keeps its
    /// port while the grabber runs.
    pub(super) fn allocated_port(
        &self,
        app: &AppName,
        copy: Option<&CopyId>,
    ) -> Result<u16, String> {
        let owner = (app.clone(), copy.cloned());
        let layout = &self.cfg.layout;
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let range = self.cfg.port_range.clone();
        let app_dir = layout.app_dir(app);
        let own_or_free = |port: u16| {
            crate::ports::check_free(port, layout, |p| crate::ports::runs_from(p, &app_dir)).is_ok()
        };
        let had = ports.get(&owner).copied().or_else(|| {
            layout
                .read_state(app)
                .ok()
                .flatten()
                .and_then(|s| s.port)
                .filter(|p| copy.is_none() && range.contains(p) && own_or_free(*p))
        });
        if let Some(port) = had {
            ports.insert(owner, port);
            return Ok(port);
        }
        let mut taken: HashSet<u16> = ports.values().copied().collect();
        for other in layout.list_apps().unwrap_or_default() {
            if let Some(p) = layout
                .read_state(&other)
                .ok()
                .flatten()
                .and_then(|s| s.port)
            {
                taken.insert(p);
            }
        }
        let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
        let len = hi - lo + 1;
        let mut seed = std::collections::hash_map::DefaultHasher::new();
        (app.as_str(), self.cfg.host.as_str(), self.cfg.port_offset).hash(&mut seed);
        if let Some(copy) = copy {
            copy.hash(&mut seed);
        }
        let start = (seed.finish() % u64::from(len)) as u32;
        for i in 0..len {
            let Ok(port) = u16::try_from(lo + (start + i) % len) else {
                continue;
            };
            if taken.contains(&port) || deploy::procfs::port_holders(port).listening {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            ports.insert(owner, port);
            return Ok(port);
        }
        Err(format!(
            "no free port left in {}-{} for `{app}` (pass a wider --port-range)",
            range.start(),
            range.end()
        ))
    }

    pub(super) fn start(
        &self,
        app: &AppName,
        version: &Version,
        manifest: &Manifest,
    ) -> Result<AppProcess, InstallErrorKind> {
        let layout = &self.cfg.layout;
        let port = self
            .port_for(app, manifest)
            .map_err(InstallErrorKind::Start)?;
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
