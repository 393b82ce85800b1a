//! Process types of a release (`[processes]` in `slipway.toml`): the
//! commands beside the web process (`[run]`) that the grabber starts and
//! supervises with it, each a number of times per host.

use serde::{Deserialize, Serialize};

use super::HealthSpec;

/// The process type `[run]` describes: the app's own, which every release
/// has and which owns the app's `PORT`.
pub const WEB_PROCESS: &str = "web";

/// The most copies of one process type a host runs.
pub const MAX_PROCESS_COUNT: u32 = 64;

/// The name of a process type (`web`, `worker`, `clock`): lowercase letters,
/// digits, `-` and `_`, starting with a letter, at most 32. It names the
/// process's log file, so it holds nothing a path would read specially.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProcessName(String);

/// Why a `ProcessName` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid process type {0:?}: use lowercase letters, digits, `-` and `_`, starting with a \
     letter, at most 32"
)]
pub struct ProcessNameError(String);

impl ProcessName {
    pub fn parse(s: impl Into<String>) -> Result<Self, ProcessNameError> {
        let s = s.into();
        let mut bytes = s.bytes();
        let ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && s.len() <= 32
            && bytes
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(ProcessNameError(s))
        }
    }

    /// The web process's name.
    pub fn web() -> Self {
        Self(WEB_PROCESS.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_web(&self) -> bool {
        self.0 == WEB_PROCESS
    }
}

impl TryFrom<String> for ProcessName {
    type Error = ProcessNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<ProcessName> for String {
    fn from(p: ProcessName) -> String {
        p.0
    }
}

impl std::str::FromStr for ProcessName {
    type Err = ProcessNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for ProcessName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ProcessName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One process type besides the web process. It shares `[run]`'s
/// environment, user, paths and stop timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Shell command run from the release directory.
    pub command: String,
    /// A pinned port (shifted by the host's offset): copy `i` (from 1) of
    /// the type gets `port + i - 1` as `PORT`. Without one, a type whose
    /// health check needs a port gets one per copy from the host's range,
    /// and a type without gets no `PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its own health check; without one, each copy must stay up for the
    /// web process's grace and then through the bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// How many copies run on each host.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_names_are_plain_words() {
        for ok in ["web", "worker", "clock-2", "a_b"] {
            assert_eq!(ProcessName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Web", "1st", "-x", "a.b", "a/b", "a b", &"a".repeat(33)] {
            let e = ProcessName::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid process type"), "{bad}: {e}");
        }
        assert!(ProcessName::web().is_web());
    }

    #[test]
    fn a_process_spec_defaults_to_one_copy_without_port_or_check() {
        let p: ProcessSpec = serde_json::from_str(r#"{"command":"x"}"#).unwrap();
        assert_eq!((p.count, p.port, &p.health), (1, None, &None));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"command":"x","count":1}"#
        );
    }
}
