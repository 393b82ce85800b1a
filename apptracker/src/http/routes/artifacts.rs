//! `/artifacts/{app}/{file}`: downloads from the local artifact store,
//! with signed URLs only.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use deploy::{AppName, Version};
use serde::Deserialize;

use crate::store::artifact_key;
use axum::extract::State;

use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery, parse};
use crate::tracker::Tracker;

#[derive(Deserialize)]
pub(crate) struct Signed {
    expires: Option<i64>,
    sig: Option<String>,
}

/// Serves the local store. Only signed, unexpired URLs minted by this
/// AppTracker are honoured, so the URL alone is the credential, exactly like
/// a presigned S3 URL.
#[utoipa::path(
    get, path = "/artifacts/{app}/{file}", tag = "artifacts",
    params(("app" = AppName, Path, description = "The app"),
           ("file" = String, Path, description = "`<app>-<version>.tar.gz`"),
           ("expires" = Option<i64>, Query, description = "Expiry of the signed URL (unix ms)"),
           ("sig" = Option<String>, Query, description = "The URL's signature")),
    security(()),
    responses((status = 200, content_type = "application/gzip", body = String, description = "The artifact"))
)]
pub(crate) async fn artifact(
    State(t): State<Tracker>,
    ApiPath((app, file)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<Signed>,
) -> Result<Response, ApiError> {
    let Some(store) = t.local_store() else {
        return Err(ApiError::NotFound(
            "artifacts are not served from here".into(),
        ));
    };
    let app: AppName = parse(&app)?;
    // Only `<app>-<version>.tar.gz` names are served: no path tricks.
    let version = file
        .strip_suffix(".tar.gz")
        .and_then(|rest| rest.strip_prefix(app.as_str()))
        .and_then(|rest| rest.strip_prefix('-'))
        .ok_or_else(|| ApiError::NotFound(format!("no artifact `{file}`")))?;
    let version: Version = parse(version)?;
    let key = artifact_key(&app, &version);
    let (Some(expires), Some(sig)) = (q.expires, q.sig) else {
        return Err(ApiError::Forbidden(
            "artifact URLs must be signed: ask AppTracker for the host's desired state".into(),
        ));
    };
    store
        .verify(&key, expires, &sig)
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let path = store.path(&key);
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!("no artifact `{file}`")));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot open artifact").into()),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| anyhow::Error::new(e).context("cannot stat artifact"))?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}
