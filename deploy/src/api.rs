//! Wire types of the HTTP API under `/api/v1`: request and response bodies,
//! shared by AppTracker, the client, the CLI, the dashboard and the agents.
//!
//! Enums received from the other side carry an `Unknown` variant so an older
//! client keeps working when a newer server adds a state.

use serde::{Deserialize, Serialize};

use crate::release::ArtifactRef;
use crate::{
    AppName, BuildId, BuildType, Cluster, DeployId, GitRef, HostName, HostSelector, Sha256,
    Timestamp, Version,
};

/// The JSON body of every API error: a stable machine code and a message for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, snake_case: `not_found`, `invalid_input`, `conflict`, ...
    pub code: String,
    pub message: String,
}

// ---------------------------------------------------------------- pages

/// Items per page when a list request gives no `limit`.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The largest `limit` a list accepts; more is a `400 invalid_input`.
pub const MAX_PAGE_LIMIT: u32 = 1000;
/// The response header of a list that says where the next page starts;
/// absent on the last page. The body stays a plain JSON array, so clients
/// that know nothing of pages keep working.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// The paging parameters every list endpoint takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// Items per page: 1 to 1000, 100 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
    /// Where the page starts: the `X-Next-Cursor` header of the page
    /// before. Opaque; the first page when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 512))]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            limit: Some(limit),
            cursor: None,
        }
    }
}

/// One page of a list, and where the next one starts (none on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

// ---------------------------------------------------------------- apps

/// `POST /api/v1/apps`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoDeploy {
    pub cluster: Cluster,
    /// Every host of the cluster when absent.
    #[serde(default)]
    pub hosts: Option<HostSelector>,
}

/// An app as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// What a webhook delivery (or the build-trigger URL) started for its app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookOutcome {
    /// `built` (a build, and a deploy when the app auto-deploys),
    /// `ignored`, `duplicate` (a delivery id seen before: nothing done) or
    /// `pong`.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TriggerUrl {
    pub url: String,
}

// ---------------------------------------------------------------- builds

/// `POST /api/v1/apps/{app}/builds`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestBuild {
    /// Branch, tag or sha; the app's default branch (`main`) when absent.
    pub git_ref: Option<GitRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    #[serde(other)]
    Unknown,
}

impl BuildStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, BuildStatus::Succeeded | BuildStatus::Failed)
    }
}

/// A build as the API shows it. `log` is filled only when one build is asked
/// for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Build {
    pub id: BuildId,
    pub app: AppName,
    /// Per-app build number, the first part of the version.
    pub number: i64,
    pub git_ref: String,
    pub commit: String,
    pub version: Version,
    pub status: BuildStatus,
    pub build_type: Option<BuildType>,
    pub artifact: Option<ArtifactRef>,
    /// Why it failed, in one line.
    pub error: Option<String>,
    /// The worker holding a running build.
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub log: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Set when an admin marked the build bad: it is never reused (its
    /// commit is built again) and its version is never deployed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<BadMark>,
}

/// Who marked a build bad, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BadMark {
    pub at: Timestamp,
    /// The admin token's name.
    pub by: String,
    pub reason: String,
}

/// `POST /api/v1/builds/{id}/bad` (admin): mark an ended build bad.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkBuildBad {
    /// Why, for whoever is refused its version later.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 500))]
    pub reason: String,
}

/// The largest body `POST /api/v1/builds/{id}/result` accepts (8 MiB): a
/// result whose log, once JSON-escaped, is larger gets `413
/// payload_too_large`. A packer worker cuts its log to fit, counting the
/// escaping (`packer::worker::fit_log`).
pub const BUILD_RESULT_BODY_LIMIT: usize = 8 << 20;

/// `POST /api/v1/builds/claim`: a packer worker asks for work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimBuild {
    /// Unique per worker process; the claim is held in its name.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
        )
    )]
    pub worker: String,
}

/// A claimed build: what to build, and how long the claim lasts unless the
/// worker renews it (`POST /api/v1/builds/{id}/lease`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildJob {
    pub build: Build,
    pub git_url: String,
    pub lease_ms: u64,
}

/// How a build ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BuildOutcome {
    /// The artifact was uploaded (`PUT /api/v1/builds/{id}/artifact`) first.
    Succeeded {
        build_type: BuildType,
        sha256: Sha256,
        size: u64,
    },
    Failed {
        error: String,
    },
}

/// `POST /api/v1/builds/{id}/result`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildResult {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
        )
    )]
    pub worker: String,
    pub outcome: BuildOutcome,
    #[serde(default)]
    pub log: String,
}

/// `POST /api/v1/builds/{id}/lease` and `/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildWorker {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
        )
    )]
    pub worker: String,
}

/// `POST /api/v1/builds/{id}/log`: what a running build printed since the
/// last append, from the worker holding it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildLogChunk {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
        )
    )]
    pub worker: String,
    pub text: String,
}

// ---------------------------------------------------------------- deploys

/// `POST /api/v1/deploys`. Exactly one of `version` and `git_ref` is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateDeploy {
    pub app: AppName,
    pub version: Option<Version>,
    pub git_ref: Option<GitRef>,
    pub cluster: Cluster,
    /// Hosts of the cluster to touch; every host when absent.
    pub hosts: Option<HostSelector>,
    /// How the hosts are taken: all at once (the default), in batches, or a
    /// canary first.
    #[serde(default)]
    pub strategy: Strategy,
    /// Failed (or timed-out) hosts tolerated before the rollout halts and
    /// hosts not yet started stay untouched; none by default.
    #[serde(default)]
    pub max_failures: Portion,
    /// When the rollout fails (over `max_failures`), put the version each
    /// host ran before back on the hosts that switched, as a linked deploy.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// The cluster's name typed back: required to deploy to a protected
    /// cluster.
    #[serde(default)]
    pub confirm: Option<Cluster>,
    /// While another deploy of the app to the cluster is active, queue
    /// behind it (status `queued`) instead of being refused.
    #[serde(default)]
    pub wait: bool,
}

/// A number of hosts, or a share of the deploy's hosts: `3` or `"25%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Portion {
    Count(u32),
    Percent(u8),
}

impl Default for Portion {
    fn default() -> Self {
        Portion::Count(0)
    }
}

impl Portion {
    /// Parses `3` or `25%` (0–100).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a number of hosts or a percentage like 25%");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Portion::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse::<u32>().map(Portion::Count).map_err(|_| bad()),
        }
    }

    /// How many of `total` hosts this is (a percentage rounds up, so 10% of
    /// 5 hosts is one host).
    pub fn of(self, total: usize) -> usize {
        match self {
            Portion::Count(n) => (n as usize).min(total),
            Portion::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

impl std::fmt::Display for Portion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Portion::Count(n) => write!(f, "{n}"),
            Portion::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Portion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Portion::parse(s)
    }
}

impl Serialize for Portion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Portion::Count(n) => s.serialize_u32(*n),
            Portion::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Portion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Portion::Count(n)),
            Raw::S(s) => Portion::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// How a deploy takes its hosts. A batch starts when every host of the one
/// before it is done (or failed, within `max_failures`), so at most a
/// batch's hosts are between stopping the old release and a healthy new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    AllAtOnce,
    /// Batches of `batch` hosts (at least one), `bake_ms` apart. With
    /// `max_unavailable` above the batch size, batches overlap: the next
    /// starts as soon as it fits beside the hosts still under way (`batch:
    /// 1, max_unavailable: 3` is a sliding window of three).
    Rolling {
        batch: Portion,
        #[serde(default)]
        bake_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_unavailable: Option<Portion>,
    },
    /// `canary` hosts first; the rest, in one batch, once they are healthy
    /// (and `bake_ms` later; with `manual`, only once someone continues the
    /// deploy: `POST /api/v1/deploys/{id}/continue`).
    Canary {
        canary: Portion,
        #[serde(default)]
        bake_ms: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        manual: bool,
    },
}

impl Strategy {
    /// The batches of `hosts`, in order: each host in exactly one.
    pub fn batches<T: Clone>(&self, hosts: &[T]) -> Vec<Vec<T>> {
        let n = hosts.len();
        match *self {
            Strategy::AllAtOnce => vec![hosts.to_vec()],
            Strategy::Rolling { batch, .. } => {
                let size = batch.of(n).max(1);
                hosts.chunks(size).map(<[T]>::to_vec).collect()
            }
            Strategy::Canary { canary, .. } => {
                let first = canary.of(n).clamp(1, n.max(1));
                let (a, b) = hosts.split_at(first.min(n));
                [a.to_vec(), b.to_vec()]
                    .into_iter()
                    .filter(|b| !b.is_empty())
                    .collect()
            }
        }
    }

    /// With overlapping batches, how many of `total` hosts may be under way
    /// at once; None when batches go one after another.
    pub fn window(&self, total: usize) -> Option<usize> {
        match *self {
            Strategy::Rolling {
                batch,
                max_unavailable: Some(m),
                ..
            } => {
                let m = m.of(total).max(1);
                (m > batch.of(total).max(1)).then_some(m)
            }
            _ => None,
        }
    }

    /// Why this strategy cannot deploy `total` hosts, if it cannot.
    pub fn check(&self, total: usize) -> Result<(), String> {
        if let Strategy::Rolling {
            batch,
            bake_ms,
            max_unavailable: Some(m),
        } = *self
        {
            let (b, m) = (batch.of(total).max(1), m.of(total).max(1));
            if m < b {
                return Err(format!(
                    "max_unavailable {m} is below the batch size {b}: a batch could never start"
                ));
            }
            if m > b && bake_ms > 0 {
                return Err(
                    "bake_ms needs batches one after another: drop it or make max_unavailable the batch size"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Whether batch `next` waits for a human to continue the deploy.
    pub fn waits_for_continue(&self, next: u32) -> bool {
        matches!(*self, Strategy::Canary { manual: true, .. }) && next >= 1
    }

    /// The wait between two batches.
    pub fn bake_ms(&self) -> u64 {
        match *self {
            Strategy::AllAtOnce => 0,
            Strategy::Rolling { bake_ms, .. } | Strategy::Canary { bake_ms, .. } => bake_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// Waiting for another deploy of the app to the cluster to end.
    Queued,
    /// Waiting for its build.
    Building,
    Running,
    Succeeded,
    Failed,
    /// Some hosts succeeded, some did not.
    Partial,
    Cancelled,
    #[serde(other)]
    Unknown,
}

impl DeployStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeployStatus::Succeeded
                | DeployStatus::Failed
                | DeployStatus::Partial
                | DeployStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Queued => "queued",
            DeployStatus::Building => "building",
            DeployStatus::Running => "running",
            DeployStatus::Succeeded => "succeeded",
            DeployStatus::Failed => "failed",
            DeployStatus::Partial => "partial",
            DeployStatus::Cancelled => "cancelled",
            DeployStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one host is in installing one release (DESIGN.md "Host phases").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostPhase {
    Pending,
    Downloading,
    Verifying,
    Extracting,
    Switching,
    Starting,
    Checking,
    Done,
    /// Already ran that version: nothing was touched.
    Skipped,
    Failed,
    /// No progress report within the deadline, while its agent was alive.
    TimedOut,
    /// Its agent stopped heartbeating during the deploy: the host (or the
    /// grabber) is down, not the app.
    Unreachable,
    /// Left untouched: the rollout halted or was cancelled before its batch.
    NotStarted,
    #[serde(other)]
    Unknown,
}

impl HostPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            HostPhase::Done
                | HostPhase::Skipped
                | HostPhase::Failed
                | HostPhase::TimedOut
                | HostPhase::Unreachable
                | HostPhase::NotStarted
        )
    }

    /// A host that did not make it: counted against `max_failures`, taken
    /// by a retry.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            HostPhase::Failed | HostPhase::TimedOut | HostPhase::Unreachable
        )
    }

    pub fn is_success(self) -> bool {
        matches!(self, HostPhase::Done | HostPhase::Skipped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HostPhase::Pending => "pending",
            HostPhase::Downloading => "downloading",
            HostPhase::Verifying => "verifying",
            HostPhase::Extracting => "extracting",
            HostPhase::Switching => "switching",
            HostPhase::Starting => "starting",
            HostPhase::Checking => "checking",
            HostPhase::Done => "done",
            HostPhase::Skipped => "skipped",
            HostPhase::Failed => "failed",
            HostPhase::TimedOut => "timed_out",
            HostPhase::Unreachable => "unreachable",
            HostPhase::NotStarted => "not_started",
            HostPhase::Unknown => "unknown",
        }
    }

    /// Parses the snake_case name (as stored in the database).
    pub fn from_name(s: &str) -> HostPhase {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .unwrap_or(HostPhase::Unknown)
    }
}

impl std::fmt::Display for HostPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host's progress in one deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployHost {
    pub host: HostName,
    pub phase: HostPhase,
    /// With `failed`: the phase it failed in.
    pub failed_phase: Option<HostPhase>,
    /// With `failed`: whether the previous release runs again.
    pub rolled_back: bool,
    /// One line for people: what happened.
    pub message: Option<String>,
    /// With `failed`: the last lines of the app's or the step's log.
    pub log_tail: Option<String>,
    pub updated_at: Timestamp,
    /// The batch of the rollout this host is in (0 for all at once).
    #[serde(default)]
    pub batch: u32,
}

/// A deploy as the API shows it, with one row per targeted host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deploy {
    pub id: DeployId,
    pub app: AppName,
    /// Known once the build is (version given, or build reused/finished).
    pub version: Option<Version>,
    pub git_ref: Option<String>,
    pub build_id: Option<BuildId>,
    pub cluster: Cluster,
    pub hosts_selector: HostSelector,
    pub status: DeployStatus,
    /// Why the deploy as a whole failed (a failed build, no matching host,
    /// a rollout halted over `max_failures`).
    pub error: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub max_failures: Portion,
    /// The batch under way (0-based); hosts carry their batch.
    #[serde(default)]
    pub current_batch: u32,
    /// The deploy whose failed hosts this one retries.
    #[serde(default)]
    pub retry_of: Option<DeployId>,
    /// Roll the switched hosts back if the rollout fails.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// The failed deploy this one undoes.
    #[serde(default)]
    pub rollback_of: Option<DeployId>,
    /// Set while a batch waits for `POST /api/v1/deploys/{id}/continue`.
    #[serde(default)]
    pub paused_at: Option<Timestamp>,
    /// The token name of whoever asked (none for older deploys).
    #[serde(default)]
    pub requested_by: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub hosts: Vec<DeployHost>,
}

/// `GET /api/v1/targets?cluster=C&hosts=REGEX`: the hosts a deploy with
/// that cluster and regex would touch, before anything happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Targets {
    pub cluster: Cluster,
    pub hosts_selector: HostSelector,
    /// Registered, alive and matching: what a deploy would touch, with what
    /// each runs now.
    pub hosts: Vec<Host>,
    /// Matching but left out, with why (its grabber is silent).
    pub excluded: Vec<ExcludedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExcludedHost {
    pub host: HostName,
    pub reason: String,
}

/// `POST /api/v1/apps/{app}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollback {
    pub cluster: Cluster,
    /// The cluster's name typed back, for a protected cluster.
    #[serde(default)]
    pub confirm: Option<Cluster>,
}

/// An app held at a version on a cluster (set by a rollback): deploys of
/// any other version are refused until it is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetProtected {
    pub protected: bool,
}

/// `POST /api/v1/clusters/{cluster}/freeze`: no deploys until `until`, or
/// for `duration` (`"2h"`, `"30m"`); exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Freeze {
    #[serde(default)]
    pub until: Option<Timestamp>,
    #[serde(default)]
    pub duration: Option<String>,
    /// Shown to everyone whose deploy is refused.
    pub reason: String,
}

/// One entry of `GET /api/v1/deploys/{id}/events`: a host reached a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostEventRecord {
    pub host: HostName,
    pub phase: HostPhase,
    pub failed_phase: Option<HostPhase>,
    pub message: Option<String>,
    pub at: Timestamp,
}

/// `POST /api/v1/deploys/{id}/hosts/{host}/events`: a grabber reports progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostEvent {
    pub cluster: Cluster,
    pub phase: HostPhase,
    pub failed_phase: Option<HostPhase>,
    #[serde(default)]
    pub rolled_back: bool,
    pub message: Option<String>,
    pub log_tail: Option<String>,
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

// ---------------------------------------------------------------- hosts

/// What a host runs of one app, as its grabber reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstalledApp {
    pub app: AppName,
    /// The release `current` names.
    pub version: Option<Version>,
    /// The supervised process, when running.
    pub pid: Option<u32>,
    /// The port the app was given (`PORT`).
    pub port: Option<u16>,
    /// What the grabber's supervisor makes of the process.
    #[serde(default)]
    pub status: AppRunStatus,
    /// Restarts after crashes since the release was installed.
    #[serde(default)]
    pub restarts: u32,
}

/// The supervisor's view of one app's process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AppRunStatus {
    /// Up (or not supervised yet: the default of older grabbers).
    #[default]
    Running,
    /// It exited on its own and waits for its next start.
    Restarting,
    /// It keeps crashing: restarted too often in a short time. Still
    /// retried, at the longest backoff.
    Failing,
    /// Nothing runs (no release, or the release could not start).
    Stopped,
}

impl AppRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Failing => "failing",
            Self::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for AppRunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/hosts/heartbeat`: a grabber registers and says it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    pub cluster: Cluster,
    pub host: HostName,
    /// The grabber's root directory on that host.
    pub root: String,
    #[serde(default)]
    pub apps: Vec<InstalledApp>,
}

/// A host as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Host {
    pub cluster: Cluster,
    pub name: HostName,
    pub root: String,
    pub registered_at: Timestamp,
    pub last_seen: Timestamp,
    pub apps: Vec<InstalledApp>,
}

/// One app a host should run, with the deploy that asked for it: a
/// [`Release`](crate::Release), under the name the API has always used.
pub type DesiredApp = crate::Release;

/// `GET /api/v1/hosts/{cluster}/{host}/desired`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DesiredState {
    pub cluster: Cluster,
    pub host: HostName,
    pub apps: Vec<DesiredApp>,
}

// ---------------------------------------------------------------- tokens

/// `POST /api/v1/tokens` (admin): a new API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    /// Unique, for people to recognise it in the audit trail.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
        )
    )]
    pub name: String,
    /// `viewer`, `deployer`, `admin`, `agent` (grabbers and
    /// versioncheckers) or `builder` (packer workers).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(viewer|deployer|admin|agent|builder)$")
    )]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub name: String,
    pub token: String,
}

/// The answer to `POST /api/v1/sessions`: a dashboard session acting for
/// the token that asked, shown once. The dashboard keeps it in a cookie in
/// place of the token itself; it expires, and ends with its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedSession {
    /// `sls_` and 40 hex digits.
    pub session: String,
    pub expires_at: Timestamp,
}

/// A token as `GET /api/v1/tokens` lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

// ---------------------------------------------------------------- audit

/// One state-changing API request as `GET /api/v1/audit` lists it: who did
/// what, when, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Increases with every entry: the key of `before` pagination.
    pub id: i64,
    pub at: Timestamp,
    /// The token's name (never the token), `webhook:<provider>`,
    /// `build-trigger`, or `anonymous` when no valid token was sent.
    pub actor: String,
    /// The token's role (`viewer`, `deployer`, `admin`, `agent`), or
    /// `webhook` / `trigger`; none when anonymous.
    pub role: Option<String>,
    pub method: String,
    /// The route the request matched (`/api/v1/deploys/{id}`); none when
    /// it matched no route.
    pub route: Option<String>,
    /// The path asked for, without its query. Routes whose path holds a
    /// secret (build-trigger URLs) show the route instead.
    pub path: String,
    /// The app the request concerned, when there is one.
    pub app: Option<AppName>,
    /// What the request acted on, for people (`deploy 7 to local`).
    pub target: Option<String>,
    /// The address the request came from (the connection's peer).
    pub peer: Option<String>,
    /// The HTTP status of the answer; 499 when the client went away before
    /// it.
    pub status: u16,
    /// The stable error `code` of the answer, when it failed with one.
    pub error_code: Option<String>,
}

/// The query of `GET /api/v1/audit`: newest first, `limit` entries (like
/// every list: default 100, at most 1000) after `cursor` (or older than
/// `before`), optionally only one actor's or one app's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AuditQuery {
    /// Entries per page: 1 to 1000, 100 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
    /// Only entries with a smaller id: the last id of the previous page
    /// (what `cursor` does, kept for older clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub before: Option<i64>,
    /// Where the page starts: the `X-Next-Cursor` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 512))]
    pub cursor: Option<String>,
    /// Only this token's (or webhook's) requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 100))]
    pub actor: Option<String>,
    /// Only requests concerning this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<AppName>))]
    pub app: Option<AppName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_states_do_not_break_old_clients() {
        let p: HostPhase = serde_json::from_str("\"teleporting\"").unwrap();
        assert_eq!(p, HostPhase::Unknown);
        let s: DeployStatus = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(s, DeployStatus::Unknown);
        let e: DeployEvent = serde_json::from_str(r#"{"kind":"new_thing"}"#).unwrap();
        assert_eq!(e, DeployEvent::Unknown);
    }

    #[test]
    fn phases_round_trip_by_name() {
        for p in [HostPhase::TimedOut, HostPhase::Checking, HostPhase::Done] {
            assert_eq!(HostPhase::from_name(p.as_str()), p);
        }
    }
}

#[cfg(test)]
mod rollout_tests {
    use super::*;

    #[test]
    fn portions_parse_and_count() {
        assert_eq!(Portion::parse("3"), Ok(Portion::Count(3)));
        assert_eq!(Portion::parse("25%"), Ok(Portion::Percent(25)));
        assert!(Portion::parse("101%").unwrap_err().contains("101%"));
        assert!(Portion::parse("-1").is_err());
        assert!(Portion::parse("a few").is_err());
        assert_eq!(Portion::Percent(10).of(5), 1, "rounds up");
        assert_eq!(Portion::Percent(30).of(10), 3);
        assert_eq!(Portion::Count(20).of(10), 10);
        let json: Vec<Portion> = serde_json::from_str(r#"[3, "25%"]"#).unwrap();
        assert_eq!(json, [Portion::Count(3), Portion::Percent(25)]);
        assert_eq!(serde_json::to_string(&json).unwrap(), r#"[3,"25%"]"#);
        assert!(serde_json::from_str::<Portion>(r#""lots""#).is_err());
    }

    #[test]
    fn strategies_cut_batches() {
        let hosts: Vec<u32> = (1..=10).collect();
        let rolling = Strategy::Rolling {
            batch: Portion::Count(3),
            bake_ms: 0,
            max_unavailable: None,
        };
        assert_eq!(
            rolling.batches(&hosts),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
        );
        let canary = Strategy::Canary {
            canary: Portion::Percent(10),
            bake_ms: 0,
            manual: false,
        };
        assert_eq!(canary.batches(&hosts), vec![vec![1], (2..=10).collect()]);
        assert_eq!(Strategy::AllAtOnce.batches(&hosts), vec![hosts.clone()]);
        // A batch is never empty, and a zero batch size still moves.
        let zero = Strategy::Rolling {
            batch: Portion::Count(0),
            bake_ms: 0,
            max_unavailable: None,
        };
        // A window wider than the batch overlaps batches; as wide, it does not.
        let window = |batch, m, bake_ms| Strategy::Rolling {
            batch: Portion::Count(batch),
            bake_ms,
            max_unavailable: Some(m),
        };
        assert_eq!(window(1, Portion::Count(3), 0).window(10), Some(3));
        assert_eq!(window(2, Portion::Percent(50), 0).window(10), Some(5));
        assert_eq!(window(3, Portion::Count(3), 0).window(10), None);
        assert_eq!(rolling.window(10), None);
        assert!(window(3, Portion::Count(3), 5).check(10).is_ok());
        let e = window(3, Portion::Count(2), 0).check(10).unwrap_err();
        assert!(e.contains("below the batch size 3"), "{e}");
        let e = window(1, Portion::Count(3), 5).check(10).unwrap_err();
        assert!(e.contains("bake_ms"), "{e}");
        assert_eq!(zero.batches(&[1, 2]), vec![vec![1], vec![2]]);
        let all_canary = Strategy::Canary {
            canary: Portion::Count(5),
            bake_ms: 0,
            manual: true,
        };
        assert_eq!(all_canary.batches(&[1, 2]), vec![vec![1, 2]]);
        // Only what follows the canaries of a manual canary waits.
        assert!(!all_canary.waits_for_continue(0));
        assert!(all_canary.waits_for_continue(1));
        assert!(!canary.waits_for_continue(1));
        // `manual` is optional on the wire and left out when false.
        let parsed: Strategy =
            serde_json::from_str(r#"{"kind": "canary", "canary": "10%"}"#).unwrap();
        assert_eq!(parsed, canary);
        assert_eq!(
            serde_json::to_value(canary).unwrap(),
            serde_json::json!({"kind": "canary", "canary": "10%", "bake_ms": 0})
        );
        let json = serde_json::to_value(rolling).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "rolling", "batch": 3, "bake_ms": 0})
        );
    }
}
