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
