//! Token bodies: making API tokens and dashboard sessions, and the token
//! list (never the secrets).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Cluster, HostName, Timestamp};

/// `POST /api/v1/tokens` (admin): a new API token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateToken {
    /// Unique, for people to recognise it in the audit trail.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub name: String,
    /// `viewer`, `deployer`, `admin`, `agent` (grabbers and
    /// versioncheckers) or `builder` (packer workers).
    #[schema(pattern = "^(viewer|deployer|admin|agent|builder)$")]
    pub role: String,
    /// Required for `agent` tokens, refused for the others.
    pub cluster: Option<Cluster>,
    /// For `agent` tokens only: the one host of `cluster` the token may
    /// report for (heartbeats, version reports, desired state, deploy
    /// events). Without it the token acts for every host of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostName>,
}

impl CreateToken {
    /// A token of `role` (a person's, or `builder`).
    pub fn new(name: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: role.into(),
            cluster: None,
            host: None,
        }
    }

    /// An agent token of `cluster`, for every host of it.
    pub fn agent(name: impl Into<String>, cluster: Cluster) -> Self {
        Self {
            cluster: Some(cluster),
            ..Self::new(name, "agent")
        }
    }

    /// An agent token of `cluster` that reports for `host` only.
    pub fn host_agent(name: impl Into<String>, cluster: Cluster, host: HostName) -> Self {
        Self {
            host: Some(host),
            ..Self::agent(name, cluster)
        }
    }
}

/// The answer to `POST /api/v1/tokens`: the only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub token: String,
}

/// The answer to `POST /api/v1/sessions`: a dashboard session acting for
/// the token that asked, shown once. The dashboard keeps it in a cookie in
/// place of the token itself; it expires, and ends with its token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedSession {
    /// `sls_` and 40 hex digits.
    pub session: String,
    pub expires_at: Timestamp,
}

/// The answer to `GET /api/v1/whoami`: who the request's credential acts
/// for. The dashboard asks it to show only the buttons a visitor may use
/// (AppTracker still checks every action itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The token's name (a session answers for its token).
    pub name: String,
    #[schema(value_type = String)]
    pub role: crate::Role,
    /// The one cluster the token may act on; none for every cluster.
    #[serde(default)]
    pub cluster: Option<Cluster>,
}

/// A token as `GET /api/v1/tokens` lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub cluster: Option<Cluster>,
    /// The one host an agent token reports for; none for a cluster-wide one.
    #[serde(default)]
    pub host: Option<HostName>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}
