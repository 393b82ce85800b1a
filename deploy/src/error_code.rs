//! The stable codes of the API's error answers (`{"code": …, "message": …}`),
//! one enum shared by AppTracker, which answers with them, and clients,
//! which act on them. A code this build does not know decodes as
//! [`ErrorCode::Unknown`], so a newer server never breaks an older client.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An API error code. The JSON is the snake_case name (`"deploy_in_progress"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidInput,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    DeployInProgress,
    Pinned,
    DeployFinished,
    NotPaused,
    ClusterFrozen,
    /// The app still runs on hosts (or should): it cannot be removed.
    AppRunning,
    RequestTimeout,
    PayloadTooLarge,
    BadRef,
    BuildNotReady,
    BuildMarkedBad,
    ArtifactMismatch,
    NoMatchingHosts,
    ConfirmationRequired,
    NothingToSync,
    NothingToRetry,
    NothingToRollBack,
    AmbiguousRollback,
    Internal,
    /// A code this build does not know (a newer server's).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every known code, in the order the API document lists them.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::InvalidInput,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::DeployInProgress,
        ErrorCode::Pinned,
        ErrorCode::DeployFinished,
        ErrorCode::NotPaused,
        ErrorCode::ClusterFrozen,
        ErrorCode::AppRunning,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::BadRef,
        ErrorCode::BuildNotReady,
        ErrorCode::BuildMarkedBad,
        ErrorCode::ArtifactMismatch,
        ErrorCode::NoMatchingHosts,
        ErrorCode::ConfirmationRequired,
        ErrorCode::NothingToSync,
        ErrorCode::NothingToRetry,
        ErrorCode::NothingToRollBack,
        ErrorCode::AmbiguousRollback,
        ErrorCode::Internal,
    ];

    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::DeployInProgress => "deploy_in_progress",
            ErrorCode::Pinned => "pinned",
            ErrorCode::DeployFinished => "deploy_finished",
            ErrorCode::NotPaused => "not_paused",
            ErrorCode::ClusterFrozen => "cluster_frozen",
            ErrorCode::AppRunning => "app_running",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::BadRef => "bad_ref",
            ErrorCode::BuildNotReady => "build_not_ready",
            ErrorCode::BuildMarkedBad => "build_marked_bad",
            ErrorCode::ArtifactMismatch => "artifact_mismatch",
            ErrorCode::NoMatchingHosts => "no_matching_hosts",
            ErrorCode::ConfirmationRequired => "confirmation_required",
            ErrorCode::NothingToSync => "nothing_to_sync",
            ErrorCode::NothingToRetry => "nothing_to_retry",
            ErrorCode::NothingToRollBack => "nothing_to_roll_back",
            ErrorCode::AmbiguousRollback => "ambiguous_rollback",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The HTTP status AppTracker answers the code with (500 for
    /// [`ErrorCode::Unknown`], which it never sends).
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict
            | ErrorCode::DeployInProgress
            | ErrorCode::Pinned
            | ErrorCode::DeployFinished
            | ErrorCode::NotPaused
            | ErrorCode::ClusterFrozen
            | ErrorCode::AppRunning => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::BadRef
            | ErrorCode::BuildNotReady
            | ErrorCode::BuildMarkedBad
            | ErrorCode::ArtifactMismatch
            | ErrorCode::NoMatchingHosts
            | ErrorCode::ConfirmationRequired
            | ErrorCode::NothingToSync
            | ErrorCode::NothingToRetry
            | ErrorCode::NothingToRollBack
            | ErrorCode::AmbiguousRollback => 422,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
        }
    }

    /// The code named `s`; [`ErrorCode::Unknown`] for any other text.
    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(ErrorCode::Unknown)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_is_the_name_and_unknown_codes_decode() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
        let later: ErrorCode = serde_json::from_str("\"rate_limited\"").unwrap();
        assert_eq!(later, ErrorCode::Unknown);
        assert_eq!(ErrorCode::parse("rate_limited"), ErrorCode::Unknown);
    }

    #[test]
    fn codes_answer_with_their_status_class() {
        assert_eq!(ErrorCode::DeployInProgress.status(), 409);
        assert_eq!(ErrorCode::NoMatchingHosts.status(), 422);
        assert!(ErrorCode::ALL.iter().all(|c| c.status() >= 400));
    }
}
