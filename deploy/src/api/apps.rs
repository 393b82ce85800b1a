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
    /// The branch the app follows, `main` when absent: its pushes
    /// (webhooks) start builds, a build asked for without a ref builds its
    /// tip, and `HEAD` in a ref stands for its tip.
    #[serde(default)]
    pub branch: Option<String>,
    /// Deploy every successful webhook build of `branch` here.
    #[serde(default)]
    pub auto_deploy: Option<AutoDeploy>,
    /// Whether a host that joins a cluster gets the app's version there at
    /// once (`auto`, the default) or waits for a deploy (`manual`).
    #[serde(default)]
    pub new_hosts: NewHostPolicy,
    /// The subdirectory of the repository the app is built from, for an
    /// app in a monorepo (`services/api`): its `slipway.toml`, lockfiles
    /// and everything the release holds come from there, and its pushes
    /// build only when they touch it (or its `[build] watch` paths). The
    /// whole repository when absent. Relative, `/`-separated, without
    /// `.`, `..` or empty parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

impl RegisterApp {
    /// An app built from `main`, with no auto-deploy rule.
    pub fn new(name: AppName, git_url: impl Into<String>) -> Self {
        Self {
            name,
            git_url: git_url.into(),
            branch: None,
            auto_deploy: None,
            new_hosts: NewHostPolicy::Auto,
            root: None,
        }
    }
}

/// What a host that joins a cluster gets of an app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NewHostPolicy {
    /// The version the cluster runs, as a deploy to that host alone.
    #[default]
    Auto,
    /// Nothing until someone deploys.
    Manual,
}

impl NewHostPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            NewHostPolicy::Auto => "auto",
            NewHostPolicy::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(NewHostPolicy::Auto),
            "manual" => Ok(NewHostPolicy::Manual),
            other => Err(format!(
                "new-host policy {other:?}: write `auto` or `manual`"
            )),
        }
    }
}

impl std::str::FromStr for NewHostPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
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
    /// What a host that joins a cluster gets of the app.
    #[serde(default)]
    pub new_hosts: NewHostPolicy,
    /// The subdirectory of the repository the app is built from; the
    /// whole repository when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    pub created_at: Timestamp,
}

fn default_branch() -> String {
    "main".to_string()
}
