//! `/artifacts/{app}/{file}` and `/artifacts/{app}/blobs/{sha256}`:
//! downloads from the local artifact store (artifacts, their file indexes,
//! the blobs of their files), with signed URLs only.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use deploy::{AppName, Sha256, Version};
use serde::Deserialize;

use crate::store::{artifact_key, blob_key, content_type, index_key};
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
           ("file" = String, Path, description = "`<app>-<version>.tar.gz`, or `<app>-<version>.tar.gz.index.json` (its file index)"),
           ("expires" = Option<i64>, Query, description = "Expiry of the signed URL (unix ms)"),
           ("sig" = Option<String>, Query, description = "The URL's signature")),
    security(()),
    responses((status = 200, content_type = "application/gzip", body = String, description = "The artifact (or its index, `application/json`)"))
)]
pub(crate) async fn artifact(
    State(t): State<Tracker>,
    ApiPath((app, file)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<Signed>,
) -> Result<Response, ApiError> {
    let app: AppName = parse(&app)?;
    // Only `<app>-<version>.tar.gz` names (and their `.index.json`) are
    // served: no path tricks.
    let (rest, index) = match file.strip_suffix(".tar.gz.index.json") {
        Some(rest) => (Some(rest), true),
        None => (file.strip_suffix(".tar.gz"), false),
    };
    let version = rest
        .and_then(|rest| rest.strip_prefix(app.as_str()))
        .and_then(|rest| rest.strip_prefix('-'))
        .ok_or_else(|| ApiError::NotFound(format!("no artifact `{file}`")))?;
    let version: Version = parse(version)?;
    let key = if index {
        index_key(&app, &version)
    } else {
        artifact_key(&app, &version)
    };
    serve(&t, &key, q, &file).await
}

/// One file of an app's releases, by its content's sha256.
#[utoipa::path(
    get, path = "/artifacts/{app}/blobs/{sha256}", tag = "artifacts",
    params(("app" = AppName, Path, description = "The app"),
           ("sha256" = Sha256, Path, description = "The file's content's sha256"),
           ("expires" = Option<i64>, Query, description = "Expiry of the signed URL (unix ms)"),
           ("sig" = Option<String>, Query, description = "The URL's signature")),
    security(()),
    responses((status = 200, content_type = "application/octet-stream", body = String, description = "The file's content"))
)]
pub(crate) async fn blob(
    State(t): State<Tracker>,
    ApiPath((app, sha256)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<Signed>,
) -> Result<Response, ApiError> {
    let app: AppName = parse(&app)?;
    let sha256: Sha256 = parse(&sha256)?;
    serve(&t, &blob_key(&app, &sha256), q, sha256.as_str()).await
}

/// Serves `key` of the local store to the holder of its signed URL.
async fn serve(t: &Tracker, key: &str, q: Signed, shown: &str) -> Result<Response, ApiError> {
    let Some(store) = t.local_store() else {
        return Err(ApiError::NotFound(
            "artifacts are not served from here".into(),
        ));
    };
    let (Some(expires), Some(sig)) = (q.expires, q.sig) else {
        return Err(ApiError::Forbidden(
            "artifact URLs must be signed: ask AppTracker for the host's desired state".into(),
        ));
    };
    store
        .verify(key, expires, &sig)
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let path = store.path(key);
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!("no artifact `{shown}`")));
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
            (header::CONTENT_TYPE, content_type(key).to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}
