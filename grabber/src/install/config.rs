//! The app's config on the host: fetched from AppTracker once per config
//! version (`Reporter::config`), written to `config/<n>.json` (a directory
//! and a file only the app's user can read: 0700 and 0600, owned by it),
//! and read back into the environment of every start, health command and
//! hook. Values never reach a log line, a report or a command line: the
//! app gets them as environment variables, which only its user and root
//! can read (`/proc/<pid>/environ`), never as arguments.
//!
//! The app's user owns the directory, so whatever is in it is treated as
//! planted: a file is written under a fresh name and renamed into place,
//! and read only when it is a regular file opened without following a
//! symlink.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

use nix::libc;

use deploy::AppName;

use super::Engine;
use super::error::InstallErrorKind;
use super::report::Reports;
use crate::user::AppUser;

/// Largest config file read back (the API's bounds make it far smaller).
const MAX_CONFIG_FILE: u64 = 16 << 20;

impl Engine {
    /// Makes sure config `version` of `app` is on disk for `user` (the
    /// app's user; `None`: the grabber's own), fetching it when it is not.
    pub(super) async fn ensure_config(
        &self,
        app: &AppName,
        version: u64,
        user: Option<&AppUser>,
        rep: &Reports<'_>,
    ) -> Result<(), InstallErrorKind> {
        if version == 0 || self.read_config(app, version).is_ok() {
            return Ok(());
        }
        let config = rep
            .config(app, version)
            .await
            .map_err(InstallErrorKind::Start)?;
        self.write_config(app, version, &config.vars, user)
            .map_err(|e| {
                InstallErrorKind::Host(format!(
                    "cannot write config version {version} of `{app}`: {e}"
                ))
            })?;
        tracing::info!(%app, config_version = version, keys = config.vars.len(), "config written");
        Ok(())
    }

    fn write_config(
        &self,
        app: &AppName,
        version: u64,
        vars: &BTreeMap<String, String>,
        user: Option<&AppUser>,
    ) -> std::io::Result<()> {
        let layout = &self.cfg.layout;
        let dir = layout.config_dir(app);
        std::fs::create_dir_all(&dir)?;
        let meta = std::fs::symlink_metadata(&dir)?;
        if !meta.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let (uid, gid) = match user {
            Some(u) => (u.uid, u.gid),
            None => (meta.uid(), meta.gid()),
        };
        std::os::unix::fs::lchown(&dir, Some(uid), Some(gid))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let body = zeroize::Zeroizing::new(serde_json::to_vec(vars)?);
        // A fresh name (O_EXCL, 0600) in the directory, renamed into place.
        let mut f = tempfile::Builder::new()
            .prefix(&format!(".{version}.json."))
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&dir)?;
        f.write_all(&body)?;
        f.as_file().sync_all()?;
        std::os::unix::fs::fchown(f.as_file(), Some(uid), Some(gid))?;
        f.persist(layout.config_file(app, version))
            .map_err(|e| e.error)?;
        Ok(())
    }

    /// Config `version` of `app` as written on this host.
    pub(super) fn read_config(
        &self,
        app: &AppName,
        version: u64,
    ) -> Result<BTreeMap<String, String>, String> {
        let path = self.cfg.layout.config_file(app, version);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| format!("config version {version}: {}: {e}", path.display()))?;
        let meta = f.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        let mut body = zeroize::Zeroizing::new(Vec::new());
        f.take(MAX_CONFIG_FILE)
            .read_to_end(&mut body)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&body)
            .map_err(|e| format!("{} is not readable: {e}", path.display()))
    }

    /// The config the app runs with now (its state's version), for a start.
    pub(super) fn current_config(&self, app: &AppName) -> Result<BTreeMap<String, String>, String> {
        let version = self
            .cfg
            .layout
            .read_state(app)
            .ok()
            .flatten()
            .map_or(0, |s| s.config);
        if version == 0 {
            return Ok(BTreeMap::new());
        }
        self.read_config(app, version)
    }

    /// Removes config files of versions other than the ones kept.
    pub(super) fn prune_configs(&self, app: &AppName, keep: &[u64]) {
        let dir = self.cfg.layout.config_dir(app);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let version = name
                .strip_suffix(".json")
                .and_then(|v| v.parse::<u64>().ok());
            if version.is_some_and(|v| !keep.contains(&v)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
