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
/// here; a test checks that every code the sources use is listed.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_input",
        400,
        "the request is malformed: a body, query or path parameter that does not parse, a name, \
         version or regex that breaks its rule, a `limit` outside 1..=1000, a bad `cursor`",
    ),
    (
        "unauthorized",
        401,
        "no API token, or one that is unknown or revoked",
    ),
    (
        "forbidden",
        403,
        "the token's role, cluster or host does not allow the request; an artifact URL without a \
         valid signature",
    ),
    (
        "not_found",
        404,
        "no such app, build, deploy, token, pin, webhook provider, webhook secret or trigger; no \
         such endpoint",
    ),
    (
        "method_not_allowed",
        405,
        "the endpoint exists, not with this method (`Allow` lists those it has)",
    ),
    (
        "conflict",
        409,
        "it exists already (an app, a token), a build's lease is not the caller's, or a build to \
         mark bad has not ended",
    ),
    (
        "deploy_in_progress",
        409,
        "a deploy of the app to the cluster is running; the message names it",
    ),
    (
        "pinned",
        409,
        "the app is pinned to another version on the cluster (after a rollback)",
    ),
    (
        "deploy_finished",
        409,
        "the deploy already ended: nothing to cancel",
    ),
    (
        "not_paused",
        409,
        "the deploy is not waiting for someone to continue it",
    ),
    (
        "cluster_frozen",
        409,
        "the cluster is frozen (who, why and until when are in the message); rollbacks still go",
    ),
    (
        "request_timeout",
        408,
        "an artifact upload sent nothing for `upload_idle_timeout`; nothing was kept",
    ),
    (
        "payload_too_large",
        413,
        "the body is over the endpoint's size limit, or an artifact over `max_artifact_size`",
    ),
    (
        "bad_ref",
        422,
        "the git ref does not resolve in the app's repository",
    ),
    (
        "build_not_ready",
        422,
        "the version's build has not succeeded",
    ),
    (
        "build_marked_bad",
        422,
        "an admin marked the version's build bad: deploy another version, or build the commit again by ref",
    ),
    (
        "artifact_mismatch",
        422,
        "a build result's sha256 or size differs from what AppTracker measured while receiving the artifact",
    ),
    (
        "no_matching_hosts",
        422,
        "no registered, live host of the cluster matches the regex; the message lists the hosts",
    ),
    (
        "confirmation_required",
        422,
        "the cluster is protected: the request must name it in `confirm` (`--yes-i-mean-CLUSTER`)",
    ),
    (
        "nothing_to_sync",
        422,
        "no host of the app on the cluster drifted (or none runs or should run it)",
    ),
    (
        "nothing_to_retry",
        422,
        "the deploy has no failed or timed-out host, or has not ended",
    ),
    (
        "nothing_to_roll_back",
        422,
        "no earlier version to go back to",
    ),
    (
        "ambiguous_rollback",
        422,
        "the hosts ran different versions before the newest deploy",
    ),
    (
        "internal",
        500,
        "an unexpected failure; the server log has the details",
    ),
];

/// The stable code of an API error answer, put in the response's
/// extensions by `ApiError`, so the log has it without reading the body.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or names something invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request is well-formed but cannot be done in the current state.
    #[error("{code}: {message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    Conflict(String),
    /// A conflict with its own stable code (`deploy_in_progress`, …).
    #[error("{code}: {message}")]
    ConflictWith { code: &'static str, message: String },
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

impl ApiError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::ConflictWith {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database query failed"))
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
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid_input", m),
            ApiError::Unprocessable { code, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::ConflictWith { code, message } => (StatusCode::CONFLICT, code, message),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
            ApiError::Timeout(m) => (StatusCode::REQUEST_TIMEOUT, "request_timeout", m),
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has the details".to_string(),
                )
            }
        };
        error_response(status, code, message)
    }
}

/// The answer for a method the endpoint does not have; axum adds `Allow`.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method (`Allow` lists those it does)".into(),
    )
}

/// The code for an error status nothing else named: what [`json_errors`]
/// gives answers that did not come from an [`ApiError`].
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        413 => "payload_too_large",
        s if s >= 500 => "internal",
        _ => "invalid_input",
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
fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = ErrorBody {
        code: code.to_string(),
        message,
    };
    let mut resp = (status, Json(body)).into_response();
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the sources answer with is in [`ERROR_CODES`] (with its
    /// status), so the document's table is the whole list.
    #[test]
    fn every_error_code_is_listed() {
        let listed = |code: &str, status: u16| {
            assert!(
                ERROR_CODES
                    .iter()
                    .any(|(c, s, _)| *c == code && *s == status),
                "error code `{code}` ({status}) is not in ERROR_CODES"
            )
        };
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let used = regex::Regex::new(r#"\b(conflict|unprocessable)\(\s*"([a-z_]+)""#).unwrap();
        let mut found = 0;
        // Every source file, in subdirectories too (`db/`).
        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(dir)];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for c in used.captures_iter(&text) {
                let status = if &c[1] == "conflict" { 409 } else { 422 };
                listed(&c[2], status);
                found += 1;
            }
        }
        assert!(found > 5, "the scan finds the codes in use");
        for (err, status, code) in [
            (ApiError::NotFound(String::new()), 404, "not_found"),
            (ApiError::Invalid(String::new()), 400, "invalid_input"),
            (ApiError::Conflict(String::new()), 409, "conflict"),
            (ApiError::Unauthorized(String::new()), 401, "unauthorized"),
            (ApiError::Forbidden(String::new()), 403, "forbidden"),
            (ApiError::Timeout(String::new()), 408, "request_timeout"),
            (ApiError::TooLarge(String::new()), 413, "payload_too_large"),
            (ApiError::Internal(anyhow::anyhow!("x")), 500, "internal"),
        ] {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(
                resp.extensions().get::<ErrorCode>().map(|c| c.0),
                Some(code)
            );
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
