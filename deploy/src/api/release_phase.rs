//! A deploy's release phase on the wire: what the deploy shows
//! (`Deploy::release_phase`) and what the grabber that ran the `[release]
//! command` reports (`POST /api/v1/deploys/{id}/release-phase`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Cluster, HostName, Timestamp};

/// The most of a release phase's output kept and shown (its end).
pub const RELEASE_LOG_BYTES: usize = 64 << 10;

/// Where a deploy's release phase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleasePhaseStatus {
    /// Asked of its host; no answer yet.
    Running,
    /// The command exited 0: the rollout went on.
    Succeeded,
    /// The command failed, timed out, could not run, or its host never
    /// answered: the deploy failed and no host switched.
    Failed,
    #[serde(other)]
    Unknown,
}

impl ReleasePhaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleasePhaseStatus::Running => "running",
            ReleasePhaseStatus::Succeeded => "succeeded",
            ReleasePhaseStatus::Failed => "failed",
            ReleasePhaseStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ReleasePhaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deploy's release phase: the `[release] command` run once, on one host,
/// before any host switched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleasePhase {
    /// The host that runs (or ran) it.
    pub host: HostName,
    pub status: ReleasePhaseStatus,
    /// One line for people: how it ended.
    pub message: Option<String>,
    /// The end of the command's output (stdout and stderr), up to
    /// [`RELEASE_LOG_BYTES`]. Empty in lists of deploys: only one deploy's
    /// answer (`GET /api/v1/deploys/{id}`) carries it.
    pub log: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// How a release phase ended on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOutcome {
    Succeeded,
    Failed,
    #[serde(other)]
    Unknown,
}

/// `POST /api/v1/deploys/{id}/release-phase/{host}`: the grabber that ran
/// the release phase says how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleasePhaseResult {
    pub cluster: Cluster,
    pub outcome: ReleaseOutcome,
    /// One line: the exit status, the timeout, or why it could not run.
    pub message: String,
    /// The end of the output (AppTracker keeps [`RELEASE_LOG_BYTES`]).
    #[serde(default)]
    pub log: String,
}

/// The end of `text`, at most `max` bytes, cut at a character boundary,
/// saying how much was dropped.
pub fn log_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut at = text.len() - max;
    while !text.is_char_boundary(at) {
        at += 1;
    }
    format!("({at} bytes dropped) …{}", &text[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_end_within_its_bound() {
        assert_eq!(log_tail("short", 10), "short");
        let t = log_tail(&format!("{}é the end", "x".repeat(100)), 10);
        assert!(t.ends_with("the end"), "{t}");
        assert!(t.starts_with("(") && t.contains("bytes dropped"), "{t}");
        let s: ReleasePhaseStatus = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(s, ReleasePhaseStatus::Unknown);
    }
}
