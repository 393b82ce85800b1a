//! The build's error: what failed, and the build log up to that point.

use deploy::BuildType;

use crate::config::ConfigError;

/// Why a build or a ref resolution failed. The `Display` of each variant says
/// what was being attempted and what went wrong; [`BuildError::log`] is the
/// build log up to the failure (empty when it failed before logging).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The commit given to build is not a full hex sha.
    #[error("`{commit}` is not a full 40-digit hex commit sha")]
    BadCommit { commit: String, log: String },

    /// A git operation (fetch, open, checkout) failed.
    #[error("{action}: {}", error.message())]
    Git {
        action: String,
        error: git2::Error,
        log: String,
    },

    /// The ref is not one commit in git's revision syntax (a range, a path,
    /// a reflog entry, a pattern): the error says what to write instead.
    #[error("{error}")]
    BadRef {
        error: deploy::ParseError,
        log: String,
    },

    /// No branch, tag or commit of that name on the remote.
    #[error(
        "no branch, tag or commit named `{git_ref}` in {url}{}",
        some_branches(branches)
    )]
    UnknownRef {
        url: String,
        git_ref: String,
        /// A few of the remote's branches, to show what exists (may be
        /// empty).
        branches: Vec<String>,
        log: String,
    },

    /// `HEAD` (the tip of the app's branch) was asked for, and the remote
    /// has no such branch.
    #[error(
        "`{git_ref}` counts from `HEAD`, the tip of the app's branch `{branch}` (AppTracker has no \
         working tree: `HEAD` is the remote branch the app follows), and {url} has no branch \
         `{branch}`{}",
        some_branches(branches)
    )]
    NoBranchForHead {
        url: String,
        git_ref: String,
        branch: String,
        branches: Vec<String>,
        log: String,
    },

    /// The ref steps back past what the history holds (`main~50` on a
    /// branch of 3 commits, `v1^2` on a commit with one parent).
    #[error("`{git_ref}` names no commit: {reason}")]
    NoSuchAncestor {
        git_ref: String,
        /// How far the history goes, and the oldest ref that names a commit.
        reason: String,
        log: String,
    },

    /// A short sha matches more than one object.
    #[error("short sha `{git_ref}` is ambiguous in {url}: give more digits")]
    AmbiguousRef {
        url: String,
        git_ref: String,
        log: String,
    },

    /// The commit is not reachable from any branch or tag of the remote.
    #[error("commit {commit} not found in {url} (it must be reachable from a branch or a tag)")]
    CommitNotFound {
        url: String,
        commit: String,
        log: String,
    },

    /// `slipway.toml` is missing or invalid.
    #[error("{error}")]
    Config { error: ConfigError, log: String },

    /// The build type's interpreter or package manager cannot run on this
    /// build machine.
    #[error("{build_type} builds need `{tool}`, which cannot run on this build machine: {error}")]
    Toolchain {
        build_type: BuildType,
        tool: String,
        error: String,
        log: String,
    },

    /// No interpreter on this machine matches what the project pins.
    #[error("{reason}")]
    Interpreter {
        /// `Python`, `Node.js`.
        kind: String,
        reason: String,
        log: String,
    },

    /// A lockfile no longer matches the manifest it locks.
    #[error("{file} is out of date with {manifest}: {fix}, and commit it")]
    LockOutdated {
        file: String,
        manifest: String,
        /// The command that brings it up to date.
        fix: String,
        log: String,
    },

    /// The package manager a project asks for cannot be had.
    #[error("{tool} (asked for by {source_file}) is not available: {reason}")]
    PackageManager {
        tool: String,
        source_file: String,
        reason: String,
        log: String,
    },

    /// Installing the declared dependencies (pip, npm) failed.
    #[error("installing dependencies with `{tool}` failed: {detail}")]
    Dependencies {
        tool: String,
        /// How it ended, and the package manager's own line naming the
        /// culprit when it printed one.
        detail: String,
        log: String,
    },

    /// `[build] command` exited non-zero or was killed.
    #[error("build command `{command}` failed: {status} (see the build log)")]
    CommandFailed {
        command: String,
        status: String,
        log: String,
    },

    /// A build step ran past the build's deadline and was killed.
    #[error(
        "`{command}` was still running when the build's timeout of {timeout} ran out, and was killed"
    )]
    CommandTimedOut {
        command: String,
        timeout: String,
        log: String,
    },

    /// The build sandbox cannot be set up (bubblewrap missing, user or PID
    /// namespaces refused): builds refuse to run rather than run unconfined.
    #[error("builds run in a bubblewrap sandbox, which cannot be set up here: {reason}")]
    Sandbox { reason: String, log: String },

    /// A build step went past one of the builder's limits (output, disk)
    /// and was killed.
    #[error("`{command}` was killed: {limit}")]
    LimitExceeded {
        command: String,
        limit: String,
        log: String,
    },

    /// A symlink in the release points outside it.
    #[error("symlink `{path}` points outside the release (to `{target}`)")]
    SymlinkEscapes {
        path: String,
        target: String,
        log: String,
    },

    /// A file a release cannot carry (device, fifo, socket) or a path the
    /// packer owns.
    #[error("cannot pack `{path}`: {reason}")]
    BadEntry {
        path: String,
        reason: String,
        log: String,
    },

    /// A local file operation failed.
    #[error("{action}: {error}")]
    Io {
        action: String,
        error: std::io::Error,
        log: String,
    },
}

impl BuildError {
    /// The build log up to the failure; may be empty.
    pub fn log(&self) -> &str {
        self.log_ref()
    }

    /// Whether trying again unchanged may succeed: network and disk trouble
    /// may pass, a bad `slipway.toml` or a failing build command will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BuildError::Git { .. } | BuildError::Io { .. })
    }

    fn log_ref(&self) -> &String {
        match self {
            BuildError::BadCommit { log, .. }
            | BuildError::Git { log, .. }
            | BuildError::BadRef { log, .. }
            | BuildError::UnknownRef { log, .. }
            | BuildError::NoBranchForHead { log, .. }
            | BuildError::NoSuchAncestor { log, .. }
            | BuildError::AmbiguousRef { log, .. }
            | BuildError::CommitNotFound { log, .. }
            | BuildError::Config { log, .. }
            | BuildError::Toolchain { log, .. }
            | BuildError::Interpreter { log, .. }
            | BuildError::LockOutdated { log, .. }
            | BuildError::PackageManager { log, .. }
            | BuildError::Dependencies { log, .. }
            | BuildError::CommandFailed { log, .. }
            | BuildError::CommandTimedOut { log, .. }
            | BuildError::Sandbox { log, .. }
            | BuildError::LimitExceeded { log, .. }
            | BuildError::SymlinkEscapes { log, .. }
            | BuildError::BadEntry { log, .. }
            | BuildError::Io { log, .. } => log,
        }
    }

    fn log_mut(&mut self) -> &mut String {
        match self {
            BuildError::BadCommit { log, .. }
            | BuildError::Git { log, .. }
            | BuildError::BadRef { log, .. }
            | BuildError::UnknownRef { log, .. }
            | BuildError::NoBranchForHead { log, .. }
            | BuildError::NoSuchAncestor { log, .. }
            | BuildError::AmbiguousRef { log, .. }
            | BuildError::CommitNotFound { log, .. }
            | BuildError::Config { log, .. }
            | BuildError::Toolchain { log, .. }
            | BuildError::Interpreter { log, .. }
            | BuildError::LockOutdated { log, .. }
            | BuildError::PackageManager { log, .. }
            | BuildError::Dependencies { log, .. }
            | BuildError::CommandFailed { log, .. }
            | BuildError::CommandTimedOut { log, .. }
            | BuildError::Sandbox { log, .. }
            | BuildError::LimitExceeded { log, .. }
            | BuildError::SymlinkEscapes { log, .. }
            | BuildError::BadEntry { log, .. }
            | BuildError::Io { log, .. } => log,
        }
    }

    /// Attaches the build log, ending with a line saying what failed, so the
    /// log alone tells the story.
    pub(crate) fn with_log(mut self, mut log: String) -> Self {
        let own = std::mem::take(self.log_mut());
        log.push_str(&own);
        log.push_str(&format!("error: {self}\n"));
        *self.log_mut() = log;
        self
    }

    pub(crate) fn io(action: impl Into<String>, error: std::io::Error) -> Self {
        BuildError::Io {
            action: action.into(),
            error,
            log: String::new(),
        }
    }
}

/// " (its branches include `main`, `dev`)", or nothing when none are known.
fn some_branches(branches: &[String]) -> String {
    if branches.is_empty() {
        return String::new();
    }
    let names: Vec<String> = branches.iter().map(|b| format!("`{b}`")).collect();
    format!(" (its branches include {})", names.join(", "))
}

impl From<ConfigError> for BuildError {
    fn from(error: ConfigError) -> Self {
        BuildError::Config {
            error,
            log: String::new(),
        }
    }
}
