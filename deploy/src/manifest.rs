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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The interpreter the release was built for (python and node builds,
    /// whose installed dependencies may hold compiled code); the grabber
    /// refuses to switch to a release its host cannot run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
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
    /// Release-relative directories prepended to environment variables
    /// when the app starts (`PATH` += `.slipway/python/bin`, `PYTHONPATH`
    /// += `.slipway/python`): set by the build type, so the release finds
    /// its own dependencies wherever the host unpacked it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, Vec<String>>,
}

/// The interpreters a release can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Python,
    Node,
}

/// An interpreter and the version a release needs: `python 3.11` (minor
/// versions differ in ABI), `node 20` (major).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub kind: RuntimeKind,
    pub version: String,
}

impl Runtime {
    /// The command that prints this kind's version on a machine, in the
    /// form [`Runtime::version`] holds. Packer records what it prints on
    /// the build machine; the grabber compares with what it prints on the
    /// host, so both sides answer the same question the same way.
    pub fn probe(kind: RuntimeKind) -> (&'static str, &'static [&'static str]) {
        match kind {
            RuntimeKind::Python => (
                "python3",
                &["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            ),
            RuntimeKind::Node => ("node", &["-p", "process.versions.node.split('.')[0]"]),
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.kind {
            RuntimeKind::Python => "python",
            RuntimeKind::Node => "node",
        };
        write!(f, "{name} {}", self.version)
    }
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
    /// Time between two probes of a failing check.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
}

fn default_interval_ms() -> u64 {
    200
}

/// The kinds of health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HealthCheck {
    /// `GET http://127.0.0.1:$PORT<path>` answers 2xx (with `expect` in
    /// its body, when given).
    Http {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<String>,
    },
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
            interval_ms: default_interval_ms(),
        }
    }
}
