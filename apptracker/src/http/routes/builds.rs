//! `/api/v1/apps/{app}/builds`, `/api/v1/builds` and `/api/v1/builds/{id}`:
//! asking for a build of a git ref, reading builds and following their
//! logs, and marking one bad.

use axum::extract::State;
use axum::http::StatusCode;
use deploy::ErrorBody;
use deploy::{AppName, Build, BuildId, PageQuery, RequestBuild};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, parse};
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/builds", tag = "builds",
    summary = "Build the app at a git ref, or reuse a build of the same commit (deployer)",
    params(("app" = AppName, Path, description = "The app's name")),
    request_body(content = Option<RequestBuild>, description = "Optional: no body builds the app's branch"),
    responses((status = 201, description = "A new build, queued", body = Build),
              (status = 200, description = "A build of the same commit, reused", body = Build),
              (status = 422, description = "`bad_ref`", body = ErrorBody))
)]
pub(crate) async fn request_build(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<Build>), ApiError> {
    who.require(Role::Deployer)?;
    let app: AppName = parse(&app)?;
    // The body is optional: no body builds the tip of the app's branch.
    let req: RequestBuild = if body.iter().all(u8::is_ascii_whitespace) {
        RequestBuild::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))?
    };
    let (build, new) = t.request_build(&app, req.git_ref.as_ref()).await?;
    note.target(format!(
        "build {} ({}) of {}{}",
        build.id,
        build.version,
        build.git_ref,
        if new { "" } else { ", reused" }
    ));
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(build)))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/builds", tag = "builds",
    summary = "The app's builds, newest first, without logs (paged)",
    params(("app" = AppName, Path, description = "The app's name"), PageQuery),
    responses((status = 200, description = "A page of builds", body = Vec<Build>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn list_builds(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<Build>, ApiError> {
    who.require(Role::Viewer)?;
    let app: AppName = parse(&app)?;
    let limit = page::limit(q.limit)?;
    let before = page::id_cursor(q.cursor.as_deref())?;
    if t.queries().app(&app).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown app `{app}`")));
    }
    let builds = t
        .queries()
        .builds(Some(&app), before, page::rows(limit))
        .await?;
    let mut out = Vec::with_capacity(builds.len());
    for b in builds {
        out.push(t.present_build(b).await?);
    }
    Ok(Paged::cut(out, limit, |b| b.id.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/builds", tag = "builds",
    summary = "Every app's builds (one app's when asked), newest first, without logs (paged)",
    params(deploy::BuildQuery),
    responses((status = 200, description = "A page of builds", body = Vec<Build>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn recent_builds(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<deploy::BuildQuery>,
) -> Result<Paged<Build>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page::limit(q.limit)?;
    let before = page::id_cursor(q.cursor.as_deref())?;
    let builds = t
        .queries()
        .builds(q.app.as_ref(), before, page::rows(limit))
        .await?;
    let mut out = Vec::with_capacity(builds.len());
    for b in builds {
        out.push(t.present_build(b).await?);
    }
    Ok(Paged::cut(out, limit, |b| b.id.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/builds/{id}", tag = "builds",
    summary = "One build, with its log (so far, while it runs)",
    params(("id" = BuildId, Path, description = "The build's id")),
    responses((status = 200, description = "The build", body = Build))
)]
pub(crate) async fn show_build(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Build>, ApiError> {
    who.require(Role::Viewer)?;
    let id: BuildId = parse(&id)?;
    let build = t.queries().build(id).await?;
    let build = build.ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
    Ok(ApiJson(t.present_build(build).await?))
}

#[utoipa::path(
    post, path = "/api/v1/builds/{id}/bad", tag = "builds",
    summary = "Mark an ended build bad: never reused, its version never deployed again (admin)",
    params(("id" = BuildId, Path, description = "The build's id")), request_body = deploy::MarkBuildBad,
    responses((status = 200, description = "The build, marked", body = Build),
              (status = 409, description = "`conflict`: the build has not ended", body = ErrorBody))
)]
pub(crate) async fn mark_build_bad(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<deploy::MarkBuildBad>,
) -> Result<ApiJson<Build>, ApiError> {
    note.target(format!("mark build {id} bad"));
    who.require(Role::Admin)?;
    let id: BuildId = parse(&id)?;
    let build = t.mark_build_bad(id, &who.name, &req.reason).await?;
    note.app(&build.app);
    note.target(format!("mark build {id} ({}) bad", build.version));
    Ok(ApiJson(build))
}

#[utoipa::path(
    get, path = "/api/v1/builds/{id}/log", tag = "builds",
    summary = "A piece of a build's log from a byte offset, to follow it while it runs",
    description = "At most 256 KiB of whole characters from `from`; ask again with `from` = the answer's \
                   `next` until `done`. Offsets count bytes since the build's log began; when the log \
                   starts over (another worker took the build; a result's log that does not continue \
                   the streamed one), a `from` inside the old log answers from the new one's start, \
                   and the answer's `from` then differs from the one asked.",
    params(("id" = BuildId, Path, description = "The build's id"), deploy::BuildLogQuery),
    responses((status = 200, description = "The piece, and whether the log is complete", body = deploy::BuildLog))
)]
pub(crate) async fn build_log(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<deploy::BuildLogQuery>,
) -> Result<ApiJson<deploy::BuildLog>, ApiError> {
    who.require(Role::Viewer)?;
    let id: BuildId = parse(&id)?;
    Ok(ApiJson(t.build_log(id, q.from).await?))
}
