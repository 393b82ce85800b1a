//! Notification bodies: where deploy and drift events go (`POST /api/v1/notifications`),
//! what is sent (a JSON event signed with HMAC-SHA256, or a Slack message),
//! and the deliveries, with their tries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, DeployId, DeployStatus, HostName, Timestamp, Version};

/// The header carrying a delivery's signature: `t=<unix ms>,v1=<hex of
/// HMAC-SHA256(secret, "<t>.<body>")>`.
pub const NOTIFICATION_SIGNATURE_HEADER: &str = "x-slipway-signature";

/// What happened: to a deploy, or on a host that drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    DeployStarted,
    DeploySucceeded,
    /// Failed, or partly (some hosts succeeded).
    DeployFailed,
    /// A rollback deploy succeeded: the previous version is back.
    DeployRolledBack,
    DeployCancelled,
    /// An app on a host turned out of sync (drifted, not running or
    /// missing); sent once until it runs in sync there again.
    DriftFound,
    #[serde(other)]
    Unknown,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::DeployStarted,
        NotifyEvent::DeploySucceeded,
        NotifyEvent::DeployFailed,
        NotifyEvent::DeployRolledBack,
        NotifyEvent::DeployCancelled,
        NotifyEvent::DriftFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::DeployStarted => "deploy_started",
            NotifyEvent::DeploySucceeded => "deploy_succeeded",
            NotifyEvent::DeployFailed => "deploy_failed",
            NotifyEvent::DeployRolledBack => "deploy_rolled_back",
            NotifyEvent::DeployCancelled => "deploy_cancelled",
            NotifyEvent::DriftFound => "drift_found",
            NotifyEvent::Unknown => "unknown",
        }
    }

    /// The event a deploy moving to `status` makes, if any.
    pub fn of(status: DeployStatus, rollback: bool) -> Option<Self> {
        match status {
            DeployStatus::Running => Some(NotifyEvent::DeployStarted),
            DeployStatus::Succeeded if rollback => Some(NotifyEvent::DeployRolledBack),
            DeployStatus::Succeeded => Some(NotifyEvent::DeploySucceeded),
            DeployStatus::Failed | DeployStatus::Partial => Some(NotifyEvent::DeployFailed),
            DeployStatus::Cancelled => Some(NotifyEvent::DeployCancelled),
            _ => None,
        }
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotifyEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        NotifyEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown event {s:?}: write one of {}",
                    NotifyEvent::ALL.map(NotifyEvent::as_str).join(", ")
                )
            })
    }
}

/// What the receiver gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    /// A [`NotificationPayload`], signed.
    #[default]
    Json,
    /// `{"text": "…"}` for a Slack (or Mattermost, Rocket.Chat) incoming
    /// webhook; signed too.
    Slack,
    #[serde(other)]
    Unknown,
}

impl NotifyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Slack => "slack",
            NotifyFormat::Unknown => "unknown",
        }
    }
}

/// `POST /api/v1/notifications` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateNotification {
    /// Only this app's events; every app's when absent.
    #[serde(default)]
    pub app: Option<AppName>,
    /// Only this cluster's events (its deploys, its hosts' drift); every
    /// cluster's when absent.
    #[serde(default)]
    pub cluster: Option<Cluster>,
    /// `https://` (or `http://` to a loopback or private receiver).
    pub url: String,
    #[serde(default)]
    pub format: NotifyFormat,
    /// The events sent; all of them when empty.
    #[serde(default)]
    pub events: Vec<NotifyEvent>,
}

/// A notification as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: i64,
    pub app: Option<AppName>,
    pub cluster: Option<Cluster>,
    /// Its scheme and host only (`https://hooks.slack.com/…`): the whole
    /// URL is sealed like a secret, since a Slack webhook's path is one.
    pub url: String,
    pub format: NotifyFormat,
    pub events: Vec<NotifyEvent>,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// The answer to a creation: the signing secret, shown this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedNotification {
    pub notification: Notification,
    pub secret: String,
}

impl std::fmt::Debug for CreatedNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedNotification")
            .field("notification", &self.notification)
            .finish_non_exhaustive()
    }
}

/// The JSON a receiver gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationPayload {
    pub event: NotifyEvent,
    /// The deploy; for `drift_found`, the one that asked for what the host
    /// should run.
    pub deploy_id: DeployId,
    pub app: AppName,
    pub cluster: Cluster,
    /// The deploy's version; for `drift_found`, what the host should run.
    pub version: Option<Version>,
    /// That deploy's status.
    pub status: DeployStatus,
    pub error: Option<String>,
    pub requested_by: Option<String>,
    /// The deploy's page on the website; for `drift_found`, the drift page.
    pub url: String,
    pub at: Timestamp,
    /// `drift_found`: the host that drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostName>,
    /// `drift_found`: why it is out of sync (what `current` names, what it
    /// should run), as the drift table says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its (next) try.
    Pending,
    Delivered,
    /// Gave up after its last try.
    Failed,
    #[serde(other)]
    Unknown,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "unknown",
        }
    }
}

/// One event sent (or being sent) to one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationDelivery {
    pub id: i64,
    pub notification_id: i64,
    /// The deploy; for `drift_found`, the one the host should run.
    pub deploy_id: DeployId,
    pub event: NotifyEvent,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_deploys_status() {
        assert_eq!(
            NotifyEvent::of(DeployStatus::Running, false),
            Some(NotifyEvent::DeployStarted)
        );
        assert_eq!(
            NotifyEvent::of(DeployStatus::Succeeded, true),
            Some(NotifyEvent::DeployRolledBack)
        );
        assert_eq!(
            NotifyEvent::of(DeployStatus::Partial, false),
            Some(NotifyEvent::DeployFailed)
        );
        assert_eq!(NotifyEvent::of(DeployStatus::Building, false), None);
        assert_eq!(
            "drift_found".parse::<NotifyEvent>(),
            Ok(NotifyEvent::DriftFound)
        );
        assert_eq!(
            "deploy_failed".parse::<NotifyEvent>(),
            Ok(NotifyEvent::DeployFailed)
        );
        assert!(
            "deploy_exploded"
                .parse::<NotifyEvent>()
                .unwrap_err()
                .contains("deploy_started")
        );
    }

    #[test]
    fn deploy_payloads_carry_no_host_or_reason_and_drift_ones_do() {
        let mut p = NotificationPayload {
            event: NotifyEvent::DeploySucceeded,
            deploy_id: DeployId(7),
            app: AppName::parse("hello").unwrap(),
            cluster: Cluster::parse("prod").unwrap(),
            version: Some(Version::parse("3-abcdef1").unwrap()),
            status: DeployStatus::Succeeded,
            error: None,
            requested_by: None,
            url: "https://slipway.example.com/deploys/7".into(),
            at: Timestamp(0),
            host: None,
            reason: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("host") && !json.contains("reason"), "{json}");
        assert_eq!(
            serde_json::from_str::<NotificationPayload>(&json).unwrap(),
            p
        );
        p.event = NotifyEvent::DriftFound;
        p.host = Some(HostName::parse("web-1").unwrap());
        p.reason = Some("`current` names 2-bbbbbbb".into());
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.contains(r#""event":"drift_found""#) && json.contains(r#""host":"web-1""#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<NotificationPayload>(&json).unwrap(),
            p
        );
    }
}
