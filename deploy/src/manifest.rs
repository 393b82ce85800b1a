//! The release manifest: `.slipway/manifest.json` inside every artifact, so a
//! release is self-describing. Packer writes it; grabber reads it to know how
//! to run and health-check the release.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AppName, Timestamp, Version};

/// Where the manifest sits inside a release directory.
pub const MANIFEST_PATH: &str = ".slipway/manifest.json";

/// How an app is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildType {
    Python,
    Node,
    Generic,
}

impl BuildType {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildType::Python => "python",
            BuildType::Node => "node",
            BuildType::Generic => "generic",
        }
    }
}

impl std::fmt::Display for BuildType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The manifest of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub app: AppName,
    pub version: Version,
    /// Full hex sha of the commit built.
    pub commit: String,
    pub build_type: BuildType,
    pub built_at: Timestamp,
    pub run: RunSpec,
    pub health: HealthSpec,
    /// Number of regular files in the release, the manifest excluded.
    pub files: u64,
    /// Sum of the sizes of those files: the grabber refuses an archive that
    /// expands to more.
    pub content_bytes: u64,
}

/// How to start the app, from `[run]` in `slipway.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Shell command run from the release directory.
    pub command: String,
    /// Port the app listens on, exported as `PORT`; a host may shift it.
    pub port: Option<u16>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// SIGTERM, then SIGKILL after this long.
    pub stop_timeout_ms: u64,
}

/// How to tell the release is healthy, from `[health]` in `slipway.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// What to check.
    pub check: HealthCheck,
    /// How long the check may keep failing before the release is declared
    /// unhealthy.
    pub timeout_ms: u64,
    /// How long the process must stay up before checks start counting.
    pub grace_ms: u64,
}

/// The kinds of health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HealthCheck {
    /// `GET http://127.0.0.1:$PORT<path>` answers 2xx.
    Http { path: String },
    /// A TCP connect to `127.0.0.1:$PORT` succeeds.
    Tcp,
    /// A shell command exits 0.
    Command { command: String },
    /// The process is still running after `grace`.
    Running,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            check: HealthCheck::Running,
            timeout_ms: 30_000,
            grace_ms: 2_000,
        }
    }
}
