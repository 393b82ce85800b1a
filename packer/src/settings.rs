//! What a packer needs beyond one build: how to reach git remotes, where
//! to keep what outlives a build (remote mirrors, installed dependencies,
//! pip's and npm's download caches), the key artifacts are signed with, and
//! the sandbox builds run in.

use std::path::PathBuf;

use crate::git::GitCredentials;

/// A packer's settings, shared by every build it runs.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Mirrors of remotes and installed dependencies. `None`: every build
    /// fetches everything and installs every dependency again.
    pub cache_dir: Option<PathBuf>,
    /// Answers to remotes that ask who we are.
    pub git: GitCredentials,
    /// Signs every artifact built (see `deploy::signing`). Grabbers refuse
    /// unsigned artifacts, so only local `packer build` runs go without.
    pub signing_key: Option<deploy::signing::SigningKey>,
    /// How build steps are confined (bubblewrap unless set to none).
    pub sandbox: crate::SandboxConfig,
    /// How long git may wait on a remote.
    pub git_timeouts: crate::GitTimeouts,
}
