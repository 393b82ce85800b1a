//! Build bodies: asking for a build, a build and its artifact as the API
//! shows them, marking one bad, and what packer workers send (claims,
//! leases, logs, results).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::release::ArtifactRef;
use crate::{AppName, BuildId, BuildType, GitRef, Sha256, Timestamp, Version};

/// `POST /api/v1/apps/{app}/builds`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RequestBuild {
    /// The commit to build, by branch, tag, sha or `HEAD` (the tip of the
    /// app's branch), with optional `~N`/`^N` steps back (`HEAD~1`); the
    /// tip of the app's registered branch when absent.
    pub git_ref: Option<GitRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

    /// The status as the API writes it (`queued`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Queued => "queued",
            BuildStatus::Running => "running",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Unknown => "unknown",
        }
    }
}

/// A build as the API shows it. `log` is filled only when one build is asked
/// for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Build {
    pub id: BuildId,
    pub app: AppName,
    /// Per-app build number, the first part of the version.
    pub number: i64,
    /// The ref the build was asked by, as written (`main`, `HEAD~1`): a
    /// label, resolved once into `commit`.
    pub git_ref: String,
    pub commit: String,
    /// The commit's author, `Name <email>`, once a build of it succeeded
    /// (absent before, and from builds recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The first line of the commit's message (at most 200 characters),
    /// once a build of it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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
    /// Set when the release has a `[release] command`: how long it may run.
    /// A deploy of the build runs it once before any host switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_timeout_ms: Option<u64>,
}

/// Who marked a build bad, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BadMark {
    pub at: Timestamp,
    /// The admin token's name.
    pub by: String,
    pub reason: String,
}

/// `POST /api/v1/builds/{id}/bad` (admin): mark an ended build bad.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarkBuildBad {
    /// Why, for whoever is refused its version later.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// The largest body `POST /api/v1/builds/{id}/result` accepts (8 MiB): a
/// result whose log, once JSON-escaped, is larger gets `413
/// payload_too_large`. A packer worker cuts its log to fit, counting the
/// escaping (`packer::worker::fit_log`).
pub const BUILD_RESULT_BODY_LIMIT: usize = 8 << 20;

/// `POST /api/v1/builds/claim`: a packer worker asks for work.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimBuild {
    /// Unique per worker process; the claim is held in its name.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub worker: String,
    /// The worker builds an app from its `root` (a monorepo's
    /// subdirectory). Builds of apps with a root go only to workers that
    /// say so: an older worker would build the whole repository.
    #[serde(default)]
    pub roots: bool,
}

/// A claimed build: what to build, and how long the claim lasts unless the
/// worker renews it (`POST /api/v1/builds/{id}/lease`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildJob {
    pub build: Build,
    pub git_url: String,
    /// The app's root: the subdirectory of the repository to build as the
    /// project (the whole repository when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    pub lease_ms: u64,
}

/// How a build ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BuildOutcome {
    /// The artifact was uploaded (`PUT /api/v1/builds/{id}/artifact`) first.
    Succeeded {
        build_type: BuildType,
        sha256: Sha256,
        size: u64,
        /// The manifest's `[release] timeout`, when it has a `[release]
        /// command` (absent from older workers: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release_timeout_ms: Option<u64>,
        /// The built commit's author, `Name <email>` (absent from older
        /// workers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<String>,
        /// The first line of the built commit's message, at most 200
        /// characters (absent from older workers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// `[build] watch` of the built `slipway.toml`: the paths outside
        /// the app's root whose changes rebuild it (absent from older
        /// workers: unknown, so every push builds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watch: Option<Vec<String>>,
    },
    Failed {
        error: String,
    },
}

/// `POST /api/v1/builds/{id}/result`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildResult {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub worker: String,
    pub outcome: BuildOutcome,
    #[serde(default)]
    pub log: String,
}

/// `POST /api/v1/builds/{id}/lease` and `/release`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildWorker {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub worker: String,
}

/// `POST /api/v1/builds/{id}/log`: what a running build printed since the
/// last append, from the worker holding it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildLogChunk {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub worker: String,
    pub text: String,
}

/// The query of `GET /api/v1/builds`: every app's builds newest first,
/// `limit` of them (like every list: default 100, at most 1000) after
/// `cursor`, optionally only one app's. Without logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BuildQuery {
    /// Builds per page: 1 to 1000, 100 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where the page starts: the `X-Next-Cursor` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
    /// Only this app's builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<AppName>)]
    pub app: Option<AppName>,
}

/// The most log text one `GET /api/v1/builds/{id}/log` answers with, in
/// bytes (a little less when the cut would split a character).
pub const BUILD_LOG_PIECE_MAX: usize = 256 << 10;

/// The query of `GET /api/v1/builds/{id}/log`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BuildLogQuery {
    /// Where to start, in bytes: `0` (the default) for the beginning, then
    /// the `next` of the answer before.
    #[serde(default)]
    #[param(minimum = 0)]
    pub from: u64,
}

/// A piece of a build's log, for following it as it is written: ask again
/// with `from = next` until `done`.
///
/// Offsets count bytes since the build's log began. A log that starts over
/// (a build handed to another worker after its lease ran out logs again
/// from the start; a build's result whose log does not continue the one
/// streamed, because the stream dropped pieces or stopped at its cap,
/// replaces it) gets offsets after all the old ones, and a `from` inside
/// the old log answers from the new one's start: an answer whose `from` is
/// not the one asked for says the log started over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildLog {
    /// Where `text` starts.
    pub from: u64,
    /// At most [`BUILD_LOG_PIECE_MAX`] bytes of log, whole characters.
    pub text: String,
    /// Where the next piece starts: `from` plus the bytes of `text`.
    pub next: u64,
    pub status: BuildStatus,
    /// The build ended and `text` reaches the end of its log: nothing more
    /// will come.
    pub done: bool,
}
