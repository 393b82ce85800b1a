//! Bus messages: JSON on channel `slipway.deploy.<cluster>` (DESIGN.md "Bus
//! messages"). Pub/sub is a doorbell; the desired state in the database is the
//! record.

use serde::{Deserialize, Serialize};

use crate::{Cluster, HostName, HostSelector, Release, Timestamp};

/// The default namespace of Slipway's Redis channels.
pub const DEFAULT_PREFIX: &str = "slipway";

/// The channel a cluster's grabbers listen on: `<prefix>.deploy.<cluster>`.
/// The prefix (default `slipway`) lets several installations share a Redis.
pub fn channel(prefix: &str, cluster: &Cluster) -> String {
    format!("{prefix}.deploy.{cluster}")
}

/// The channel of deploy events between AppTracker replicas.
pub fn events_channel(prefix: &str) -> String {
    format!("{prefix}.events")
}

/// Which hosts a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub cluster: Cluster,
    pub hosts: HostSelector,
    /// A batch of a rolling or canary deploy: exactly these hosts (of those
    /// `hosts` matches). A list, not a regex, so a batch of any size fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<HostName>>,
}

impl Target {
    /// The filter every grabber applies, whatever the strategy.
    pub fn selects(&self, cluster: &Cluster, host: &HostName) -> bool {
        &self.cluster == cluster
            && self.hosts.matches(host)
            && self.only.as_ref().is_none_or(|only| only.contains(host))
    }
}

/// "Install this release." The release's fields are inline in the JSON
/// (`deploy_id`, `app`, `version`, `artifact`, then `target` and
/// `issued_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployMessage {
    #[serde(flatten)]
    pub release: Release,
    pub target: Target,
    pub issued_at: Timestamp,
}

/// "Run this release's `[release] command` once, here, and report how it
/// went" (`POST /api/v1/deploys/{id}/release-phase`): sent to one host
/// (`target.only`) before a deploy's first batch. Same shape as
/// [`DeployMessage`]; a grabber that does not know the kind skips it and
/// AppTracker fails the deploy at its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePhaseMessage {
    #[serde(flatten)]
    pub release: Release,
    pub target: Target,
    pub issued_at: Timestamp,
}

/// "Read `app`'s log from `offset` (its end when absent), at most
/// `max_bytes`, and answer request `request_id`": for the hosts `target`
/// names (one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsMessage {
    pub request_id: i64,
    pub app: crate::AppName,
    #[serde(default)]
    pub offset: Option<u64>,
    pub max_bytes: u64,
    pub target: Target,
}

/// A message on a cluster's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived message at a time; boxing would only add noise at every match"
)]
pub enum BusMessage {
    Deploy(DeployMessage),
    /// Run the release phase of a deploy (one host).
    ReleasePhase(ReleasePhaseMessage),
    /// "Send AppTracker a piece of this app's log" (`deploy logs`).
    Logs(LogsMessage),
    /// Ask every grabber to reconcile with its desired state now.
    Sync,
    /// A kind this build does not know: logged and skipped.
    #[serde(other)]
    Unknown,
}

impl BusMessage {
    /// Parses a message; a malformed one is an error for the caller to log
    /// and skip, never to crash on.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppName, ArtifactRef, DeployId, Version};

    #[test]
    fn deploy_message_has_the_documented_shape() {
        let m = BusMessage::Deploy(DeployMessage {
            release: Release {
                deploy_id: DeployId(7),
                app: AppName::parse("hello").unwrap(),
                version: Version::parse("1-abcdef0").unwrap(),
                artifact: ArtifactRef {
                    url: "http://127.0.0.1:8080/artifacts/hello/hello-1-abcdef0.tar.gz".into(),
                    sha256: crate::Sha256::parse("0".repeat(64)).unwrap(),
                    size: 10,
                    signature: "c2lnbmF0dXJl".into(),
                    index: None,
                },
                config_version: 0,
                action: crate::DeployAction::Deploy,
            },
            target: Target {
                cluster: Cluster::parse("local").unwrap(),
                hosts: HostSelector::parse("local-[12]").unwrap(),
                only: None,
            },
            issued_at: Timestamp(1),
        });
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v["kind"], "deploy");
        // The release's fields are inline, as they were before `Release`.
        assert_eq!(v["deploy_id"], 7);
        assert_eq!(v["app"], "hello");
        assert_eq!(v["version"], "1-abcdef0");
        assert!(v.get("release").is_none());
        assert_eq!(v["target"]["hosts"], "local-[12]");
        assert_eq!(v["artifact"]["size"], 10);
        assert_eq!(v["artifact"]["signature"], "c2lnbmF0dXJl");
        assert!(v["target"].get("only").is_none(), "absent when not a batch");
        let back = BusMessage::from_json(&v.to_string()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_batch_selects_only_its_hosts() {
        let local = Cluster::parse("local").unwrap();
        let h = |n: &str| HostName::parse(n).unwrap();
        let t = Target {
            cluster: local.clone(),
            hosts: HostSelector::parse("web-.*").unwrap(),
            only: Some(vec![h("web-1"), h("web-3")]),
        };
        assert!(t.selects(&local, &h("web-1")));
        assert!(!t.selects(&local, &h("web-2")), "not in the batch");
        assert!(!t.selects(&local, &h("db-1")), "not matched");
        assert!(!t.selects(&Cluster::parse("other").unwrap(), &h("web-1")));
    }

    #[test]
    fn a_release_phase_message_names_its_kind() {
        let v = serde_json::json!({
            "kind": "release_phase", "deploy_id": 3, "app": "hello", "version": "1-abcdef0",
            "artifact": {"url": "http://x/a.tar.gz", "sha256": "0".repeat(64), "size": 1,
                         "signature": "c2ln"},
            "config_version": 2,
            "target": {"cluster": "local", "hosts": ".*", "only": ["web-1"]},
            "issued_at": 1,
        });
        let BusMessage::ReleasePhase(m) = BusMessage::from_json(&v.to_string()).unwrap() else {
            panic!("not a release phase message");
        };
        assert_eq!(m.release.deploy_id, crate::DeployId(3));
        assert_eq!(m.release.config_version, 2, "run with the deploy's config");
        let local = Cluster::parse("local").unwrap();
        assert!(m.target.selects(&local, &HostName::parse("web-1").unwrap()));
        assert!(!m.target.selects(&local, &HostName::parse("web-2").unwrap()));
        assert_eq!(
            serde_json::to_value(BusMessage::ReleasePhase(m)).unwrap(),
            v
        );
        // What a grabber that knows no release phase makes of it: a kind
        // it skips, whatever the fields.
        let mut newer = v.clone();
        newer["kind"] = serde_json::json!("release_phase_v2");
        assert_eq!(
            BusMessage::from_json(&newer.to_string()).unwrap(),
            BusMessage::Unknown
        );
    }

    #[test]
    fn unknown_and_malformed_messages() {
        assert_eq!(
            BusMessage::from_json(r#"{"kind":"reboot"}"#).unwrap(),
            BusMessage::Unknown
        );
        assert_eq!(
            BusMessage::from_json(r#"{"kind":"sync"}"#).unwrap(),
            BusMessage::Sync
        );
        assert!(BusMessage::from_json("not json").is_err());
        assert!(BusMessage::from_json(r#"{"kind":"deploy","app":"Bad App"}"#).is_err());
    }
}
