//! Deploy events: what grabbers report per host, the recorded history, and
//! the live stream the dashboard and `deploy status --follow` read.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::deploys::{DeployHost, DeployStatus, HostPhase};
use crate::{Cluster, DeployId, HostName, Timestamp, Version};

/// One entry of `GET /api/v1/deploys/{id}/events`: a host reached a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostEventRecord {
    pub host: HostName,
    pub phase: HostPhase,
    pub failed_phase: Option<HostPhase>,
    pub message: Option<String>,
    pub at: Timestamp,
}

/// `POST /api/v1/deploys/{id}/hosts/{host}/events`: a grabber reports progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostEvent {
    pub cluster: Cluster,
    pub phase: HostPhase,
    pub failed_phase: Option<HostPhase>,
    #[serde(default)]
    pub rolled_back: bool,
    pub message: Option<String>,
    pub log_tail: Option<String>,
    /// How the release's bytes came, once the host has them (sent with
    /// the `extracting` phase); absent otherwise and from older grabbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// How a host got a release: bytes it downloaded (from the origin and
/// from peers) and bytes of files it already had and linked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    /// Bytes received: the artifact, or the index and the missing files.
    pub bytes_downloaded: u64,
    /// Of `bytes_downloaded`, those served by other hosts of the cluster.
    #[serde(default)]
    pub bytes_from_peers: u64,
    /// Bytes of the release's files found on the host and linked.
    pub bytes_reused: u64,
}

// What a grabber says about installing a release. The wire shape stays
// flat (`failed_phase`, `rolled_back` and `log_tail` mean something only
// when `phase` is `failed`); these two are the only ways to make one right.
impl HostEvent {
    /// The host reached `phase` of an install (or ended it: done, skipped).
    pub fn progress(cluster: Cluster, phase: HostPhase, message: impl Into<String>) -> Self {
        Self {
            cluster,
            phase,
            failed_phase: None,
            rolled_back: false,
            message: Some(message.into()),
            log_tail: None,
            transfer: None,
        }
    }

    /// The install failed in phase `in_phase`; `rolled_back` when the
    /// previous release runs again. `log` is the install's log (and the
    /// app's output).
    pub fn failed(
        cluster: Cluster,
        in_phase: HostPhase,
        rolled_back: bool,
        message: impl Into<String>,
        log: impl Into<String>,
    ) -> Self {
        Self {
            cluster,
            phase: HostPhase::Failed,
            failed_phase: Some(in_phase),
            rolled_back,
            message: Some(message.into()),
            log_tail: Some(log.into()),
            transfer: None,
        }
    }
}

/// What the dashboard and `deploy status --follow` receive on
/// `GET /api/v1/deploys/{id}/stream`, and what the event stream of all
/// deploys (`GET /api/v1/events`) carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeployEvent {
    /// A host moved to a new phase.
    Host {
        deploy_id: DeployId,
        #[serde(flatten)]
        host: DeployHost,
    },
    /// The deploy itself changed status.
    Status {
        deploy_id: DeployId,
        status: DeployStatus,
        version: Option<Version>,
        error: Option<String>,
    },
    #[serde(other)]
    Unknown,
}
