//! Why a page could not be shown, and the error page that says so.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use deploy::ClientError;
use serde::Serialize;
use tera::Context;

use crate::AppState;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// What the page is about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The visitor has no session, or it ended: off to the sign-in page.
    #[error("sign in first")]
    SignIn,
    /// A form the server cannot act on: what was wrong, and where.
    #[error("{0}")]
    BadInput(String),
    /// A state-changing form without this session's anti-forgery value.
    #[error("{0}")]
    Forgery(String),
    /// AppTracker's API could not be reached or failed.
    #[error("{doing}: {source}")]
    Upstream {
        doing: &'static str,
        #[source]
        source: ClientError,
    },
    /// A template failed at render time: a bug in this crate.
    #[error("rendering {template}: {source}")]
    Render {
        template: String,
        #[source]
        source: tera::Error,
    },
}

impl PageError {
    pub(crate) fn upstream(doing: &'static str, source: ClientError) -> Self {
        PageError::Upstream { doing, source }
    }
}

/// The error page's view model.
#[derive(Serialize)]
pub(crate) struct ErrorView {
    pub(crate) status: u16,
    pub(crate) title: &'static str,
    pub(crate) message: String,
}

impl AppState {
    /// Logs the error once, at the level it deserves, and renders the error
    /// page. Falls back to minimal escaped HTML if even that fails.
    pub(crate) fn error_page(&self, error: PageError) -> Response {
        let (status, title, message) = match &error {
            PageError::NotFound(message) => {
                tracing::info!(%message, "not found");
                (StatusCode::NOT_FOUND, "Not found", message.clone())
            }
            PageError::SignIn
            | PageError::Upstream {
                source: ClientError::Api { status: 401, .. },
                ..
            } => return Redirect::to("/login").into_response(),
            PageError::BadInput(message) => (StatusCode::BAD_REQUEST, "Bad input", message.clone()),
            PageError::Forgery(message) => {
                tracing::warn!(%message, "a state-changing form without its anti-forgery value");
                (StatusCode::FORBIDDEN, "Refused", message.clone())
            }
            PageError::Upstream {
                source:
                    ClientError::Api {
                        status: 403,
                        message,
                        ..
                    },
                ..
            } => (StatusCode::FORBIDDEN, "Not allowed", message.clone()),
            // What AppTracker refused (a bad regex, a deploy already over,
            // a frozen cluster…) is the visitor's to fix: its status and
            // its words, never a gateway error.
            PageError::Upstream {
                source:
                    ClientError::Api {
                        status: status @ 400..=499,
                        message,
                        ..
                    },
                ..
            } => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                if *status == 404 {
                    "Not found"
                } else {
                    "Refused"
                },
                message.clone(),
            ),
            PageError::Upstream { .. } => {
                tracing::warn!(error = %error, "AppTracker API failed");
                (
                    StatusCode::BAD_GATEWAY,
                    "AppTracker API unavailable",
                    error.to_string(),
                )
            }
            PageError::Render { .. } => {
                tracing::error!(error = ?error, "dashboard template failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Dashboard error",
                    "the page could not be rendered; the error is in the server's log".to_string(),
                )
            }
        };
        let view = ErrorView {
            status: status.as_u16(),
            title,
            message,
        };
        let mut ctx = Context::new();
        ctx.insert("error", &view);
        let html = match self.tera.render("error.html", &ctx) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(error = ?e, "error page failed to render");
                let mut escaped = Vec::new();
                // Writing into a Vec cannot fail.
                let _ = tera::escape_html(&view.message, &mut escaped);
                format!(
                    "<!DOCTYPE html><title>{status}</title><h1>{title}</h1><p>{}</p>",
                    String::from_utf8_lossy(&escaped)
                )
            }
        };
        (status, Html(html)).into_response()
    }
}
