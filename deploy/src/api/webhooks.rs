//! Webhook bodies: the providers, their per-app secrets (made, rotated,
//! listed), what a delivery started, and the build-trigger URL.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, BuildId, DeployId, Timestamp};

/// What a webhook delivery (or the build-trigger URL) started for its app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookOutcome {
    /// `built` (a build, and a deploy when the app auto-deploys),
    /// `ignored`, `skipped` (a push to the app's branch that builds
    /// nothing: its head commit says `[skip deploy]`, or it touches
    /// neither the app's root nor its `[build] watch` paths; `message`
    /// says which), `duplicate` (a delivery id seen before: nothing done)
    /// or `pong`.
    pub result: String,
    /// Why, for people.
    pub message: String,
    #[serde(default)]
    pub builds: Vec<BuildId>,
    #[serde(default)]
    pub deploys: Vec<DeployId>,
}

/// A VCS that sends push webhooks. Each has its own secret per app, so a
/// secret one provider sends in clear (GitLab's token header) cannot sign
/// another's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum WebhookProvider {
    /// `X-Hub-Signature-256`: HMAC-SHA256 of the body.
    #[serde(rename = "github")]
    GitHub,
    /// `X-Gitlab-Token`: the secret itself.
    #[serde(rename = "gitlab")]
    GitLab,
    /// Gitea and Forgejo (`X-Gitea-Signature` / `X-Forgejo-Signature`:
    /// HMAC-SHA256 of the body, in hex); `forgejo` names it too.
    #[serde(rename = "gitea", alias = "forgejo")]
    Gitea,
    #[serde(other)]
    Unknown,
}

impl WebhookProvider {
    /// The providers AppTracker takes webhooks from.
    pub const ALL: [WebhookProvider; 3] = [Self::GitHub, Self::GitLab, Self::Gitea];

    /// The name in URLs and the API: `github`, `gitlab`, `gitea`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for WebhookProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WebhookProvider {
    type Err = crate::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "github" => Ok(Self::GitHub),
            "gitlab" => Ok(Self::GitLab),
            "gitea" | "forgejo" => Ok(Self::Gitea),
            _ => Err(crate::ParseError::new(
                "webhook provider",
                s,
                "use github, gitlab, gitea or forgejo",
            )),
        }
    }
}

/// `POST /api/v1/apps/{app}/webhook-secrets/{provider}` (admin): make the
/// app's secret for a provider, or rotate it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetWebhookSecret {
    /// Replace an existing secret; the old one keeps working for `grace`.
    /// Without it, a provider that already has a secret is a `409`.
    #[serde(default)]
    pub rotate: bool,
    /// How long the old secret stays accepted after a rotation (`24h`,
    /// `30m`; `0s` ends it at once, for a leaked secret). AppTracker's
    /// `webhook_secret_grace` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

/// The answer to [`SetWebhookSecret`]: the secret, shown this once, and
/// what to give the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhookSecret {
    pub app: AppName,
    pub provider: WebhookProvider,
    /// The payload URL to configure at the provider.
    pub url: String,
    /// The secret (GitHub, Gitea/Forgejo: "Secret"; GitLab: "Secret
    /// token"). Never shown again.
    pub secret: String,
    /// After a rotation: until when the previous secret is still accepted.
    #[serde(default)]
    pub previous_valid_until: Option<Timestamp>,
}

/// `GET /api/v1/apps/{app}/webhook-secrets` (admin): which providers an
/// app takes pushes from, and where; never the secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecretInfo {
    pub provider: WebhookProvider,
    /// The payload URL to configure at the provider.
    pub url: String,
    pub created_at: Timestamp,
    /// When the secret was last rotated.
    #[serde(default)]
    pub rotated_at: Option<Timestamp>,
    /// Until when the previous secret is still accepted (during a
    /// rotation's grace).
    #[serde(default)]
    pub previous_valid_until: Option<Timestamp>,
}

/// `POST /api/v1/apps/{app}/trigger` (admin): a new secret build-trigger URL;
/// any earlier one stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TriggerUrl {
    pub url: String,
}
