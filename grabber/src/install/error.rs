//! Why an install failed: the phase it failed in and a typed cause, with
//! the retryable bit callers and logs act on. The cause's `Display` is the
//! text of the host event's message, rendered once by `Reports::failed`
//! (the wording users and tests know is kept).

use deploy::signing::SignatureError;
use deploy::{AppName, HostPhase, Sha256, Version};

use super::verify::Unverified;
use crate::extract::ExtractError;

/// An install step that did not work. Its message is its cause's; its
/// source is its cause's source (an I/O error under an extraction), so a
/// chain of causes never says the same thing twice.
#[derive(Debug)]
pub(crate) struct InstallError {
    /// The phase the host was in: what the host event's `failed_phase`
    /// says.
    pub phase: HostPhase,
    pub kind: InstallErrorKind,
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl InstallError {
    pub(crate) fn new(phase: HostPhase, kind: InstallErrorKind) -> Self {
        Self { phase, kind }
    }

    /// Whether the same install could work later without a new release: the
    /// artifact server or this host's disk may recover; a bad artifact, a
    /// release that does not start or is unhealthy will not.
    pub(crate) fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstallErrorKind {
    /// This host's own files: the layout, a directory's mode, the disk.
    #[error("{0}")]
    Host(String),
    /// The artifact server: no answer, an HTTP error, a broken or stalled
    /// transfer.
    #[error("{0}")]
    Fetch(String),
    /// The artifact is larger than announced, or than this host accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The downloaded bytes are not the announced ones.
    #[error(
        "artifact does not match: got {size} bytes with sha256 {sha256}, expected {want_size} bytes with sha256 {want_sha256}"
    )]
    Mismatch {
        size: u64,
        sha256: Sha256,
        want_size: u64,
        want_sha256: Sha256,
    },
    /// Not signed by a key this host trusts.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The archive is unreadable, hostile or over the limits.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The archive holds another release than the one asked for.
    #[error("the archive holds {got_app} {got_version}, not {app} {version}")]
    WrongRelease {
        got_app: AppName,
        got_version: Version,
        app: AppName,
        version: Version,
    },
    /// The extracted release's manifest cannot be read.
    #[error("{0}")]
    Manifest(String),
    /// A release on disk differs from what was installed (or has no record
    /// to check it against): it is not run again.
    #[error("release {version} on disk cannot be trusted: {why}")]
    Untrusted { version: Version, why: Unverified },
    /// The release cannot run here: its user, its runtime, its port, its
    /// command.
    #[error("{0}")]
    Start(String),
    /// The release started but its health check failed.
    #[error("{0}")]
    Unhealthy(String),
    /// A `[hooks]` command failed, timed out or could not run (its output
    /// is in the report's log).
    #[error("{0}")]
    Hook(String),
}

impl InstallErrorKind {
    fn is_retryable(&self) -> bool {
        match self {
            InstallErrorKind::Host(_) | InstallErrorKind::Fetch(_) => true,
            InstallErrorKind::Extract(ExtractError::Read { .. })
            | InstallErrorKind::Extract(ExtractError::Unpack { .. }) => true,
            InstallErrorKind::TooLarge(_)
            | InstallErrorKind::Mismatch { .. }
            | InstallErrorKind::Signature(_)
            | InstallErrorKind::Extract(_)
            | InstallErrorKind::WrongRelease { .. }
            | InstallErrorKind::Manifest(_)
            | InstallErrorKind::Untrusted { .. }
            | InstallErrorKind::Start(_)
            | InstallErrorKind::Unhealthy(_)
            | InstallErrorKind::Hook(_) => false,
        }
    }

    /// This cause, in `phase`.
    pub(crate) fn in_phase(self, phase: HostPhase) -> InstallError {
        InstallError::new(phase, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_cause_and_the_retryable_bit_follows_it() {
        let sha = |c: &str| Sha256::parse(c.repeat(64)).unwrap();
        let e = InstallErrorKind::Mismatch {
            size: 3,
            sha256: sha("a"),
            want_size: 4,
            want_sha256: sha("b"),
        }
        .in_phase(HostPhase::Verifying);
        assert_eq!(
            e.to_string(),
            format!(
                "artifact does not match: got 3 bytes with sha256 {}, expected 4 bytes with sha256 {}",
                "a".repeat(64),
                "b".repeat(64)
            )
        );
        assert_eq!(e.phase, HostPhase::Verifying);
        assert!(!e.is_retryable());
        let e = InstallErrorKind::Fetch("cannot download x: HTTP 503".into())
            .in_phase(HostPhase::Downloading);
        assert_eq!(e.to_string(), "cannot download x: HTTP 503");
        assert!(e.is_retryable());
        let e = InstallErrorKind::from(ExtractError::NoManifest).in_phase(HostPhase::Extracting);
        assert!(e.to_string().starts_with("archive has no manifest"), "{e}");
        assert!(!e.is_retryable());
    }
}
