//! Deploy bodies: asking for a deploy, a deploy and its hosts' phases as
//! the API shows them, the hosts a deploy would touch, and rollbacks.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::events::Transfer;
use super::hosts::Host;
use super::rollout::{Portion, Strategy};
use crate::{
    AppName, BuildId, Cluster, DeployId, GitRef, HostName, HostSelector, Timestamp, Version,
};

/// `POST /api/v1/deploys`. Exactly one of `version` and `git_ref` is given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateDeploy {
    pub app: AppName,
    pub version: Option<Version>,
    /// The commit to deploy (built first unless a build of it exists), by
    /// branch, tag, sha or `HEAD` (the tip of the app's branch), with
    /// optional `~N`/`^N` steps back (`HEAD~1`).
    pub git_ref: Option<GitRef>,
    pub cluster: Cluster,
    /// Hosts of the cluster to touch; every host when absent.
    pub hosts: Option<HostSelector>,
    /// How the hosts are taken: all at once (the default), in batches, or a
    /// canary first.
    #[serde(default)]
    pub strategy: Strategy,
    /// Failed (or timed-out) hosts tolerated before the rollout halts and
    /// hosts not yet started stay untouched; none by default.
    #[serde(default)]
    pub max_failures: Portion,
    /// When the rollout fails (over `max_failures`), put the version each
    /// host ran before back on the hosts that switched, as a linked deploy.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// The cluster's name typed back: required to deploy to a protected
    /// cluster.
    #[serde(default)]
    pub confirm: Option<Cluster>,
    /// While another deploy of the app to the cluster is active, queue
    /// behind it (status `queued`) instead of being refused.
    #[serde(default)]
    pub wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// Waiting for another deploy of the app to the cluster to end.
    Queued,
    /// Waiting for its build, or for its release phase (`release_phase`).
    Building,
    Running,
    Succeeded,
    Failed,
    /// Some hosts succeeded, some did not.
    Partial,
    Cancelled,
    #[serde(other)]
    Unknown,
}

impl DeployStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeployStatus::Succeeded
                | DeployStatus::Failed
                | DeployStatus::Partial
                | DeployStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Queued => "queued",
            DeployStatus::Building => "building",
            DeployStatus::Running => "running",
            DeployStatus::Succeeded => "succeeded",
            DeployStatus::Failed => "failed",
            DeployStatus::Partial => "partial",
            DeployStatus::Cancelled => "cancelled",
            DeployStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one host is in installing one release (DESIGN.md "Host phases").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostPhase {
    Pending,
    Downloading,
    Verifying,
    Extracting,
    Switching,
    Starting,
    Checking,
    Done,
    /// Already ran that version: nothing was touched.
    Skipped,
    Failed,
    /// No progress report within the deadline, while its agent was alive.
    TimedOut,
    /// Its agent stopped heartbeating during the deploy: the host (or the
    /// grabber) is down, not the app.
    Unreachable,
    /// Left untouched: the rollout halted or was cancelled before its batch.
    NotStarted,
    #[serde(other)]
    Unknown,
}

impl HostPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            HostPhase::Done
                | HostPhase::Skipped
                | HostPhase::Failed
                | HostPhase::TimedOut
                | HostPhase::Unreachable
                | HostPhase::NotStarted
        )
    }

    /// A host that did not make it: counted against `max_failures`, taken
    /// by a retry.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            HostPhase::Failed | HostPhase::TimedOut | HostPhase::Unreachable
        )
    }

    pub fn is_success(self) -> bool {
        matches!(self, HostPhase::Done | HostPhase::Skipped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HostPhase::Pending => "pending",
            HostPhase::Downloading => "downloading",
            HostPhase::Verifying => "verifying",
            HostPhase::Extracting => "extracting",
            HostPhase::Switching => "switching",
            HostPhase::Starting => "starting",
            HostPhase::Checking => "checking",
            HostPhase::Done => "done",
            HostPhase::Skipped => "skipped",
            HostPhase::Failed => "failed",
            HostPhase::TimedOut => "timed_out",
            HostPhase::Unreachable => "unreachable",
            HostPhase::NotStarted => "not_started",
            HostPhase::Unknown => "unknown",
        }
    }

    /// Parses the snake_case name (as stored in the database).
    pub fn from_name(s: &str) -> HostPhase {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .unwrap_or(HostPhase::Unknown)
    }
}

impl std::fmt::Display for HostPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host's progress in one deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployHost {
    pub host: HostName,
    pub phase: HostPhase,
    /// With `failed`: the phase it failed in.
    pub failed_phase: Option<HostPhase>,
    /// With `failed`: whether the previous release runs again.
    pub rolled_back: bool,
    /// One line for people: what happened.
    pub message: Option<String>,
    /// With `failed`: the last lines of the app's or the step's log. Only
    /// one deploy's answer (`GET /api/v1/deploys/{id}`) carries it; lists
    /// of deploys leave it out (null).
    pub log_tail: Option<String>,
    pub updated_at: Timestamp,
    /// The batch of the rollout this host is in (0 for all at once).
    #[serde(default)]
    pub batch: u32,
    /// How the host got the release's bytes (downloaded, of which from
    /// peers, and reused from releases it had), once its grabber reported
    /// it with the `extracting` phase; absent before, and for grabbers that
    /// do not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// A deploy as the API shows it, with one row per targeted host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deploy {
    pub id: DeployId,
    pub app: AppName,
    /// Known once the build is (version given, or build reused/finished).
    pub version: Option<Version>,
    pub git_ref: Option<String>,
    pub build_id: Option<BuildId>,
    pub cluster: Cluster,
    pub hosts_selector: HostSelector,
    pub status: DeployStatus,
    /// Why the deploy as a whole failed (a failed build, no matching host,
    /// a rollout halted over `max_failures`).
    pub error: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub max_failures: Portion,
    /// The batch under way (0-based); hosts carry their batch.
    #[serde(default)]
    pub current_batch: u32,
    /// The deploy whose failed hosts this one retries.
    #[serde(default)]
    pub retry_of: Option<DeployId>,
    /// Roll the switched hosts back if the rollout fails.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// The failed deploy this one undoes.
    #[serde(default)]
    pub rollback_of: Option<DeployId>,
    /// Set while a batch waits for `POST /api/v1/deploys/{id}/continue`.
    #[serde(default)]
    pub paused_at: Option<Timestamp>,
    /// The token name of whoever asked (none for older deploys).
    #[serde(default)]
    pub requested_by: Option<String>,
    /// What the deploy does on its hosts: install a release (`deploy`), or
    /// restart, stop or start the one they run.
    #[serde(default)]
    pub action: crate::DeployAction,
    /// The app's config version the hosts run with (0: none set).
    #[serde(default)]
    pub config_version: u64,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub hosts: Vec<DeployHost>,
    /// The `[release] command` run once before any host switched, when the
    /// release has one (absent otherwise, and for a deploy that did not
    /// need it: every host already ran the version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_phase: Option<super::release_phase::ReleasePhase>,
}

/// `GET /api/v1/targets?cluster=C&hosts=REGEX`: the hosts a deploy with
/// that cluster and regex would touch, before anything happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Targets {
    pub cluster: Cluster,
    pub hosts_selector: HostSelector,
    /// Registered, alive and matching: what a deploy would touch, with what
    /// each runs now.
    pub hosts: Vec<Host>,
    /// Matching but left out, with why (its grabber is silent).
    pub excluded: Vec<ExcludedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExcludedHost {
    pub host: HostName,
    pub reason: String,
}

/// `POST /api/v1/apps/{app}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rollback {
    pub cluster: Cluster,
    /// The cluster's name typed back, for a protected cluster.
    #[serde(default)]
    pub confirm: Option<Cluster>,
}

/// The query of `GET /api/v1/deploys`: newest first, `limit` deploys (like
/// every list: default 100, at most 1000) after `cursor`, optionally only
/// one app's, one cluster's, or those in some statuses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeployQuery {
    /// Deploys per page: 1 to 1000, 100 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where the page starts: the `X-Next-Cursor` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
    /// Only this app's deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<AppName>)]
    pub app: Option<AppName>,
    /// Only deploys to this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<Cluster>)]
    pub cluster: Option<Cluster>,
    /// Only deploys in one of these statuses, comma separated
    /// (`queued,building,running`: those under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, pattern = "^(queued|building|running|succeeded|failed|partial|cancelled)(,(queued|building|running|succeeded|failed|partial|cancelled))*$", example = "queued,building,running")]
    pub status: Option<DeployStatuses>,
}

/// One or several deploy statuses, a filter: in a query, their names
/// comma separated (`running,queued`). Never empty, never `unknown`, each
/// once, in the order first given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeployStatuses(Vec<DeployStatus>);

/// The statuses a filter may name: every one but `unknown`.
const FILTERABLE: [DeployStatus; 7] = [
    DeployStatus::Queued,
    DeployStatus::Building,
    DeployStatus::Running,
    DeployStatus::Succeeded,
    DeployStatus::Failed,
    DeployStatus::Partial,
    DeployStatus::Cancelled,
];

impl DeployStatuses {
    /// The filter for `statuses`; `None` when they are none (or only
    /// `unknown`, which no stored deploy has).
    pub fn new(statuses: impl IntoIterator<Item = DeployStatus>) -> Option<Self> {
        let mut out: Vec<DeployStatus> = Vec::new();
        for s in statuses {
            if s != DeployStatus::Unknown && !out.contains(&s) {
                out.push(s);
            }
        }
        (!out.is_empty()).then_some(Self(out))
    }

    /// The deploys under way: queued, building or running.
    pub fn under_way() -> Self {
        Self(vec![
            DeployStatus::Queued,
            DeployStatus::Building,
            DeployStatus::Running,
        ])
    }

    pub fn as_slice(&self) -> &[DeployStatus] {
        &self.0
    }

    /// Reads `running,queued`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for name in s.split(',') {
            let name = name.trim();
            match FILTERABLE.iter().find(|f| f.as_str() == name) {
                Some(status) => out.push(*status),
                None => {
                    let known: Vec<&str> = FILTERABLE.iter().map(|f| f.as_str()).collect();
                    return Err(format!(
                        "`{}` is not a deploy status; write one or several of {}, comma separated",
                        name.chars().take(40).collect::<String>(),
                        known.join(", ")
                    ));
                }
            }
        }
        Self::new(out).ok_or_else(|| "name at least one deploy status".to_string())
    }
}

impl TryFrom<String> for DeployStatuses {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<DeployStatuses> for String {
    fn from(s: DeployStatuses) -> String {
        s.to_string()
    }
}

impl std::str::FromStr for DeployStatuses {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl std::fmt::Display for DeployStatuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_read_names_and_refuse_the_rest() {
        let f = DeployStatuses::parse("running,queued,running").unwrap();
        assert_eq!(f.as_slice(), [DeployStatus::Running, DeployStatus::Queued]);
        assert_eq!(f.to_string(), "running,queued");
        assert_eq!(DeployStatuses::parse(&f.to_string()).unwrap(), f);
        for bad in ["", "unknown", "running,", "paused", "RUNNING"] {
            assert!(DeployStatuses::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(DeployStatuses::new([DeployStatus::Unknown]), None);
        let q: DeployQuery = serde_json::from_str(r#"{"status":"failed,partial"}"#).unwrap();
        assert_eq!(
            q.status.map(|s| s.as_slice().to_vec()),
            Some(vec![DeployStatus::Failed, DeployStatus::Partial])
        );
    }
}
