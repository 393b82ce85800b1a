//! The control plane's internal data: what the storage layer returns and
//! the orchestration layer works with, apart from the wire types of
//! `deploy`. Plain data with no HTTP and no queries in it, so `db`,
//! `tracker` and the HTTP layer can all use it without knowing each other.
//!
//! The wire types are made from these in one conversion on the way out
//! (`Tracker::present_*`): a stored artifact has a key, never a URL, and a
//! deploy row has no host list to forget to fill.

use deploy::signing::Signature;
use deploy::{
    AppName, Build, BuildId, Cluster, Deploy, DeployHost, DeployId, DeployStatus, HostName,
    HostSelector, Portion, Sha256, Strategy, Timestamp, Version,
};

pub use deploy::Role;

/// Who is asking: the token's id, name, role and (for agents) cluster and
/// host. The HTTP layer authenticates it and checks what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's row id: what a build lease is bound to (a name can be
    /// revoked and made again; an id is never reused).
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub cluster: Option<Cluster>,
    /// An agent token bound to one host reports only for that host.
    pub host: Option<HostName>,
}

/// Who holds a build's lease (see `queue.rs`).
#[derive(Debug, Clone)]
pub struct Holder {
    /// What the build row records and every lease query compares:
    /// `token:<id>` or `builtin:<name>`.
    pub(crate) key: String,
    /// The display name the worker gave (or the in-process builder's).
    pub(crate) worker: String,
    /// The token's name, for messages.
    pub(crate) token: Option<String>,
}

impl Holder {
    /// The in-process builder called `name`. Its key cannot come from a
    /// request: every HTTP caller's key is its token's.
    pub fn in_process(name: &str) -> Self {
        Self {
            key: format!("builtin:{name}"),
            worker: name.to_string(),
            token: None,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.token {
            Some(token) => write!(f, "worker `{}` of token `{token}`", self.worker),
            None => write!(f, "the in-process builder `{}`", self.worker),
        }
    }
}

/// An artifact as received: the signature the worker sent, the sha256 and
/// size measured while it streamed in.
#[derive(Debug, Clone)]
pub struct Upload {
    pub signature: Signature,
    pub sha256: Sha256,
    pub size: u64,
}

/// A file index as received: like [`Upload`], for the index.
#[derive(Debug, Clone)]
pub struct IndexUpload {
    pub signature: Signature,
    pub sha256: Sha256,
    pub size: u64,
}

/// How a deploy came to be, beyond what its request says.
#[derive(Default)]
pub struct Origin<'a> {
    /// The exact hosts (a retry, a rollback, a drift sync) instead of those
    /// the request selects.
    pub hosts: Option<Vec<HostName>>,
    pub retry_of: Option<DeployId>,
    pub rollback_of: Option<DeployId>,
    /// Puts a version back that the hosts should run (a rollback, a drift
    /// sync): allowed during a freeze and past a pin.
    pub rollback: bool,
    /// Set up or confirmed in advance (auto-deploys, retries of a confirmed
    /// deploy, rollbacks on failure, syncs to the desired version): no typed
    /// confirmation for protected clusters.
    pub automated: bool,
    /// The token name of whoever asked.
    pub by: Option<&'a str>,
    /// The build to deploy, already requested (a webhook's push), instead
    /// of resolving the request's `git_ref` again; the ref is its label.
    pub build: Option<StoredBuild>,
    /// What the deploy does on its hosts (a restart, stop or start of the
    /// release they run); installs by default.
    pub action: deploy::DeployAction,
}

/// Where an artifact is in the artifact store
/// (`<app>/<app>-<version>.tar.gz`): a key, never a URL. Only
/// `Tracker::present_artifact` turns it into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactKey(String);

impl ArtifactKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An artifact as stored: its key and what a grabber checks it against.
/// The wire's `ArtifactRef` (with a download URL) is made from it on the
/// way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    pub key: ArtifactKey,
    pub sha256: Sha256,
    pub size: u64,
    /// Base64 ed25519 signature; empty for artifacts built before signing
    /// (grabbers refuse them).
    pub signature: String,
    /// The release's file index, when its build uploaded one and every
    /// file of the artifact was stored as a blob (`<app>/blobs/<sha256>`).
    pub index: Option<StoredIndex>,
}

impl StoredArtifact {
    /// The artifact with its index, when the build recorded all three of
    /// the index's columns.
    pub fn with_index(
        mut self,
        sha256: Option<Sha256>,
        size: Option<u64>,
        signature: Option<String>,
    ) -> Self {
        self.index = match (sha256, size, signature) {
            (Some(sha256), Some(size), Some(signature)) => Some(StoredIndex {
                key: ArtifactKey::new(index_key_of(self.key.as_str())),
                sha256,
                size,
                signature,
            }),
            _ => None,
        };
        self
    }
}

/// The store key of a release's file index: its artifact's key with
/// `.index.json` after it.
pub fn index_key_of(artifact_key: &str) -> String {
    format!("{artifact_key}.index.json")
}

/// A release's file index as stored: a key, never a URL (like the
/// artifact), and what a grabber checks it against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIndex {
    pub key: ArtifactKey,
    pub sha256: Sha256,
    pub size: u64,
    /// Base64 ed25519 signature under the index prefix
    /// (`deploy::signing::verify_index`).
    pub signature: String,
}

/// A build as stored: the wire `Build` without its artifact, and the stored
/// artifact beside it. Reads of the build's fields go through to `build`;
/// `Tracker::present_build` makes the wire `Build` (with a download URL).
#[derive(Debug, Clone)]
pub struct StoredBuild {
    /// The build; its `artifact` is always None here (see `artifact`).
    build: Build,
    pub artifact: Option<StoredArtifact>,
}

impl StoredBuild {
    /// `build` with `artifact` beside it (any artifact `build` holds is
    /// dropped: a wire artifact has no place in a stored build).
    pub fn new(mut build: Build, artifact: Option<StoredArtifact>) -> Self {
        build.artifact = None;
        Self { build, artifact }
    }

    /// The build without its artifact, and the artifact.
    pub fn into_parts(self) -> (Build, Option<StoredArtifact>) {
        (self.build, self.artifact)
    }
}

impl std::ops::Deref for StoredBuild {
    type Target = Build;

    fn deref(&self) -> &Build {
        &self.build
    }
}

/// What a host should run, as stored: the wire's `DesiredApp` with a stored
/// artifact.
#[derive(Debug, Clone)]
pub struct DesiredRow {
    pub app: AppName,
    pub version: Version,
    pub deploy_id: DeployId,
    pub artifact: StoredArtifact,
    /// Its deploy's config version and action.
    pub config_version: u64,
    pub action: deploy::DeployAction,
}

/// A deploy's row, without its hosts: what moving a deploy on reads once
/// per host report, so a deploy to N hosts does not read N² rows. The
/// wire's `Deploy` is a row plus its hosts ([`DeployRow::with_hosts`]).
#[derive(Debug, Clone)]
pub struct DeployRow {
    pub id: DeployId,
    pub app: AppName,
    pub version: Option<Version>,
    pub git_ref: Option<String>,
    pub build_id: Option<BuildId>,
    pub cluster: Cluster,
    pub hosts_selector: HostSelector,
    pub status: DeployStatus,
    pub error: Option<String>,
    pub strategy: Strategy,
    pub max_failures: Portion,
    pub current_batch: u32,
    pub retry_of: Option<DeployId>,
    pub rollback_on_failure: bool,
    pub rollback_of: Option<DeployId>,
    pub paused_at: Option<Timestamp>,
    pub requested_by: Option<String>,
    pub action: deploy::DeployAction,
    pub config_version: u64,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl DeployRow {
    /// The wire deploy: this row and its hosts.
    pub fn with_hosts(self, hosts: Vec<DeployHost>) -> Deploy {
        let DeployRow {
            id,
            app,
            version,
            git_ref,
            build_id,
            cluster,
            hosts_selector,
            status,
            error,
            strategy,
            max_failures,
            current_batch,
            retry_of,
            rollback_on_failure,
            rollback_of,
            paused_at,
            requested_by,
            action,
            config_version,
            created_at,
            finished_at,
        } = self;
        Deploy {
            id,
            app,
            version,
            git_ref,
            build_id,
            cluster,
            hosts_selector,
            status,
            error,
            strategy,
            max_failures,
            current_batch,
            retry_of,
            rollback_on_failure,
            rollback_of,
            paused_at,
            requested_by,
            action,
            config_version,
            created_at,
            finished_at,
            hosts,
            release_phase: None,
        }
    }
}

/// One config variable as stored in a config version: a plain value, or a
/// secret sealed with the secrets key (the database never holds it open).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredVar {
    pub key: String,
    /// None: app-wide.
    pub cluster: Option<Cluster>,
    #[serde(flatten)]
    pub value: StoredValue,
}

/// A stored value: `{"value": …}` or `{"sealed": …}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredValue {
    Value(String),
    Sealed(String),
}

/// One version of an app's whole config.
#[derive(Debug, Clone)]
pub struct StoredConfig {
    pub version: u64,
    pub vars: Vec<StoredVar>,
    pub created_by: String,
    pub created_at: Timestamp,
}
