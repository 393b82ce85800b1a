//! The release manifest: `.slipway/manifest.json` inside every artifact, so a
//! release is self-describing. Packer writes it; grabber reads it to know how
//! to run and health-check the release.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Timestamp, Version};

mod phases;
pub use phases::{HookKind, Hooks, ReleaseSpec};
mod process;
pub use process::{MAX_PROCESS_COUNT, ProcessName, ProcessNameError, ProcessSpec, WEB_PROCESS};

/// Where the manifest sits inside a release directory.
pub const MANIFEST_PATH: &str = ".slipway/manifest.json";

/// How an app is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// `[processes]` besides `web` (which is `run` and `health`): each
    /// started and supervised with it. Empty for an app of one process and
    /// in manifests of older packers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<ProcessName, ProcessSpec>,
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
    /// `[release]`: a command run once per deploy before any host switches
    /// (`manifest/phases.rs`). Absent in manifests of older packers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseSpec>,
    /// `[hooks]`: commands run around the switch on every host.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
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
    /// `[run] user`: who the app runs as on the host, instead of the
    /// grabber's `--app-user`. Absent in manifests of older packers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<RunUser>,
    /// `[run] shared`: release-relative paths the grabber links to the same
    /// path under the app's `shared/` directory (Capistrano's linked files
    /// and directories), so they survive releases. Checked by packer:
    /// relative, inside the release, none inside another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
}

/// A user to run an app as: a name from the host's user database
/// (`www-data`), or a numeric `uid` or `uid:gid`. Checked for form here;
/// the host resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunUser(String);

/// Why a `RunUser` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid user {0:?}: write a user name (letters, digits, `_`, `-`, `.`, up to 32, not starting \
     with `-` or a digit) or a numeric uid or uid:gid"
)]
pub struct RunUserError(String);

/// What a [`RunUser`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUserKind<'a> {
    Name(&'a str),
    Id { uid: u32, gid: Option<u32> },
}

impl RunUser {
    pub fn parse(s: impl Into<String>) -> Result<Self, RunUserError> {
        let s = s.into();
        let ok = match s.split_once(':') {
            Some((uid, gid)) => is_id(uid) && is_id(gid),
            None => is_id(&s) || is_user_name(&s),
        };
        if ok {
            Ok(Self(s))
        } else {
            Err(RunUserError(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> RunUserKind<'_> {
        let id = |s: &str| {
            s.parse::<u32>()
                .unwrap_or_else(|_| unreachable!("checked by parse"))
        };
        match self.0.split_once(':') {
            Some((uid, gid)) => RunUserKind::Id {
                uid: id(uid),
                gid: Some(id(gid)),
            },
            None if is_id(&self.0) => RunUserKind::Id {
                uid: id(&self.0),
                gid: None,
            },
            None => RunUserKind::Name(&self.0),
        }
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u32>().is_ok()
}

/// The portable user names of POSIX plus what Debian's `adduser` accepts
/// by default, minus anything a shell or a path would read specially.
fn is_user_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok
        && s.len() <= 32
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl TryFrom<String> for RunUser {
    type Error = RunUserError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<RunUser> for String {
    fn from(u: RunUser) -> String {
        u.0
    }
}

impl std::str::FromStr for RunUser {
    type Err = RunUserError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for RunUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
    /// How long the app must stay up after passing its check before the
    /// host is `done`: an app that crashes in this window fails the host
    /// and is rolled back. 0 turns it off; a manifest from a packer older
    /// than `[health] bake` has none and keeps that older behaviour.
    #[serde(default = "no_bake_ms")]
    pub bake_ms: u64,
}

fn default_interval_ms() -> u64 {
    200
}

fn no_bake_ms() -> u64 {
    0
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
            // As for a manifest without the field: packer writes its own
            // default (`[health] bake`), this is for manifests built in code.
            bake_ms: no_bake_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_users_are_names_or_ids() {
        for (s, kind) in [
            ("www-data", RunUserKind::Name("www-data")),
            ("_app.1", RunUserKind::Name("_app.1")),
            (
                "1000",
                RunUserKind::Id {
                    uid: 1000,
                    gid: None,
                },
            ),
            (
                "1000:100",
                RunUserKind::Id {
                    uid: 1000,
                    gid: Some(100),
                },
            ),
            ("0", RunUserKind::Id { uid: 0, gid: None }),
        ] {
            assert_eq!(RunUser::parse(s).unwrap().kind(), kind, "{s}");
        }
        for bad in [
            "",
            "-x",
            "1abc",
            "a b",
            "a/b",
            "a:b",
            "1000:",
            ":1",
            "99999999999",
            "a;rm",
            &"a".repeat(33),
        ] {
            let e = RunUser::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid user"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_health_section_without_a_bake_reads_as_none() {
        let old = r#"{"check":{"kind":"running"},"timeout_ms":1,"grace_ms":2}"#;
        let h: HealthSpec = serde_json::from_str(old).unwrap();
        assert_eq!((h.bake_ms, h.interval_ms), (0, 200));
        let new = r#"{"check":{"kind":"running"},"timeout_ms":1,"grace_ms":2,"bake_ms":2000}"#;
        let h: HealthSpec = serde_json::from_str(new).unwrap();
        assert_eq!(h.bake_ms, 2_000);
    }

    #[test]
    fn a_manifest_without_a_user_still_reads_and_round_trips() {
        let old = r#"{"command":"x","port":null,"env":{},"stop_timeout_ms":1}"#;
        let run: RunSpec = serde_json::from_str(old).unwrap();
        assert_eq!(run.user, None);
        assert!(!serde_json::to_string(&run).unwrap().contains("user"));
        let new = r#"{"command":"x","port":null,"stop_timeout_ms":1,"user":"1000:1000"}"#;
        let run: RunSpec = serde_json::from_str(new).unwrap();
        assert_eq!(run.user.as_ref().map(RunUser::as_str), Some("1000:1000"));
        let bad = r#"{"command":"x","port":null,"stop_timeout_ms":1,"user":"a b"}"#;
        assert!(serde_json::from_str::<RunSpec>(bad).is_err());
    }
}
