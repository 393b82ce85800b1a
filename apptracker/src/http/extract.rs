//! The request extractors of the API: [`ApiJson`], [`ApiQuery`] and
//! [`ApiPath`] are axum's `Json`, `Query` and `Path` whose rejections are
//! [`ApiError`]s, so malformed input gets the one JSON error shape; and
//! [`parse`] turns a path segment into a domain type the same way.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

/// A path segment parsed into a domain type (`AppName`, `DeployId`, …); a
/// bad one is a `400 invalid_input`.
pub(crate) fn parse<T: std::str::FromStr<Err = deploy::ParseError>>(
    s: &str,
) -> Result<T, ApiError> {
    s.parse::<T>().map_err(ApiError::from)
}

/// `Query` whose rejection is an [`ApiError`]: `?limit=abc` is a
/// `400 invalid_input` in JSON, not axum's plain text.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path` whose rejection is an [`ApiError`] (a segment that is not UTF-8
/// once percent-decoded, say).
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Json` whose rejection is an [`ApiError`], so a malformed body gets the
/// same JSON error shape as everything else. NUL characters in its strings
/// (`\u0000`) become U+FFFD: PostgreSQL's text cannot hold NUL, and a
/// grabber's log tail or a build's output may carry one, which must not
/// make the report fail (nor differ between SQLite and PostgreSQL).
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(e.body_text()),
                _ => ApiError::Invalid(format!("cannot read the request body: {}", e.body_text())),
            })?;
        if !is_json {
            return Err(ApiError::Invalid(
                "invalid request body: expected `Content-Type: application/json`".into(),
            ));
        }
        let Json(value) = Json::<T>::from_bytes(&without_nul(bytes))?;
        Ok(ApiJson(value))
    }
}

/// JSON text with every `\u0000` escape (the only way JSON carries NUL)
/// turned into `\ufffd`; escaped backslashes (`\\u0000` is text) are
/// left alone.
fn without_nul(bytes: axum::body::Bytes) -> axum::body::Bytes {
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return bytes;
    }
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\\' {
            if out.get(i + 1..i + 6) == Some(b"u0000".as_slice()) {
                out[i + 1..i + 6].copy_from_slice(b"ufffd");
            }
            // Skip the escaped character, a backslash included.
            i += 2;
        } else {
            i += 1;
        }
    }
    out.into()
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_become_replacement_characters() {
        let fixed = |s: &str| {
            let out = without_nul(axum::body::Bytes::from(s.to_string()));
            String::from_utf8(out.to_vec()).unwrap()
        };
        assert_eq!(fixed(r#"{"a":"x\u0000y"}"#), r#"{"a":"x\ufffdy"}"#);
        // An escaped backslash before `u0000` is text, not a NUL.
        assert_eq!(fixed(r#"{"a":"x\\u0000"}"#), r#"{"a":"x\\u0000"}"#);
        assert_eq!(fixed(r#"{"a":"\\\u0000"}"#), r#"{"a":"\\\ufffd"}"#);
        let v: serde_json::Value = serde_json::from_str(&fixed(r#"["\u0000"]"#)).unwrap();
        assert_eq!(v[0], "\u{fffd}");
    }
}
