//! The one API error type: client errors carry a stable code and a message;
//! unexpected ones become an opaque 500, logged once with the full chain.
//! [`ERROR_CODES`] lists every code; the extractors (`extract.rs`) make
//! malformed input one of them, and [`json_errors`] turns whatever else
//! answers an error (a body over the size limit, a wrong method) into the
//! same shape. Each answer carries its [`ErrorCode`] for the audit log.

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deploy::ErrorBody;

/// Every stable error code of the API: the code, its HTTP status, and when
/// it is answered. The OpenAPI document and the README's table come from
/// here; a test checks that it lists every `ErrorCode` once, with the
/// status the code is answered with.
pub const ERROR_CODES: &[(ErrorCode, u16, &str)] = &[
    (
        ErrorCode::InvalidInput,
        400,
        "the request is malformed: a body, query or path parameter that does not parse, a name, \
         version or regex that breaks its rule, a `limit` outside 1..=1000, a bad `cursor`",
    ),
    (
        ErrorCode::Unauthorized,
        401,
        "no API token, or one that is unknown or revoked",
    ),
    (
        ErrorCode::Forbidden,
        403,
        "the token's role, cluster or host does not allow the request; an artifact URL without a \
         valid signature",
    ),
    (
        ErrorCode::NotFound,
        404,
        "no such app, build, deploy, host, token, pin, webhook provider, webhook secret or trigger; no \
         such endpoint",
    ),
    (
        ErrorCode::MethodNotAllowed,
        405,
        "the endpoint exists, not with this method (`Allow` lists those it has)",
    ),
    (
        ErrorCode::Conflict,
        409,
        "it exists already (an app, a token), a build's lease is not the caller's, or a build to \
         mark bad has not ended",
    ),
    (
        ErrorCode::DeployInProgress,
        409,
        "a deploy of the app to the cluster is running (to remove an app or a host: one of it, or \
         on it, is under way); the message names it",
    ),
    (
        ErrorCode::Pinned,
        409,
        "the app is pinned to another version on the cluster (after a rollback)",
    ),
    (
        ErrorCode::DeployFinished,
        409,
        "the deploy already ended: nothing to cancel",
    ),
    (
        ErrorCode::NotPaused,
        409,
        "the deploy is not waiting for someone to continue it",
    ),
    (
        ErrorCode::ClusterFrozen,
        409,
        "the cluster is frozen (who, why and until when are in the message); rollbacks still go",
    ),
    (
        ErrorCode::AppRunning,
        409,
        "the app to remove still runs, or should run, on hosts; the message names them and says \
         what to run first (`deploy stop`, or removing a retired host)",
    ),
    (
        ErrorCode::RequestTimeout,
        408,
        "an artifact upload sent nothing for `upload_idle_timeout`; nothing was kept",
    ),
    (
        ErrorCode::PayloadTooLarge,
        413,
        "the body is over the endpoint's size limit, or an artifact over `max_artifact_size`",
    ),
    (
        ErrorCode::BadRef,
        422,
        "the git ref does not resolve in the app's repository",
    ),
    (
        ErrorCode::BuildNotReady,
        422,
        "the version's build has not succeeded",
    ),
    (
        ErrorCode::BuildMarkedBad,
        422,
        "an admin marked the version's build bad: deploy another version, or build the commit again by ref",
    ),
    (
        ErrorCode::ArtifactMismatch,
        422,
        "a build result's sha256 or size differs from what AppTracker measured while receiving the artifact",
    ),
    (
        ErrorCode::NoMatchingHosts,
        422,
        "no registered, live host of the cluster matches the regex; the message lists the hosts",
    ),
    (
        ErrorCode::ConfirmationRequired,
        422,
        "the cluster is protected: the request must name it in `confirm` (`--yes-i-mean-CLUSTER`)",
    ),
    (
        ErrorCode::NothingToSync,
        422,
        "no host of the app on the cluster drifted (or none runs or should run it)",
    ),
    (
        ErrorCode::NothingToRetry,
        422,
        "the deploy has no failed or timed-out host, or has not ended",
    ),
    (
        ErrorCode::NothingToRollBack,
        422,
        "no earlier version to go back to",
    ),
    (
        ErrorCode::AmbiguousRollback,
        422,
        "the hosts ran different versions before the newest deploy",
    ),
    (
        ErrorCode::Internal,
        500,
        "an unexpected failure; the server log has the details. Also with 503 and `Retry-After`: \
         the server is busy (`max_concurrent_requests` under way), the request took longer than \
         `request_timeout`, or the database is unreachable; try again",
    ),
];

/// The stable code of an API error answer (shared with clients); each
/// answer carries it in its extensions, so the audit log has it without
/// reading the body.
pub use deploy::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or names something invalid.
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but the current state refuses it; the code (its own:
    /// `deploy_in_progress`, `nothing_to_sync`, …) decides the status.
    #[error("{code}: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("{0}")]
    Conflict(String),
    /// No token, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token whose role or cluster does not allow the request.
    #[error("{0}")]
    Forbidden(String),
    /// The body is over the route's limit.
    #[error("{0}")]
    TooLarge(String),
    /// A body that stopped coming (an upload idle too long).
    #[error("{0}")]
    Timeout(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database query failed"))
    }
}

/// The one place an orchestration error becomes an HTTP one (a refusal's
/// code decides its status), so handlers use `?` on the tracker's calls.
impl From<crate::tracker::Error> for ApiError {
    fn from(e: crate::tracker::Error) -> Self {
        use crate::tracker::Error;
        match e {
            Error::NotFound(m) => ApiError::NotFound(m),
            Error::Invalid(m) => ApiError::Invalid(m),
            Error::Refused { code, message } => ApiError::Refused { code, message },
            Error::Conflict(m) => ApiError::Conflict(m),
            Error::Unauthorized(m) => ApiError::Unauthorized(m),
            Error::TooLarge(m) => ApiError::TooLarge(m),
            Error::Timeout(m) => ApiError::Timeout(m),
            Error::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<deploy::ParseError> for ApiError {
    fn from(e: deploy::ParseError) -> Self {
        ApiError::Invalid(e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::Invalid(format!("invalid request body: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::Invalid(format!("invalid query: {}", e.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        match e {
            // A handler asking for parameters its route lacks: our bug.
            PathRejection::MissingPathParams(e) => {
                ApiError::Internal(anyhow::Error::new(e).context("route without its parameters"))
            }
            e => ApiError::Invalid(format!("invalid path: {}", e.body_text())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, m),
            ApiError::Invalid(m) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidInput, m),
            ApiError::Refused { code, message } => (
                StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code,
                message,
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, ErrorCode::Conflict, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge, m),
            ApiError::Timeout(m) => (StatusCode::REQUEST_TIMEOUT, ErrorCode::RequestTimeout, m),
            ApiError::Internal(e) if database_unreachable(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "request failed: the database is unreachable");
                let mut resp = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Internal,
                    "the database is unreachable; retry shortly".to_string(),
                );
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("5"),
                );
                return resp;
            }
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error; the server log has the details".to_string(),
                )
            }
        };
        error_response(status, code, message)
    }
}

/// Whether `e` is the database pool giving up on a connection within its
/// acquire timeout (the database down, restarting, or out of
/// connections): a 503 to retry, not a bug.
fn database_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))
        )
    })
}

/// The answer for a method the endpoint does not have; axum adds `Allow`.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take this method (`Allow` lists those it does)".into(),
    )
}

/// The code for an error status nothing else named: what [`json_errors`]
/// gives answers that did not come from an [`ApiError`].
fn code_for(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidInput,
    }
}

/// Middleware: an error answer that is not already an `ApiError` (axum's
/// own rejections of extractors not wrapped here, such as a body over the
/// size limit, or a default 405) becomes `{code, message}` JSON too, so
/// every error of the API has one shape. Its text, when short, is the
/// message.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.extensions().get::<ErrorCode>().is_some()
    {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    });
    let mut fixed = error_response(status, code_for(status), message);
    // Keep what the original said beyond its body (`Allow` on a 405).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

/// The JSON error answer, tagged with its code for the audit log.
pub(crate) fn error_response(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let body = ErrorBody {
        code: code.as_str().to_string(),
        message,
    };
    let mut resp = (status, Json(body)).into_response();
    resp.extensions_mut().insert(code);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`ERROR_CODES`] lists every code once, with the status it is
    /// answered with, so the document's table is the whole list; and every
    /// kind of `ApiError` answers a listed code with its status.
    #[test]
    fn every_error_code_is_listed() {
        let listed = |code: ErrorCode, status: u16| {
            assert!(
                ERROR_CODES
                    .iter()
                    .any(|(c, s, _)| *c == code && *s == status),
                "error code `{code}` ({status}) is not in ERROR_CODES"
            )
        };
        for code in ErrorCode::ALL {
            listed(code, code.status());
            let times = ERROR_CODES.iter().filter(|(c, _, _)| *c == code).count();
            assert_eq!(times, 1, "`{code}` is listed {times} times");
        }
        assert_eq!(ERROR_CODES.len(), ErrorCode::ALL.len());
        for code in [ErrorCode::DeployInProgress, ErrorCode::NothingToSync] {
            let resp = ApiError::Refused {
                code,
                message: String::new(),
            }
            .into_response();
            assert_eq!(resp.status().as_u16(), code.status());
            assert_eq!(resp.extensions().get::<ErrorCode>(), Some(&code));
        }
        for (err, status, code) in [
            (ApiError::NotFound(String::new()), 404, ErrorCode::NotFound),
            (
                ApiError::Invalid(String::new()),
                400,
                ErrorCode::InvalidInput,
            ),
            (ApiError::Conflict(String::new()), 409, ErrorCode::Conflict),
            (
                ApiError::Unauthorized(String::new()),
                401,
                ErrorCode::Unauthorized,
            ),
            (
                ApiError::Forbidden(String::new()),
                403,
                ErrorCode::Forbidden,
            ),
            (
                ApiError::Timeout(String::new()),
                408,
                ErrorCode::RequestTimeout,
            ),
            (
                ApiError::TooLarge(String::new()),
                413,
                ErrorCode::PayloadTooLarge,
            ),
            (
                ApiError::Internal(anyhow::anyhow!("x")),
                500,
                ErrorCode::Internal,
            ),
        ] {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.extensions().get::<ErrorCode>(), Some(&code));
            listed(code, status);
        }
        // The README's table is the same list.
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for (code, status, _) in ERROR_CODES {
            assert!(
                readme.contains(&format!("| `{code}` | {status} |")),
                "README's error table lacks `{code}` ({status})"
            );
        }
        for status in [400u16, 401, 403, 404, 405, 409, 413, 415, 500, 502] {
            let status = StatusCode::from_u16(status).unwrap();
            let code = code_for(status);
            let listed_status = ERROR_CODES
                .iter()
                .find(|(c, _, _)| *c == code)
                .map(|(_, s, _)| *s);
            assert!(listed_status.is_some(), "{code}");
        }
    }
}
