//! Version reports: what a host's versionchecker found installed and running,
//! sent to `POST /api/v1/hosts/report` every interval. Read from the host
//! layout and `/proc`, never from the grabber, so a report is true even when
//! the grabber is stopped.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, HostName, Timestamp, Version};

/// The shortest reporting interval AppTracker accepts (tests use a few
/// hundred milliseconds; production the default minute).
pub const MIN_REPORT_INTERVAL_MS: u64 = 100;
/// The longest: a host silent for three of these is `stale`, so a day-long
/// interval would hide a dead host for days.
pub const MAX_REPORT_INTERVAL_MS: u64 = 3_600_000;

/// `POST /api/v1/hosts/report`: one host's state, from its versionchecker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostReport {
    pub cluster: Cluster,
    pub host: HostName,
    /// The agent's interval between reports: three of them without a
    /// report make the host `stale`.
    pub interval_ms: u64,
    /// How long before sending the layout was read (the scan takes time and
    /// a send may be retried): AppTracker dates the report by its own clock
    /// minus this, so host clocks never matter.
    #[serde(default)]
    pub age_ms: u64,
    /// The versionchecker's own version, for people chasing a bug.
    #[serde(default)]
    pub agent: String,
    /// Free and total space of the filesystem holding the host layout.
    #[serde(default)]
    pub disk: Option<FsSpace>,
    pub apps: Vec<AppReport>,
}

/// Space on one filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FsSpace {
    /// Available to unprivileged users (what an app can still write).
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// One app on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppReport {
    pub app: AppName,
    /// The release `current` points to.
    pub current: Option<Version>,
    /// Every release on disk, sorted by name.
    #[serde(default)]
    pub releases: Vec<Version>,
    /// The app's process group, when the pid `state.json` records is alive
    /// and runs from this app's releases.
    #[serde(default)]
    pub process: Option<ProcessReport>,
    /// Restarts after crashes since the release was installed (from
    /// `state.json`, which the grabber's supervisor keeps).
    #[serde(default)]
    pub restarts: u32,
    #[serde(default)]
    pub disk: AppDisk,
    /// The config version (`deploy env`) the app runs with, from
    /// `state.json`; 0: none.
    #[serde(default)]
    pub config_version: u64,
    /// Stopped on purpose (`deploy stop`), from `state.json`.
    #[serde(default)]
    pub stopped: bool,
    /// Whether the files of the release `current` names differ from what
    /// the grabber installed (the entries of its recorded inventory, or its
    /// tree digest from an older grabber): `Some(true)` when someone changed
    /// them by hand. Files added since (an app's `__pycache__/` or log) do
    /// not count. None when there is no record to compare with, or the tree
    /// could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_on_disk: Option<bool>,
    /// With `changed_on_disk`, the first installed path found changed,
    /// relative to the release (none from a record without an inventory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_path: Option<String>,
    /// What could not be read (a corrupt `state.json`, a `current` that
    /// names no release); the rest of the report still holds.
    #[serde(default)]
    pub error: Option<String>,
}

/// The process group the grabber started for an app (its shim, the app and
/// the app's children).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessReport {
    pub pid: u32,
    /// The release the process runs from (its working directory): it can
    /// differ from `current` when `current` was changed under it.
    #[serde(default)]
    pub version: Option<Version>,
    pub uptime_ms: u64,
    /// Resident memory of every process of the group.
    pub rss_bytes: u64,
    /// CPU time of the group's live processes since they started.
    pub cpu_ms: u64,
    /// Share of one core the group used since the previous report (none on
    /// the first).
    #[serde(default)]
    pub cpu_percent: Option<f64>,
}

/// Disk used by one app, in bytes (allocated blocks, like `du`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppDisk {
    pub releases_bytes: u64,
    /// `shared/` (the app's own data).
    pub shared_bytes: u64,
    /// `log/` (the app's output, kept by its shim).
    pub logs_bytes: u64,
}

impl AppDisk {
    pub fn total(&self) -> u64 {
        self.releases_bytes + self.shared_bytes + self.logs_bytes
    }
}

/// The answer to a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportReceipt {
    /// When AppTracker dated the report (its clock).
    pub observed_at: Timestamp,
}
