//! Dashboard sessions: signing in to the dashboard exchanges an API token
//! for an opaque session id that expires (`session_ttl`), so the browser
//! never holds the token itself. A session acts for its token (same name,
//! role and rights) until it expires, is closed, or the token is revoked;
//! it cannot open further sessions, so a stolen cookie cannot outlive its
//! expiry.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use deploy::{CreatedSession, ErrorBody, WhoAmI};

use crate::http::audit::Note;
use crate::http::auth::presented_credential;
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::model::{Principal, Role};
use crate::tracker::Tracker;
use crate::tracker::admin::is_session;

/// Opens a session for the token the request carries.
#[utoipa::path(
    post, path = "/api/v1/sessions", tag = "tokens",
    summary = "Open a dashboard session for this API token (people's tokens; the answer holds its only copy)",
    responses((status = 201, description = "The session", body = CreatedSession),
              (status = 403, description = "`forbidden`: an agent token, or a session asking for another", body = ErrorBody))
)]
pub(crate) async fn create_session(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    headers: HeaderMap,
) -> Result<(StatusCode, ApiJson<CreatedSession>), ApiError> {
    note.target("dashboard session");
    who.require(Role::Viewer)?;
    let Some(token) = presented_credential(&headers, &Method::POST) else {
        return Err(ApiError::Unauthorized("no API token".into()));
    };
    if is_session(&token) {
        // Otherwise a stolen session could be renewed for ever.
        return Err(ApiError::Forbidden(
            "a session is opened with an API token, not with another session".into(),
        ));
    }
    Ok((
        StatusCode::CREATED,
        ApiJson(t.open_session(&token, &who).await?),
    ))
}

/// Closes the session the request is authenticated with.
#[utoipa::path(
    delete, path = "/api/v1/sessions/current", tag = "tokens",
    summary = "Close the dashboard session this request is authenticated with (sign out)",
    responses((status = 204, description = "Closed"),
              (status = 400, description = "`invalid_input`: the request carries an API token, not a session", body = ErrorBody))
)]
pub(crate) async fn delete_session(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    note.target("dashboard session");
    let Some(session) = presented_credential(&headers, &Method::DELETE).filter(|c| is_session(c))
    else {
        return Err(ApiError::Invalid(
            "this request carries an API token, not a dashboard session: revoke tokens with DELETE /api/v1/tokens/{name}".into(),
        ));
    };
    t.close_session(&session, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the request's credential acts for.
#[utoipa::path(
    get, path = "/api/v1/whoami", tag = "tokens",
    summary = "Who this request's token or dashboard session acts for: name, role and cluster",
    responses((status = 200, description = "The principal", body = WhoAmI),
              (status = 401, description = "`unauthorized`: no, an unknown or a revoked credential", body = ErrorBody))
)]
pub(crate) async fn whoami(who: Principal) -> ApiJson<WhoAmI> {
    ApiJson(WhoAmI {
        name: who.name,
        role: who.role,
        cluster: who.cluster,
    })
}
