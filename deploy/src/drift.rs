//! Drift on the wire: `GET /api/v1/drift` (what each host should run, what
//! it reports, and the verdict with its reason), and `POST
//! /api/v1/drift/sync` (deploy the desired version to the hosts that drifted).

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::report::{AppDisk, ProcessReport};
use crate::{AppName, Cluster, Deploy, DeployId, HostName, Timestamp, Version};

/// The verdict on one app on one host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DriftState {
    /// Runs the version it should.
    InSync,
    /// `current` names another version than the one it should run.
    Drifted,
    /// The right version is installed but no process of it runs.
    NotRunning,
    /// It should run the app and has no `current` of it.
    Missing,
    /// Its versionchecker has not reported for three intervals: what it
    /// runs is not known.
    Stale,
    /// It runs an app nobody deployed to it.
    UnknownApp,
    /// A deploy to it is in flight, or one landed after its last report:
    /// not drift, wait for the next report.
    Deploying,
    #[serde(other)]
    Unknown,
}

impl DriftState {
    /// Every state a server computes, in display order.
    pub const ALL: [DriftState; 7] = [
        DriftState::InSync,
        DriftState::Drifted,
        DriftState::NotRunning,
        DriftState::Missing,
        DriftState::Stale,
        DriftState::UnknownApp,
        DriftState::Deploying,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::InSync => "in-sync",
            DriftState::Drifted => "drifted",
            DriftState::NotRunning => "not-running",
            DriftState::Missing => "missing",
            DriftState::Stale => "stale",
            DriftState::UnknownApp => "unknown-app",
            DriftState::Deploying => "deploying",
            DriftState::Unknown => "unknown",
        }
    }

    /// Parses a state's name (`in-sync`, `not-running`, …).
    pub fn parse(s: &str) -> Option<DriftState> {
        DriftState::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether a deploy of the desired version fixes it: the hosts a sync
    /// takes.
    pub fn needs_sync(self) -> bool {
        matches!(
            self,
            DriftState::Drifted | DriftState::NotRunning | DriftState::Missing
        )
    }
}

impl fmt::Display for DriftState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource an app uses more of on a host than its configured limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitBreach {
    /// `disk` (releases, shared data and logs) or `memory` (resident).
    pub resource: String,
    pub used_bytes: u64,
    pub limit_bytes: u64,
}

/// One app on one host: what it should run, what it reported, the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftHost {
    pub cluster: Cluster,
    pub host: HostName,
    pub app: AppName,
    pub state: DriftState,
    /// Why, for people: what runs, what should, since when.
    pub reason: String,
    /// What the last successful deploy (or rollback) installed there.
    pub desired: Option<Version>,
    /// The deploy that asked for `desired`.
    pub desired_deploy: Option<DeployId>,
    /// What `current` names, per the last report.
    pub current: Option<Version>,
    /// The app's process, per the last report.
    pub process: Option<ProcessReport>,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default)]
    pub disk: Option<AppDisk>,
    /// When the host's last report was taken (AppTracker's clock).
    pub reported_at: Option<Timestamp>,
    /// Resources over the app's configured limits.
    #[serde(default)]
    pub over_limits: Vec<LimitBreach>,
}

/// How many hosts of one app on one cluster are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DriftCounts {
    pub in_sync: usize,
    pub drifted: usize,
    pub not_running: usize,
    pub missing: usize,
    pub stale: usize,
    pub unknown_app: usize,
    pub deploying: usize,
    /// Hosts over a resource limit, whatever their state.
    #[serde(default)]
    pub over_limit: usize,
}

impl DriftCounts {
    pub fn add(&mut self, state: DriftState) {
        *self.slot(state) += 1;
    }

    pub fn get(&self, state: DriftState) -> usize {
        match state {
            DriftState::InSync => self.in_sync,
            DriftState::Drifted => self.drifted,
            DriftState::NotRunning => self.not_running,
            DriftState::Missing => self.missing,
            DriftState::Stale => self.stale,
            DriftState::UnknownApp => self.unknown_app,
            DriftState::Deploying => self.deploying,
            DriftState::Unknown => 0,
        }
    }

    fn slot(&mut self, state: DriftState) -> &mut usize {
        match state {
            DriftState::InSync => &mut self.in_sync,
            DriftState::Drifted => &mut self.drifted,
            DriftState::NotRunning => &mut self.not_running,
            DriftState::Missing => &mut self.missing,
            DriftState::Stale => &mut self.stale,
            DriftState::UnknownApp => &mut self.unknown_app,
            // A newer server's state: counted with `deploying`, which
            // never alarms anyone.
            DriftState::Deploying | DriftState::Unknown => &mut self.deploying,
        }
    }

    /// Every host counted once (by state).
    pub fn total(&self) -> usize {
        DriftState::ALL.into_iter().map(|s| self.get(s)).sum()
    }

    /// Hosts a sync would redeploy: drifted, not running or missing.
    pub fn out_of_sync(&self) -> usize {
        self.drifted + self.not_running + self.missing
    }
}

/// One app on one cluster, summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DriftSummary {
    pub app: AppName,
    pub cluster: Cluster,
    pub counts: DriftCounts,
    /// The versions its hosts should run (one, unless a deploy was partial).
    pub desired: Vec<Version>,
}

/// A host's versionchecker: when it last reported and whether that is too
/// long ago.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentStatus {
    pub cluster: Cluster,
    pub host: HostName,
    pub reported_at: Option<Timestamp>,
    pub interval_ms: Option<u64>,
    pub stale: bool,
    /// Free and total space where the host layout lives.
    pub disk: Option<crate::report::FsSpace>,
}

/// `GET /api/v1/drift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftReport {
    pub generated_at: Timestamp,
    /// Per app and cluster (within the `app` and `cluster` filters; the
    /// `state` filter only narrows `hosts`).
    pub summary: Vec<DriftSummary>,
    /// One row per app and host, sorted by cluster, app, host.
    pub hosts: Vec<DriftHost>,
    /// One row per host that has a grabber or a versionchecker.
    #[serde(default)]
    pub agents: Vec<AgentStatus>,
}

/// The query of `GET /api/v1/drift`: all three optional. `state` is a
/// state's name (`drifted`) or several, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DriftQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// `POST /api/v1/drift/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncRequest {
    pub app: AppName,
    pub cluster: Cluster,
}

/// What a sync did: one normal deploy of the desired version to exactly
/// the hosts that drifted, and the out-of-sync hosts it left alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncOutcome {
    pub deploy: Deploy,
    /// The hosts the deploy takes.
    pub hosts: Vec<HostName>,
    /// Out of sync but not in this deploy, with why (another desired
    /// version: sync again once this deploy ends).
    #[serde(default)]
    pub left: Vec<SkippedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkippedHost {
    pub host: HostName,
    pub state: DriftState,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_stable_names() {
        for s in DriftState::ALL {
            assert_eq!(DriftState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        let later: DriftState = serde_json::from_str("\"quarantined\"").unwrap();
        assert_eq!(later, DriftState::Unknown);
        assert_eq!(DriftState::parse("in_sync"), None);
    }

    #[test]
    fn counts_add_up() {
        let mut c = DriftCounts::default();
        for s in DriftState::ALL {
            c.add(s);
        }
        c.add(DriftState::Drifted);
        assert_eq!(c.total(), 8);
        assert_eq!(c.drifted, 2);
        assert_eq!(c.out_of_sync(), 4);
    }
}
