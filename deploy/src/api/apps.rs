//! App bodies: registering an app, its auto-deploy rule, and an app as the
//! API shows it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, HostSelector, Timestamp};

/// `POST /api/v1/apps`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterApp {
    pub name: AppName,
    /// Where packer fetches the source: a path, or a `file://`, `git://`,
    /// `http(s)://` or `ssh://` URL (credentials come from packer's
    /// configuration, not the URL).
    pub git_url: String,
    /// The branch whose pushes (webhooks) start builds; `main` when absent.
    #[serde(default)]
    pub branch: Option<String>,
    /// Deploy every successful webhook build of `branch` here.
    #[serde(default)]
    pub auto_deploy: Option<AutoDeploy>,
}

impl RegisterApp {
    /// An app built from `main`, with no auto-deploy rule.
    pub fn new(name: AppName, git_url: impl Into<String>) -> Self {
        Self {
            name,
            git_url: git_url.into(),
            branch: None,
            auto_deploy: None,
        }
    }
}

/// "Auto-deploy the branch to this cluster when its build succeeds."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AutoDeploy {
    pub cluster: Cluster,
    /// Every host of the cluster when absent.
    #[serde(default)]
    pub hosts: Option<HostSelector>,
}

/// An app as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct App {
    pub name: AppName,
    pub git_url: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    #[serde(default)]
    pub auto_deploy: Option<AutoDeploy>,
    pub created_at: Timestamp,
}

fn default_branch() -> String {
    "main".to_string()
}
