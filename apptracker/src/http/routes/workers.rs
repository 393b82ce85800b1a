//! The build-worker protocol under `/api/v1/builds`: packer workers claim
//! builds, hold their lease, stream logs, upload the file index and the
//! artifact and report the result.

use axum::body::Body;
use axum::http::header;
use deploy::{Build, BuildId, BuildJob, BuildResult, BuildWorker, ClaimBuild, Sha256};
use serde::Deserialize;

use crate::queue::Holder;
use axum::extract::State;
use deploy::ErrorBody;

use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, parse};
use crate::http::openapi::Empty;
use crate::model::Principal;
use crate::tracker::Tracker;

// ---------------------------------------------------------------- build workers
//
// Builder tokens (and admins) only; a lease is the token's that claimed it.

#[utoipa::path(
    post, path = "/api/v1/builds/claim", tag = "build workers",
    summary = "A packer worker claims the oldest queued build (builder)",
    request_body = ClaimBuild,
    responses((status = 200, description = "The claimed build, or null when none is queued", body = Option<BuildJob>))
)]
pub(crate) async fn claim_build(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(req): ApiJson<ClaimBuild>,
) -> Result<ApiJson<Option<BuildJob>>, ApiError> {
    who.require_builder()?;
    let holder = Holder::token(&who, &req.worker)?;
    let job = t.claim_build(&holder, req.roots).await?;
    match job {
        Some(job) => Ok(ApiJson(Some(job))),
        None => Ok(ApiJson(None)),
    }
}

#[utoipa::path(
    post, path = "/api/v1/builds/{id}/lease", tag = "build workers",
    summary = "Extend the worker's claim on a build (builder holding the lease)",
    params(("id" = BuildId, Path, description = "The build's id")), request_body = BuildWorker,
    responses((status = 200, description = "Renewed", body = Empty),
              (status = 409, description = "`conflict`: the claim is lost, or is another token's", body = ErrorBody))
)]
pub(crate) async fn renew_lease(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<BuildWorker>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_builder()?;
    let id: BuildId = parse(&id)?;
    t.renew_build_lease(id, &Holder::token(&who, &req.worker)?)
        .await?;
    Ok(ApiJson(serde_json::json!({})))
}

#[utoipa::path(
    post, path = "/api/v1/builds/{id}/log", tag = "build workers",
    summary = "Append to a running build's log (builder holding the lease)",
    params(("id" = BuildId, Path, description = "The build's id")), request_body = deploy::BuildLogChunk,
    responses((status = 200, description = "Appended", body = Empty))
)]
pub(crate) async fn append_build_log(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<deploy::BuildLogChunk>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_builder()?;
    let id: BuildId = parse(&id)?;
    t.append_build_log(id, &Holder::token(&who, &req.worker)?, &req.text)
        .await?;
    Ok(ApiJson(serde_json::json!({})))
}

#[utoipa::path(
    post, path = "/api/v1/builds/{id}/release", tag = "build workers",
    summary = "Hand a claimed build back to the queue (builder holding the lease)",
    params(("id" = BuildId, Path, description = "The build's id")), request_body = BuildWorker,
    responses((status = 200, description = "Released", body = Empty))
)]
pub(crate) async fn release_build(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<BuildWorker>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_builder()?;
    let id: BuildId = parse(&id)?;
    t.release_build(id, &Holder::token(&who, &req.worker)?)
        .await?;
    Ok(ApiJson(serde_json::json!({})))
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    worker: String,
}

#[utoipa::path(
    put, path = "/api/v1/builds/{id}/artifact", tag = "build workers",
    summary = "Upload a build's artifact, a signed tar.gz (builder holding the lease)",
    description = "AppTracker measures the sha256 and size while the bytes stream in (the announced \
                   sha256 must match); the build's result must then report the same. An upload over \
                   `max_artifact_size` is cut off with 413, one that stalls for `upload_idle_timeout` \
                   with 408; nothing partial is kept.",
    params(("id" = BuildId, Path, description = "The build's id"),
        ("worker" = String, Query, description = "The worker holding the lease"),
        ("x-slipway-sha256" = Sha256, Header, description = "The artifact's sha256, checked while it streams"),
        ("x-slipway-signature" = String, Header, description = "The packer's ed25519 signature (base64)")),
    request_body(content = String, content_type = "application/octet-stream", description = "The artifact (tar.gz)"),
    responses((status = 200, description = "Stored", body = Empty),
              (status = 408, description = "`request_timeout`: the upload stalled", body = ErrorBody),
              (status = 413, description = "`payload_too_large`: over `max_artifact_size`", body = ErrorBody))
)]
pub(crate) async fn upload_artifact(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_builder()?;
    let id: BuildId = parse(&id)?;
    let holder = Holder::token(&who, &q.worker)?;
    let (sha, signature, declared) = signed_upload(&headers)?;
    t.receive_artifact(
        id,
        &holder,
        &sha,
        &signature,
        declared,
        body.into_data_stream(),
    )
    .await?;
    Ok(ApiJson(serde_json::json!({})))
}

/// An upload's announced sha256, signature and declared length, from its
/// headers.
fn signed_upload(
    headers: &axum::http::HeaderMap,
) -> Result<(Sha256, deploy::signing::Signature, Option<u64>), ApiError> {
    let sha = headers
        .get("x-slipway-sha256")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Invalid("the `x-slipway-sha256` header is required".into()))?;
    let sha: Sha256 = parse(sha)?;
    let signature = headers
        .get("x-slipway-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Invalid(
                "the `x-slipway-signature` header is required: artifacts and indexes are signed \
                 by the packer (packer worker --signing-key)"
                    .into(),
            )
        })?;
    let signature = deploy::signing::Signature::parse(signature)
        .map_err(|e| ApiError::Invalid(format!("malformed signature: {e}")))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Ok((sha, signature, declared))
}

#[utoipa::path(
    put, path = "/api/v1/builds/{id}/index", tag = "build workers",
    summary = "Upload a build's signed file index, before its artifact (builder holding the lease)",
    description = "The release's file index (`deploy::index`, JSON), signed with \
                   `SigningKey::sign_index`. AppTracker measures its sha256 (the announced one must \
                   match), refuses one over `deploy::index::MAX_INDEX_BYTES` (413) or one that is not \
                   a valid index of the build's app and version (400, saying what is wrong), and \
                   stores it beside the artifact. Hosts are given it only when the artifact's files \
                   were all stored as blobs.",
    params(("id" = BuildId, Path, description = "The build's id"),
        ("worker" = String, Query, description = "The worker holding the lease"),
        ("x-slipway-sha256" = Sha256, Header, description = "The index file's sha256"),
        ("x-slipway-signature" = String, Header, description = "The packer's ed25519 signature over the index (base64)")),
    request_body(content = String, content_type = "application/json", description = "The index file"),
    responses((status = 200, description = "Stored", body = Empty),
              (status = 400, description = "`invalid_input`: a bad index, a wrong sha256, or the artifact came first", body = ErrorBody),
              (status = 408, description = "`request_timeout`: the upload stalled", body = ErrorBody),
              (status = 413, description = "`payload_too_large`: over `MAX_INDEX_BYTES`", body = ErrorBody))
)]
pub(crate) async fn upload_index(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_builder()?;
    let id: BuildId = parse(&id)?;
    let holder = Holder::token(&who, &q.worker)?;
    let (sha, signature, declared) = signed_upload(&headers)?;
    t.receive_index(
        id,
        &holder,
        &sha,
        &signature,
        declared,
        body.into_data_stream(),
    )
    .await?;
    Ok(ApiJson(serde_json::json!({})))
}

#[utoipa::path(
    post, path = "/api/v1/builds/{id}/result", tag = "build workers",
    summary = "Report how a claimed build ended (builder holding the lease)",
    description = "A success must report the sha256 and size AppTracker measured when the artifact \
                   was uploaded (`artifact_mismatch` otherwise). The body is at most 8 MiB \
                   (`deploy::BUILD_RESULT_BODY_LIMIT`): a worker sends at most the last 1 MiB of its \
                   log.",
    params(("id" = BuildId, Path, description = "The build's id")), request_body = BuildResult,
    responses((status = 200, description = "The finished build", body = Build),
              (status = 413, description = "`payload_too_large`: over 8 MiB", body = ErrorBody),
              (status = 422, description = "`artifact_mismatch`", body = ErrorBody))
)]
pub(crate) async fn build_result(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<BuildResult>,
) -> Result<ApiJson<Build>, ApiError> {
    who.require_builder()?;
    let id: BuildId = parse(&id)?;
    let holder = Holder::token(&who, &req.worker)?;
    Ok(ApiJson(
        t.finish_build(id, &holder, &req.outcome, &req.log).await?,
    ))
}
