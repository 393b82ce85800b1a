//! "A release to install": which version of which app, the deploy that asked
//! for it, and where its artifact is. One type from the API (a host's desired
//! state, `DesiredApp`) through the bus (flattened into `DeployMessage`) to
//! the grabber, which installs a `Release`; no hand conversions between
//! shapes of the same four fields.
//!
//! The JSON keeps the shapes it had: `DesiredApp` *is* a `Release` (same
//! fields, same order, same OpenAPI schema name and description), and
//! `DeployMessage` carries its fields inline (`#[serde(flatten)]`), so a bus
//! message has the same keys and values as before.

use serde::{Deserialize, Serialize};

use crate::{AppName, ArtifactRef, Cluster, DeployId, HostEvent, HostPhase, Version};

/// A release to install: `version` of `app`, asked for by deploy
/// `deploy_id`, downloaded from `artifact`.
// The field order is the wire order of `DesiredApp` (and of the OpenAPI
// schema's `required` list). Fields carry no doc comments: they would
// become descriptions in the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        as = DesiredApp,
        description = "One app a host should run, with the deploy that asked for it."
    )
)]
pub struct Release {
    pub app: AppName,
    pub version: Version,
    pub deploy_id: DeployId,
    pub artifact: ArtifactRef,
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
        }
    }
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
            },
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.starts_with(r#"{"app":"hello","version":"1-abcdef0","deploy_id":7,"artifact":{"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Release>(&json).unwrap(), r);
    }
}
