//! Signing in and out: a token exchanged for a dashboard session kept in an
//! HttpOnly cookie, with an anti-forgery value on the form (login CSRF).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use deploy::ClientError;
use tera::Context;

use crate::AppState;
use crate::error::PageError;

/// The cookie holding the dashboard session (`sls_…`, never an API token).
/// AppTracker accepts it for reads, so the page's live stream
/// authenticates the same way; the dashboard forwards it as a bearer.
pub(crate) const SESSION_COOKIE: &str = "slipway_session";

/// The sign-in form's anti-forgery value, also in a hidden field: a form
/// posted from another site cannot carry this SameSite cookie, so it cannot
/// sign a visitor in as someone else (login CSRF).
pub(crate) const LOGIN_CSRF_COOKIE: &str = "slipway_login_csrf";

/// A cookie's value from the request, if sent.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The credential a request carries: `Authorization: Bearer`, else the
/// session cookie.
pub(crate) fn request_credential(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    cookie(headers, SESSION_COOKIE).map(str::to_string)
}

impl AppState {
    /// A cookie with the attributes every dashboard cookie has: HttpOnly,
    /// SameSite=Strict, and Secure when the dashboard is served over https.
    fn cookie(&self, name: &str, value: &str, path: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure_cookies {
            c.push_str("; Secure");
        }
        c
    }

    /// The sign-in page, with a fresh anti-forgery value in its form and
    /// cookie.
    fn login_page(&self, status: StatusCode, error: Option<&str>) -> Response {
        let csrf = match random_hex() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for the sign-in form");
                return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
            }
        };
        let mut ctx = Context::new();
        ctx.insert("csrf", &csrf);
        if let Some(error) = error {
            ctx.insert("error", error);
        }
        let page = self.render("login.html", &ctx);
        let cookie = self.cookie(LOGIN_CSRF_COOKIE, &csrf, "/login", Some(600));
        (status, [(header::SET_COOKIE, cookie)], self.respond(page)).into_response()
    }
}

/// 128 random bits as hex.
pub(crate) fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) csrf: String,
}

/// `GET /login`
pub(crate) async fn login_form(State(state): State<Arc<AppState>>) -> Response {
    state.login_page(StatusCode::OK, None)
}

/// `POST /login`: checks the form came from our own sign-in page, then
/// exchanges the token for a dashboard session kept in an HttpOnly cookie.
/// The token itself is never stored in the browser.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    let same_form = !expected.is_empty()
        && expected.len() == form.csrf.len()
        && expected
            .bytes()
            .zip(form.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same_form {
        tracing::info!("sign-in refused: the form did not come from this dashboard's sign-in page");
        return state.login_page(
            StatusCode::FORBIDDEN,
            Some("this sign-in form expired or came from another site: sign in again here"),
        );
    }
    let token = form.token.trim().to_string();
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return state.login_page(
            StatusCode::UNAUTHORIZED,
            Some("that is not an API token (they look like slp_ and 40 hex digits)"),
        );
    }
    let session = match state.api.clone().with_token(token).create_session().await {
        Ok(session) => session,
        Err(ClientError::Api {
            status: 401 | 403,
            message,
            ..
        }) => {
            tracing::info!(%message, "sign-in refused");
            return state.login_page(
                StatusCode::UNAUTHORIZED,
                Some("that token is unknown, revoked or may not read the dashboard"),
            );
        }
        Err(e) => return state.error_page(PageError::upstream("opening a session", e)),
    };
    let max_age =
        u64::try_from(session.expires_at.0 - deploy::Timestamp::now().0).unwrap_or(0) / 1000;
    let cookie = state.cookie(SESSION_COOKIE, &session.session, "/", Some(max_age));
    let clear_csrf = state.cookie(LOGIN_CSRF_COOKIE, "", "/login", Some(0));
    // Appended: a plain header array would keep only the last Set-Cookie.
    (
        axum::response::AppendHeaders([
            (header::SET_COOKIE, cookie),
            (header::SET_COOKIE, clear_csrf),
        ]),
        Redirect::to("/"),
    )
        .into_response()
}

/// `POST /logout`: closes the session on the server, then forgets it. The
/// session cookie is SameSite=Strict, so another site's form cannot close
/// it.
pub(crate) async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.api.clone().with_token(session).delete_session().await
    {
        // An expired or already closed session is fine: it is gone.
        tracing::info!(error = %e, "the session could not be closed on the server");
    }
    let cookie = state.cookie(SESSION_COOKIE, "", "/", Some(0));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
