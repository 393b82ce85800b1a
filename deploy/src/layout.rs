//! The host layout (DESIGN.md "The host layout"): where a grabber keeps
//! releases, the `current` symlink, shared data, per-app state and its cache.
//! The grabber writes it; the versionchecker reads it.
//!
//! ```text
//! <root>/apps/<app>/releases/<version>/   extracted releases
//! <root>/apps/<app>/current -> releases/<version>   (relative symlink)
//! <root>/apps/<app>/shared/               kept across releases; the app's
//!                                         user owns it (the rest is the grabber's)
//! <root>/apps/<app>/log/<app>.log         the app's stdout and stderr
//! <root>/apps/<app>/digests/<version>.json  ReleaseDigest of each release
//! <root>/apps/<app>/digests/<version>.inventory  its entries as installed
//! <root>/apps/<app>/state.json            AppState
//! <root>/cache/                           downloaded artifacts
//! <root>/tmp/                             partial work, cleared at start
//! ```
//!
//! Invariant: `current` is only ever replaced by renaming a new symlink over
//! it, so at every instant it names a complete release (or does not exist).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::tree::{Change, Inventory};
use crate::{AppName, DeployId, Timestamp, Version};

/// How many installs `AppState::history` keeps.
pub const HISTORY_LEN: usize = 20;

/// What can go wrong reading or writing the layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read state file {path}: {reason}")]
    BadState { path: PathBuf, reason: String },
    #[error("`current` of {app} points at {target:?}, which is not a release")]
    BadCurrent { app: AppName, target: PathBuf },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// One finished install attempt, newest last in `AppState::history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    pub version: Version,
    /// The deploy that asked for it; `None` for a restart at boot.
    pub deploy_id: Option<DeployId>,
    pub at: Timestamp,
    /// `done`, `failed` or `rolled_back`: kept as text so the file stays
    /// readable by older versioncheckers.
    pub outcome: String,
}

/// `<root>/apps/<app>/state.json`: what the grabber knows about one app
/// beyond what the `current` symlink says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    pub app: AppName,
    /// The release `current` names (the symlink is the truth; this is a copy
    /// for readers that only look at the file).
    #[serde(default)]
    pub current: Option<Version>,
    /// The release that ran before `current`: where a rollback goes.
    #[serde(default)]
    pub previous: Option<Version>,
    /// The supervised process (its process group has the same id).
    #[serde(default)]
    pub pid: Option<u32>,
    /// The port the app was given as `PORT`.
    #[serde(default)]
    pub port: Option<u16>,
    /// The release whose health check last passed while it was `current`;
    /// cleared when `current` moves. A release that is current but not
    /// healthy was interrupted (a crash between switch and check) and is
    /// checked again rather than taken as installed.
    #[serde(default)]
    pub healthy: Option<Version>,
    /// The last deploy that touched this app.
    #[serde(default)]
    pub last_deploy: Option<DeployId>,
    /// Restarts after crashes since an install last started the app (the
    /// supervisor's count), so the versionchecker can report it without
    /// asking the grabber.
    #[serde(default)]
    pub restarts: u32,
    /// Recent installs, oldest first, at most `HISTORY_LEN`.
    #[serde(default)]
    pub history: Vec<InstallRecord>,
    /// The config version (`deploy env`) the app runs with; 0: none.
    #[serde(default)]
    pub config: u64,
    /// The config version a rollback puts back with `previous` (or with
    /// `current`, when a restart with a new config fails).
    #[serde(default)]
    pub previous_config: u64,
    /// Stopped by a `deploy stop`: the supervisor, a sync and a grabber
    /// restart leave it down until a start or a deploy.
    #[serde(default)]
    pub stopped: bool,
}

impl AppState {
    /// An empty state for an app seen for the first time.
    pub fn new(app: AppName) -> Self {
        Self {
            app,
            current: None,
            previous: None,
            pid: None,
            port: None,
            healthy: None,
            last_deploy: None,
            restarts: 0,
            history: Vec::new(),
            config: 0,
            previous_config: 0,
            stopped: false,
        }
    }

    /// Appends to the history, dropping the oldest entries past `HISTORY_LEN`.
    pub fn record(&mut self, record: InstallRecord) {
        self.history.push(record);
        if self.history.len() > HISTORY_LEN {
            let extra = self.history.len() - HISTORY_LEN;
            self.history.drain(..extra);
        }
    }
}

/// The layout under one root directory. Cheap to clone; holds no handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    root: PathBuf,
}

impl HostLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn app_dir(&self, app: &AppName) -> PathBuf {
        self.apps_dir().join(app.as_str())
    }

    pub fn releases_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("releases")
    }

    pub fn release_dir(&self, app: &AppName, version: &Version) -> PathBuf {
        self.releases_dir(app).join(version.as_str())
    }

    /// The target `current` holds for a version, relative to the app dir.
    pub fn current_target(version: &Version) -> PathBuf {
        Path::new("releases").join(version.as_str())
    }

    pub fn current_link(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("current")
    }

    /// The app's content store: one file per content and mode, hard-linked
    /// into the releases that hold it (`<sha256>.<mode, octal>`).
    pub fn content_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("content")
    }

    pub fn shared_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("shared")
    }

    /// Outside `shared/`: the app may own `shared/`, and a directory it
    /// owns could be swapped for one whose `<app>.log` links anywhere.
    /// `config/<n>.json`: the app's config version `n` as its grabber
    /// fetched it (secrets in the clear), owned by the app's user, 0600.
    pub fn config_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("config")
    }

    pub fn config_file(&self, app: &AppName, version: u64) -> PathBuf {
        self.config_dir(app).join(format!("{version}.json"))
    }

    pub fn log_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("log")
    }

    pub fn log_file(&self, app: &AppName) -> PathBuf {
        self.log_dir(app).join(format!("{app}.log"))
    }

    /// Where what a release looked like when it was installed is kept.
    pub fn digests_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("digests")
    }

    pub fn digest_file(&self, app: &AppName, version: &Version) -> PathBuf {
        self.digests_dir(app).join(format!("{version}.json"))
    }

    /// The release's entries as installed (`tree::Inventory`), named by
    /// its digest file.
    pub fn inventory_file(&self, app: &AppName, version: &Version) -> PathBuf {
        self.digests_dir(app).join(format!("{version}.inventory"))
    }

    pub fn state_file(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("state.json")
    }

    /// Where a downloaded artifact is kept once verified.
    pub fn cached_artifact(&self, app: &AppName, version: &Version) -> PathBuf {
        self.cache_dir().join(format!("{app}-{version}.tar.gz"))
    }

    /// Creates `apps/`, `cache/` and `tmp/` if missing.
    pub fn ensure_dirs(&self) -> Result<(), LayoutError> {
        for dir in [self.apps_dir(), self.cache_dir(), self.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(())
    }

    /// Creates the app's `releases/`, `log/`, `digests/` and `shared/` if
    /// missing.
    pub fn ensure_app_dirs(&self, app: &AppName) -> Result<(), LayoutError> {
        for dir in [
            self.releases_dir(app),
            self.log_dir(app),
            self.digests_dir(app),
            self.shared_dir(app),
        ] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(())
    }

    /// The apps that have a directory under `apps/`, sorted. Directories
    /// whose name is not a valid app name are ignored.
    pub fn list_apps(&self) -> Result<Vec<AppName>, LayoutError> {
        let dir = self.apps_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut apps = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(Ok(app))) = (is_dir, entry.file_name().to_str().map(AppName::parse))
            {
                apps.push(app);
            }
        }
        apps.sort();
        Ok(apps)
    }

    /// The versions under `releases/`, sorted by name.
    pub fn list_releases(&self, app: &AppName) -> Result<Vec<Version>, LayoutError> {
        let dir = self.releases_dir(app);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            if let Some(v) = entry
                .file_name()
                .to_str()
                .and_then(|s| Version::parse(s).ok())
            {
                versions.push(v);
            }
        }
        versions.sort();
        Ok(versions)
    }

    /// The version `current` names, or `None` when there is no `current`.
    pub fn read_current(&self, app: &AppName) -> Result<Option<Version>, LayoutError> {
        let link = self.current_link(app);
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read symlink", &link)(e)),
        };
        let bad = || LayoutError::BadCurrent {
            app: app.clone(),
            target: target.clone(),
        };
        let mut parts = target.components();
        match (parts.next(), parts.next(), parts.next()) {
            (
                Some(std::path::Component::Normal(r)),
                Some(std::path::Component::Normal(v)),
                None,
            ) if r == "releases" => {
                let v = v.to_str().ok_or_else(bad)?;
                Version::parse(v).map(Some).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }

    /// The app's state, or `None` when it has no state file yet.
    pub fn read_state(&self, app: &AppName) -> Result<Option<AppState>, LayoutError> {
        let path = self.state_file(app);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LayoutError::BadState {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes the app's state durably: a temporary file, fsync, rename over
    /// `state.json`, fsync of the directory. Readers see the old or the new
    /// file, never half of one.
    pub fn write_state(&self, state: &AppState) -> Result<(), LayoutError> {
        let path = self.state_file(&state.app);
        let dir = self.app_dir(&state.app);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let tmp = dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| LayoutError::BadState {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(&bytes).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("sync", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err("rename into place", &path))?;
        sync_dir(&dir)
    }
}

impl HostLayout {
    /// The digest recorded when `version` was installed, or `None` when
    /// there is none (installed by an older grabber, or not complete).
    pub fn read_digest(
        &self,
        app: &AppName,
        version: &Version,
    ) -> Result<Option<ReleaseDigest>, LayoutError> {
        let path = self.digest_file(app, version);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LayoutError::BadState {
                path,
                reason: e.to_string(),
            })
    }

    /// Records `digest` for `version`, durably, like `write_state`. The
    /// inventory it names is written before it (`write_inventory`).
    pub fn write_digest(
        &self,
        app: &AppName,
        version: &Version,
        digest: &ReleaseDigest,
    ) -> Result<(), LayoutError> {
        let bytes = serde_json::to_vec_pretty(digest).map_err(|e| LayoutError::BadState {
            path: self.digest_file(app, version),
            reason: e.to_string(),
        })?;
        self.write_record(&self.digest_file(app, version), &bytes)
    }

    /// Records what `version` was installed with, durably; returns the
    /// sha256 of the file written, for `ReleaseDigest::inventory_sha256`.
    pub fn write_inventory(
        &self,
        app: &AppName,
        version: &Version,
        inventory: &Inventory,
    ) -> Result<String, LayoutError> {
        let bytes = inventory.encode();
        self.write_record(&self.inventory_file(app, version), &bytes)?;
        Ok(hex::encode(sha2::Sha256::digest(&bytes)))
    }

    /// What `version` was installed with: its digest and, when the digest
    /// names one, its inventory (checked against the sha256 the digest
    /// holds). `None` when no digest was recorded.
    pub fn read_installed(
        &self,
        app: &AppName,
        version: &Version,
    ) -> Result<Option<Installed>, LayoutError> {
        let Some(digest) = self.read_digest(app, version)? else {
            return Ok(None);
        };
        let Some(want) = &digest.inventory_sha256 else {
            return Ok(Some(Installed {
                digest,
                inventory: None,
            }));
        };
        let path = self.inventory_file(app, version);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let bad = |reason: String| LayoutError::BadState {
            path: path.clone(),
            reason,
        };
        let got = hex::encode(sha2::Sha256::digest(&bytes));
        if got != *want {
            return Err(bad(format!("its sha256 is {got}, not the recorded {want}")));
        }
        let inventory = Inventory::decode(&bytes).map_err(|e| bad(e.to_string()))?;
        Ok(Some(Installed {
            digest,
            inventory: Some(inventory),
        }))
    }

    /// Writes `bytes` to `path` in the digests directory durably, like
    /// `write_state`.
    fn write_record(&self, path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(bytes).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("sync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        sync_dir(dir)
    }

    /// Forgets `version`'s digest and inventory (its release is gone).
    pub fn remove_digest(&self, app: &AppName, version: &Version) {
        let _ = fs::remove_file(self.digest_file(app, version));
        let _ = fs::remove_file(self.inventory_file(app, version));
    }
}

/// `<root>/apps/<app>/digests/<version>.json`: what a release was when the
/// grabber installed it, so a release found on disk later (a rollback, a
/// reinstall, a restart) is run again only if it still is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDigest {
    /// The sha256 of the artifact it was extracted from.
    pub artifact_sha256: crate::Sha256,
    /// The sha256 of the extracted tree (`tree::tree_digest`): every path,
    /// its kind, mode and owner, and its content or link target. Kept for
    /// versioncheckers that know no inventory.
    pub tree_sha256: String,
    /// The sha256 of the release's inventory file (`inventory_file`),
    /// written before this record: the entries the release is checked
    /// against. `None` from a grabber that wrote no inventory: the whole
    /// tree is compared with `tree_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_sha256: Option<String>,
}

/// What a release was installed with ([`HostLayout::read_installed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub digest: ReleaseDigest,
    /// Its entries; `None` when an older grabber recorded a digest only.
    pub inventory: Option<Inventory>,
}

impl Installed {
    /// Checks the release at `root` against what was installed: entry by
    /// entry with an inventory (files added since are not a change), else
    /// the whole tree against the digest. `Some` names the first change.
    /// Reads every installed file: blocking.
    pub fn check(&self, root: &Path) -> io::Result<Option<Change>> {
        match &self.inventory {
            Some(inventory) => inventory.check(root),
            None => {
                let now = crate::tree::tree_digest(root)?;
                Ok((now != self.digest.tree_sha256).then_some(Change::Tree))
            }
        }
    }
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

#[cfg(test)]
mod tests;
