//! The orchestration layer's error: what a caller of the tracker can act
//! on, with no HTTP in it. The HTTP layer turns it into an answer in one
//! place (`http/error.rs`); internal callers keep the whole chain
//! (`Internal` carries the `anyhow` cause).

use deploy::ErrorCode;

/// Why the tracker refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such app, build, deploy, host, token, … (the message names it).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or names something invalid.
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but the current state refuses it; the code says why
    /// (`deploy_in_progress`, `pinned`, `bad_ref`, …) and decides the
    /// status it is answered with.
    #[error("{code}: {message}")]
    Refused { code: ErrorCode, message: String },
    /// It exists already, or belongs to someone else (a build's lease).
    #[error("{0}")]
    Conflict(String),
    /// A caller without a credential the tracker checks itself (a webhook's
    /// signature, a trigger's secret).
    #[error("{0}")]
    Unauthorized(String),
    /// More than the tracker accepts (an artifact over `max_artifact_size`).
    #[error("{0}")]
    TooLarge(String),
    /// What was being received stopped coming (an upload idle too long).
    #[error("{0}")]
    Timeout(String),
    /// Anything unexpected: the database, the store, a task that panicked.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// A refusal with its stable code.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Refused {
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(e).context("database query failed"))
    }
}

impl From<deploy::ParseError> for Error {
    fn from(e: deploy::ParseError) -> Self {
        Error::Invalid(e.to_string())
    }
}
