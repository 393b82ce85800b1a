//! The stylesheet and the deploy page's script, and the security headers
//! every dashboard response carries.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The stylesheet and the deploy page's script: files, not inline, so the
/// Content-Security-Policy can forbid every inline script and style.
pub(crate) const STYLESHEET: &str = include_str!("../static/slipway.css");
pub(crate) const DEPLOY_SCRIPT: &str = include_str!("../static/deploy.js");
pub(crate) const PAGE_SCRIPT: &str = include_str!("../static/slipway.js");
pub(crate) const RELEASE_SCRIPT: &str = include_str!("../static/release.js");

pub(crate) async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLESHEET)
}

pub(crate) async fn deploy_script() -> Response {
    static_file("text/javascript; charset=utf-8", DEPLOY_SCRIPT)
}

pub(crate) async fn page_script() -> Response {
    static_file("text/javascript; charset=utf-8", PAGE_SCRIPT)
}

pub(crate) async fn release_script() -> Response {
    static_file("text/javascript; charset=utf-8", RELEASE_SCRIPT)
}

pub(crate) fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// What the dashboard's pages may load and who may frame them: only this
/// origin's own files, no inline script or style, no frames (clickjacking),
/// forms posted only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every dashboard response.
pub(crate) async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    resp
}
