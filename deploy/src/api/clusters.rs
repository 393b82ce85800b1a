//! Cluster controls: pins left by rollbacks, protection and freezes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, Timestamp, Version};

/// An app held at a version on a cluster (set by a rollback): deploys of
/// any other version are refused until it is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pin {
    pub app: AppName,
    pub cluster: Cluster,
    pub version: Version,
    /// The token name of whoever set it.
    pub pinned_by: String,
    pub reason: String,
    pub pinned_at: Timestamp,
}

/// `GET /api/v1/clusters`: a cluster's deploy controls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterSettings {
    pub name: Cluster,
    /// Deploys must confirm by naming the cluster (`confirm`).
    pub protected: bool,
    /// While set and in the future, no deploy starts on the cluster.
    pub frozen_until: Option<Timestamp>,
    pub freeze_reason: Option<String>,
    pub frozen_by: Option<String>,
    pub updated_by: String,
    pub updated_at: Timestamp,
}

impl ClusterSettings {
    /// The freeze in force at `now`, if any.
    pub fn frozen_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.frozen_until.filter(|until| *until > now)
    }
}

/// `PUT /api/v1/clusters/{cluster}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetProtected {
    pub protected: bool,
}

/// `POST /api/v1/clusters/{cluster}/freeze`: no deploys until `until`, or
/// for `duration` (`"2h"`, `"30m"`); exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Freeze {
    #[serde(default)]
    pub until: Option<Timestamp>,
    #[serde(default)]
    pub duration: Option<String>,
    /// Shown to everyone whose deploy is refused.
    pub reason: String,
}
