//! What a packer needs beyond one build: how to reach git remotes, where
//! to keep what outlives a build (remote mirrors, installed dependencies,
//! pip's and npm's download caches), the key artifacts are signed with, and
//! the sandbox builds run in.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

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
    pub git_timeouts: GitTimeouts,
}

/// How packer authenticates to remotes that ask. Never logged: `Debug`
/// shows whether a secret is set, not the secret.
#[derive(Clone, Default)]
pub struct GitCredentials {
    /// HTTP(S) user name (a URL's own user name wins for ssh). With only a
    /// password or token set, `git` is sent, which GitHub, GitLab and
    /// Gitea accept for tokens.
    pub username: Option<String>,
    /// HTTP(S) password or access token.
    pub password: Option<SecretString>,
    /// SSH private key file; the ssh-agent is asked when unset.
    pub ssh_key: Option<PathBuf>,
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

/// How long git may wait on a remote. libgit2 has no timeouts of its own:
/// without these a remote that accepts the connection and never answers
/// hangs a build (and a ref resolution in AppTracker's request path)
/// forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitTimeouts {
    /// To open the connection.
    pub connect: Duration,
    /// Of silence on an open connection (each read or write).
    pub stall: Duration,
    /// For a whole fetch, however it progresses.
    pub fetch: Duration,
}

impl Default for GitTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            stall: Duration::from_secs(120),
            fetch: crate::config::BUILD_TIMEOUT,
        }
    }
}
