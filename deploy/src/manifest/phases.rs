//! The manifest's commands around a deploy: `[release]`, run once per
//! deploy on one host before any host switches (migrations), and `[hooks]`,
//! run on every host around the switch (`pre_stop` by the old release
//! before it is stopped, `post_start` by the new one once it is healthy).

use serde::{Deserialize, Serialize};

/// `[release]`: the command run once per deploy, on one host of the
/// target, from the new release's directory, as the app's user with the
/// app's environment, before any host switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    /// Shell command (`sh -c`).
    pub command: String,
    /// Killed (its whole process group) after this long: the phase fails.
    pub timeout_ms: u64,
}

/// `[hooks]`: shell commands run by the grabber on each host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// Run by the release being replaced, before its process is stopped
    /// (take the host out of a load balancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<String>,
    /// Run by the new release once its process passed its health check and
    /// the bake (put the host back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<String>,
    /// How long each hook may run before it is killed and fails the host.
    #[serde(default = "default_hook_timeout_ms")]
    pub timeout_ms: u64,
}

/// A hook's default timeout (`[hooks] timeout`), for manifests built in
/// code; packer writes its own.
pub fn default_hook_timeout_ms() -> u64 {
    30_000
}

impl Default for Hooks {
    /// No hook, the default timeout: what a manifest without `hooks` reads as.
    fn default() -> Self {
        Self {
            pre_stop: None,
            post_start: None,
            timeout_ms: default_hook_timeout_ms(),
        }
    }
}

impl Hooks {
    /// No hook at all: the manifest leaves the section out.
    pub fn is_empty(&self) -> bool {
        self.pre_stop.is_none() && self.post_start.is_none()
    }

    /// The command of `kind`, when the release has one.
    pub fn command(&self, kind: HookKind) -> Option<&str> {
        match kind {
            HookKind::PreStop => self.pre_stop.as_deref(),
            HookKind::PostStart => self.post_start.as_deref(),
        }
    }
}

/// Which hook runs: its name is `SLIPWAY_HOOK` in the hook's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    PreStop,
    PostStart,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::PreStop => "pre_stop",
            HookKind::PostStart => "post_start",
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;

    #[test]
    fn a_manifest_without_release_or_hooks_reads_and_writes_none() {
        let old = r#"{"app":"hello","version":"1-abcdef0","commit":"abc","build_type":"generic",
            "built_at":1,"run":{"command":"x","port":null,"stop_timeout_ms":1},
            "health":{"check":{"kind":"running"},"timeout_ms":1,"grace_ms":1},
            "files":0,"content_bytes":0}"#;
        let m: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!(m.release, None);
        assert!(m.hooks.is_empty());
        let written = serde_json::to_string(&m).unwrap();
        assert!(
            !written.contains("release") && !written.contains("hooks"),
            "{written}"
        );

        let mut v: serde_json::Value = serde_json::from_str(old).unwrap();
        v["release"] = serde_json::json!({"command": "./migrate", "timeout_ms": 5});
        v["hooks"] = serde_json::json!({"post_start": "./lb add"});
        let m: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(
            m.release.as_ref().map(|r| r.command.as_str()),
            Some("./migrate")
        );
        assert_eq!(m.hooks.command(HookKind::PostStart), Some("./lb add"));
        assert_eq!(m.hooks.command(HookKind::PreStop), None);
        assert_eq!(m.hooks.timeout_ms, default_hook_timeout_ms());
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
