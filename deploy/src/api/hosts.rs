//! Host bodies: heartbeats and what a host runs, a host as the API shows
//! it, and the desired state a grabber converges to.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, HostName, Timestamp, Version};

/// What a host runs of one app, as its grabber reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstalledApp {
    pub app: AppName,
    /// The release `current` names.
    pub version: Option<Version>,
    /// The supervised process, when running.
    pub pid: Option<u32>,
    /// The port the app was given (`PORT`).
    pub port: Option<u16>,
    /// What the grabber's supervisor makes of the process.
    #[serde(default)]
    pub status: AppRunStatus,
    /// Restarts after crashes since the release was installed.
    #[serde(default)]
    pub restarts: u32,
    /// The app's config version it runs with (0: none).
    #[serde(default)]
    pub config_version: u64,
}

/// The supervisor's view of one app's process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppRunStatus {
    /// Up (or not supervised yet: the default of older grabbers).
    #[default]
    Running,
    /// It exited on its own and waits for its next start.
    Restarting,
    /// It keeps crashing: restarted too often in a short time. Still
    /// retried, at the longest backoff.
    Failing,
    /// Nothing runs (no release, or the release could not start).
    Stopped,
}

impl AppRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Failing => "failing",
            Self::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for AppRunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/hosts/heartbeat`: a grabber registers and says it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    pub cluster: Cluster,
    pub host: HostName,
    /// The grabber's root directory on that host.
    pub root: String,
    #[serde(default)]
    pub apps: Vec<InstalledApp>,
}

/// A host as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub cluster: Cluster,
    pub name: HostName,
    pub root: String,
    pub registered_at: Timestamp,
    pub last_seen: Timestamp,
    pub apps: Vec<InstalledApp>,
}

/// One app a host should run, with the deploy that asked for it: a
/// [`Release`](crate::Release), under the name the API has always used.
pub type DesiredApp = crate::Release;

/// `GET /api/v1/hosts/{cluster}/{host}/desired`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesiredState {
    pub cluster: Cluster,
    pub host: HostName,
    pub apps: Vec<DesiredApp>,
}
