//! "A release to install": which version of which app, the deploy that asked
//! for it, and where its artifact is. One type from the API (a host's desired
//! state, `DesiredApp`) through the bus (flattened into `DeployMessage`) to
//! the grabber, which installs a `Release`; no hand conversions between
//! shapes of the same four fields; with the artifact reference it carries.
//! It depends on the domain newtypes only (the API's types depend on it).
//!
//! The JSON keeps the shapes it had: `DesiredApp` *is* a `Release` (same
//! fields, same order, same OpenAPI schema name and description), and
//! `DeployMessage` carries its fields inline (`#[serde(flatten)]`), so a bus
//! message has the same keys and values as before.

use serde::{Deserialize, Serialize};

use crate::{AppName, DeployId, Sha256, Version};

/// A release to install: `version` of `app`, asked for by deploy
/// `deploy_id`, downloaded from `artifact`.
// The field order is the wire order of `DesiredApp` (and of the OpenAPI
// schema's `required` list). Fields carry no doc comments: they would
// become descriptions in the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    as = DesiredApp,
    description = "One app a host should run, with the deploy that asked for it."
)]
pub struct Release {
    pub app: AppName,
    pub version: Version,
    pub deploy_id: DeployId,
    pub artifact: ArtifactRef,
    /// The app's config version to run it with (`deploy env`); 0: none.
    #[serde(default)]
    pub config_version: u64,
    /// What to do with it; `deploy` (install and run) when absent.
    #[serde(default, skip_serializing_if = "DeployAction::is_deploy")]
    pub action: DeployAction,
}

/// What a deploy does to the app on its hosts. Every kind goes through the
/// same rollout (batches, health checks, rollback, host rows); only what a
/// host does differs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeployAction {
    /// Run this release with this config; nothing to do where both already
    /// run and are healthy.
    #[default]
    Deploy,
    /// Stop and start the app again (same release, the config named),
    /// health-checked, even where it already runs; once per deploy.
    Restart,
    /// Stop the app and keep it stopped (the supervisor, a sync and a
    /// grabber restart leave it down) until a start or a deploy.
    Stop,
    /// Start a stopped app again.
    Start,
}

impl DeployAction {
    pub fn is_deploy(&self) -> bool {
        *self == DeployAction::Deploy
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeployAction::Deploy => "deploy",
            DeployAction::Restart => "restart",
            DeployAction::Stop => "stop",
            DeployAction::Start => "start",
        }
    }

    /// Parses what `as_str` wrote (a stored value).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Deploy, Self::Restart, Self::Stop, Self::Start]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for DeployAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a built release can be downloaded, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactRef {
    /// Absolute URL the grabber downloads from.
    pub url: String,
    pub sha256: Sha256,
    pub size: u64,
    /// The packer's ed25519 signature over app, version and sha256 (see
    /// `signing`). Plain text on the wire, checked by the grabber before
    /// extraction, so a missing or bad one fails the install with a
    /// message instead of making the whole message unreadable.
    pub signature: String,
    /// The release's signed file index (`deploy::index`), when its build
    /// made one: a host that has some of the release's files fetches only
    /// the others. Absent from older AppTrackers and builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexRef>,
}

/// Where a release's file index can be downloaded, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IndexRef {
    /// Absolute URL of the index file.
    pub url: String,
    pub sha256: Sha256,
    pub size: u64,
    /// The packer's ed25519 signature over app, version and the index's
    /// sha256, under the index prefix (`signing::verify_index`).
    pub signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_has_the_desired_app_shape() {
        let r = Release {
            app: AppName::parse("hello").unwrap(),
            version: Version::parse("1-abcdef0").unwrap(),
            deploy_id: DeployId(7),
            artifact: ArtifactRef {
                url: "http://127.0.0.1:8080/artifacts/hello/hello-1-abcdef0.tar.gz".into(),
                sha256: crate::Sha256::parse("0".repeat(64)).unwrap(),
                size: 10,
                signature: "c2lnbmF0dXJl".into(),
                index: None,
            },
            config_version: 0,
            action: DeployAction::Deploy,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.starts_with(r#"{"app":"hello","version":"1-abcdef0","deploy_id":7,"artifact":{"#),
            "{json}"
        );
        assert!(
            !json.contains("action"),
            "a plain deploy says nothing: {json}"
        );
        assert_eq!(serde_json::from_str::<Release>(&json).unwrap(), r);
        // A desired state from an older AppTracker has neither field.
        let old = json.replace(r#","config_version":0"#, "");
        assert_eq!(serde_json::from_str::<Release>(&old).unwrap(), r);
        let restart = Release {
            action: DeployAction::Restart,
            config_version: 3,
            ..r
        };
        let json = serde_json::to_string(&restart).unwrap();
        assert!(
            json.contains(r#""config_version":3,"action":"restart""#),
            "{json}"
        );
        assert_eq!(DeployAction::parse("stop"), Some(DeployAction::Stop));
        assert_eq!(DeployAction::parse("reboot"), None);
    }
}
