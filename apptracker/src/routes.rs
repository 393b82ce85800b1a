//! The HTTP API under `/api/v1`, the SSE relays, and artifact serving.
//! Handlers parse input into domain types and call the tracker.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use deploy::{
    App, AppName, Build, BuildId, BusMessage, Cluster, CreateDeploy, CreateToken, CreatedToken,
    Deploy, DeployEvent, DeployHost, DeployId, DesiredState, ErrorBody, Heartbeat, Host, HostEvent,
    HostName, HostSelector, PageQuery, RegisterApp, RequestBuild, TokenInfo, Version,
};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use deploy::{
    BuildJob, BuildResult, BuildWorker, ClaimBuild, CreatedWebhookSecret, GitRef, SetWebhookSecret,
    Sha256, TriggerUrl, WebhookOutcome, WebhookSecretInfo,
};

use crate::audit::Note;
use crate::auth::{Principal, Role};
use crate::bus::Live;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::openapi::Empty;
use crate::page::{self, Paged};
use crate::queue::Holder;
use crate::store::artifact_key;
use crate::tracker::Tracker;

/// Every route, each registered with the operation its `#[utoipa::path]`
/// annotation describes: the router and the OpenAPI document are built
/// from the same calls, so a route cannot be served undocumented or
/// documented unserved (the test in `openapi.rs` checks it anyway). Add
/// routes only through `.routes(routes!(..))`.
pub(crate) fn api_routes() -> OpenApiRouter<Tracker> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(register_app, list_apps))
        .routes(routes!(show_app))
        .routes(routes!(request_build, list_builds))
        .routes(routes!(show_build))
        .routes(routes!(mark_build_bad))
        .routes(routes!(claim_build))
        .routes(routes!(renew_lease))
        .routes(routes!(append_build_log))
        .routes(routes!(release_build))
        .routes(routes!(upload_artifact))
        // A worker's result carries its build log (which it cuts to fit,
        // `packer::worker::fit_log`): more room than the default 2 MB.
        .routes(
            routes!(build_result).layer(axum::extract::DefaultBodyLimit::max(
                deploy::BUILD_RESULT_BODY_LIMIT,
            )),
        )
        .routes(routes!(create_deploy, list_deploys))
        .routes(routes!(show_deploy))
        .routes(routes!(cancel_deploy))
        .routes(routes!(retry_deploy))
        .routes(routes!(continue_deploy))
        .routes(routes!(list_clusters))
        .routes(routes!(show_cluster, set_cluster))
        .routes(routes!(freeze_cluster, thaw_cluster))
        .routes(routes!(list_all_pins))
        .routes(routes!(preview_targets))
        .routes(routes!(rollback_app))
        .routes(routes!(list_pins))
        .routes(routes!(delete_pin))
        .routes(routes!(deploy_events))
        .routes(routes!(deploy_stream))
        // A failed host's report carries up to 1 MiB of log, which JSON
        // escaping can grow: more room than the default 2 MB.
        .routes(routes!(host_event).layer(axum::extract::DefaultBodyLimit::max(8 << 20)))
        // GitHub accepts push payloads up to 25 MB: a big push must not
        // be a 413 that silently builds nothing.
        .routes(routes!(webhook).layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)))
        .routes(routes!(webhook_without_app))
        .routes(routes!(list_webhook_secrets))
        .routes(routes!(set_webhook_secret, delete_webhook_secret))
        .routes(routes!(new_trigger))
        .routes(routes!(trigger))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(delete_token))
        .routes(routes!(list_audit))
        .routes(routes!(list_hosts))
        .routes(routes!(heartbeat))
        .routes(routes!(desired))
        .routes(routes!(bus_stream))
        .routes(routes!(artifact))
        .routes(routes!(healthz))
        .routes(routes!(openapi_json))
        .merge(crate::drift_routes::routes())
        .merge(crate::sessions::routes())
}

pub fn api(tracker: Tracker) -> Router {
    let (router, _doc) = api_routes().split_for_parts();
    router
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .layer(axum::middleware::from_fn(crate::error::json_errors))
        // Last, so it wraps every route and the fallback.
        .layer(axum::middleware::from_fn_with_state(
            tracker.clone(),
            crate::audit::record,
        ))
        .with_state(tracker)
}

/// The largest webhook delivery accepted (GitHub's own cap on payloads).
const WEBHOOK_BODY_LIMIT: usize = 25 << 20;

fn parse<T: std::str::FromStr<Err = deploy::ParseError>>(s: &str) -> Result<T, ApiError> {
    s.parse::<T>().map_err(ApiError::from)
}

// ---------------------------------------------------------------- apps

#[utoipa::path(
    post, path = "/api/v1/apps", tag = "apps",
    summary = "Register an app by its git repository (admin)",
    request_body = RegisterApp,
    responses((status = 201, description = "Registered", body = App),
              (status = 409, description = "`conflict`: the name is taken", body = ErrorBody))
)]
async fn register_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<RegisterApp>,
) -> Result<(StatusCode, ApiJson<App>), ApiError> {
    // Not the git URL: it may carry credentials.
    note.app(&req.name);
    note.target(format!("app {}", req.name));
    who.require(Role::Admin)?;
    if req.git_url.trim().is_empty() {
        return Err(ApiError::Invalid("`git_url` must not be empty".into()));
    }
    if let Some(what) = packer::url_credentials(&req.git_url) {
        // Never echo the URL: it holds the secret.
        return Err(ApiError::Invalid(format!(
            "`git_url` must not carry credentials, and this one holds {what}: an app's URL is \
             shown to every viewer and sent to every build worker. Register the URL without them \
             (`https://git.example.com/team/app.git`) and give the credentials to packer: \
             `[git] username` and `password_file` (or `ssh_key_file`) in AppTracker's config, \
             `--git-username` and `--git-password-file` on `packer worker`"
        )));
    }
    let branch = req
        .branch
        .unwrap_or_else(|| crate::tracker::DEFAULT_BRANCH.to_string());
    GitRef::parse(branch.as_str()).map_err(|e| ApiError::Invalid(format!("`branch`: {e}")))?;
    let app = App {
        name: req.name.clone(),
        git_url: req.git_url.clone(),
        branch,
        auto_deploy: req.auto_deploy,
        created_at: deploy::Timestamp::now(),
    };
    match t.db().insert_app(&app).await? {
        Some(app) => {
            tracing::info!(app = %app.name, "app registered");
            Ok((StatusCode::CREATED, ApiJson(shown(app))))
        }
        None => Err(ApiError::Conflict(format!(
            "app `{}` is already registered",
            req.name
        ))),
    }
}

/// An app as the API shows it: credentials in a `git_url` registered
/// before they were refused are masked (`https://***@host/…`).
fn shown(mut app: App) -> App {
    app.git_url = packer::redact_url(&app.git_url);
    app
}

#[utoipa::path(
    get, path = "/api/v1/apps", tag = "apps",
    summary = "Registered apps, by name (paged)",
    params(PageQuery),
    responses((status = 200, description = "A page of apps", body = Vec<App>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
async fn list_apps(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<App>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page::limit(q.limit)?;
    let after = page::name_cursor::<AppName>(q.cursor.as_deref())?;
    let apps = t.db().apps_page(after.as_ref(), page::rows(limit)).await?;
    let apps = apps.into_iter().map(shown).collect();
    Ok(Paged::cut(apps, limit, |a| a.name.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}", tag = "apps", summary = "One app",
    params(("app" = AppName, Path, description = "The app's name")),
    responses((status = 200, description = "The app", body = App))
)]
async fn show_app(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
) -> Result<ApiJson<App>, ApiError> {
    who.require(Role::Viewer)?;
    let app: AppName = parse(&app)?;
    let found = t.db().app(&app).await?;
    found
        .map(|a| ApiJson(shown(a)))
        .ok_or_else(|| ApiError::NotFound(format!("unknown app `{app}`")))
}

// ---------------------------------------------------------------- builds

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/builds", tag = "builds",
    summary = "Build the app at a git ref, or reuse a build of the same commit (deployer)",
    params(("app" = AppName, Path, description = "The app's name")),
    request_body(content = Option<RequestBuild>, description = "Optional: no body builds the app's branch"),
    responses((status = 201, description = "A new build, queued", body = Build),
              (status = 200, description = "A build of the same commit, reused", body = Build),
              (status = 422, description = "`bad_ref`", body = ErrorBody))
)]
async fn request_build(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<Build>), ApiError> {
    who.require(Role::Deployer)?;
    let app: AppName = parse(&app)?;
    // The body is optional: no body builds the default branch.
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
async fn list_builds(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<Build>, ApiError> {
    who.require(Role::Viewer)?;
    let app: AppName = parse(&app)?;
    let limit = page::limit(q.limit)?;
    let before = page::id_cursor(q.cursor.as_deref())?;
    if t.db().app(&app).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown app `{app}`")));
    }
    let builds = t.db().builds(&app, before, page::rows(limit)).await?;
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
async fn show_build(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Build>, ApiError> {
    who.require(Role::Viewer)?;
    let id: BuildId = parse(&id)?;
    let build = t.db().build(id).await?;
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
async fn mark_build_bad(
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

// ---------------------------------------------------------------- build workers
//
// Builder tokens (and admins) only; a lease is the token's that claimed it.

#[utoipa::path(
    post, path = "/api/v1/builds/claim", tag = "build workers",
    summary = "A packer worker claims the oldest queued build (builder)",
    request_body = ClaimBuild,
    responses((status = 200, description = "The claimed build, or null when none is queued", body = Option<BuildJob>))
)]
async fn claim_build(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(req): ApiJson<ClaimBuild>,
) -> Result<ApiJson<Option<BuildJob>>, ApiError> {
    who.require_builder()?;
    let holder = Holder::token(&who, &req.worker)?;
    let job = t.claim_build(&holder).await?;
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
async fn renew_lease(
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
async fn append_build_log(
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
async fn release_build(
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
struct UploadQuery {
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
async fn upload_artifact(
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
                "the `x-slipway-signature` header is required: artifacts are signed by the packer \
                 (packer worker --signing-key)"
                    .into(),
            )
        })?;
    let signature = deploy::signing::Signature::parse(signature)
        .map_err(|e| ApiError::Invalid(format!("malformed signature: {e}")))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
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
async fn build_result(
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

// ---------------------------------------------------------------- deploys

#[utoipa::path(
    post, path = "/api/v1/deploys", tag = "deploys",
    summary = "Deploy an app at a version or git ref to a cluster's hosts (deployer)",
    request_body = CreateDeploy,
    responses((status = 201, description = "Started (or waiting for its build)", body = Deploy),
              (status = 409, description = "`deploy_in_progress`, `pinned`", body = ErrorBody),
              (status = 422, description = "`no_matching_hosts`, `bad_ref`, `build_not_ready`", body = ErrorBody))
)]
async fn create_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<CreateDeploy>,
) -> Result<(StatusCode, ApiJson<Deploy>), ApiError> {
    // What was asked for, so a refusal says it too.
    let what = match (&req.version, &req.git_ref) {
        (Some(v), _) => v.to_string(),
        (None, Some(r)) => r.to_string(),
        (None, None) => "?".to_string(),
    };
    let hosts = req
        .hosts
        .as_ref()
        .map(|h| format!(" hosts ~ {h}"))
        .unwrap_or_default();
    note.app(&req.app);
    note.target(format!("{what} to {}{hosts}", req.cluster));
    who.require(Role::Deployer)?;
    let deploy = t.create_deploy(&req, &who.name).await?;
    note.target(format!(
        "deploy {} of {what} to {}{hosts}",
        deploy.id, req.cluster
    ));
    Ok((StatusCode::CREATED, ApiJson(deploy)))
}

#[utoipa::path(
    get, path = "/api/v1/deploys", tag = "deploys",
    summary = "Deploys, newest first, with their hosts (paged)",
    params(PageQuery),
    responses((status = 200, description = "A page of deploys", body = Vec<Deploy>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
async fn list_deploys(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<Deploy>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page::limit(q.limit)?;
    let before = page::id_cursor(q.cursor.as_deref())?;
    let deploys = t.db().deploys(before, page::rows(limit)).await?;
    Ok(Paged::cut(deploys, limit, |d| d.id.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/deploys/{id}", tag = "deploys", summary = "One deploy, one row per host",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, description = "The deploy", body = Deploy))
)]
async fn show_deploy(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    who.require(Role::Viewer)?;
    let id: DeployId = parse(&id)?;
    Ok(ApiJson(t.deploy(id).await?))
}

/// Back to the version before the newest deploy, everywhere it replaced
/// one; pins the app there.
#[utoipa::path(
    post, path = "/api/v1/apps/{app}/rollback", tag = "deploys",
    params(("app" = AppName, Path, description = "The app's name")), request_body = deploy::Rollback,
    responses((status = 200, description = "The rollback deploy", body = Deploy),
              (status = 409, description = "`deploy_in_progress`", body = ErrorBody),
              (status = 422, description = "`nothing_to_roll_back`, `ambiguous_rollback`", body = ErrorBody))
)]
async fn rollback_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(req): ApiJson<deploy::Rollback>,
) -> Result<ApiJson<Deploy>, ApiError> {
    let app = AppName::parse(app)?;
    note.app(&app);
    note.target(format!("rollback on {}", req.cluster));
    who.require(Role::Deployer)?;
    Ok(ApiJson(
        t.rollback_app(&app, &req.cluster, req.confirm.as_ref(), &who.name)
            .await?,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/pins", tag = "deploys",
    summary = "Where the app is pinned, by cluster (paged)",
    params(("app" = AppName, Path, description = "The app's name"), PageQuery),
    responses((status = 200, description = "A page of pins", body = Vec<deploy::Pin>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
async fn list_pins(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<deploy::Pin>, ApiError> {
    who.require(Role::Viewer)?;
    let app = AppName::parse(app)?;
    let limit = page::limit(q.limit)?;
    let after = page::name_cursor::<Cluster>(q.cursor.as_deref())?;
    let pins = t
        .db()
        .pins_page(&app, after.as_ref(), page::rows(limit))
        .await?;
    Ok(Paged::cut(pins, limit, |p| p.cluster.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/pins", tag = "deploys",
    summary = "Every pin of every app, by app and cluster",
    responses((status = 200, description = "The pins", body = Vec<deploy::Pin>))
)]
async fn list_all_pins(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<deploy::Pin>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.db().all_pins().await?))
}

#[utoipa::path(
    delete, path = "/api/v1/apps/{app}/pins/{cluster}", tag = "deploys",
    summary = "Unpin the app on a cluster: other versions may be deployed again (deployer)",
    params(("app" = AppName, Path, description = "The app's name"), ("cluster" = Cluster, Path, description = "The cluster")),
    responses((status = 200, description = "Unpinned", body = Empty))
)]
async fn delete_pin(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath((app, cluster)): ApiPath<(String, String)>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    let (app, cluster) = (AppName::parse(app)?, Cluster::parse(cluster)?);
    note.app(&app);
    note.target(format!("unpin on {cluster}"));
    who.require(Role::Deployer)?;
    if !t.db().delete_pin(&app, &cluster).await? {
        return Err(ApiError::NotFound(format!(
            "`{app}` is not pinned on `{cluster}`"
        )));
    }
    tracing::info!(%app, %cluster, by = %who.name, "unpinned");
    Ok(ApiJson(serde_json::json!({})))
}

#[derive(serde::Deserialize)]
struct TargetsQuery {
    cluster: String,
    hosts: Option<String>,
}

/// What a deploy to `cluster` (and `hosts`, a regex) would touch.
#[utoipa::path(
    get, path = "/api/v1/targets", tag = "deploys",
    summary = "The hosts a deploy to this cluster and regex would touch; nothing changes",
    params(("cluster" = Cluster, Query, description = "The cluster"),
           ("hosts" = Option<HostSelector>, Query, description = "Regex the whole host name must match; every host when absent")),
    responses((status = 200, description = "The hosts, and those left out with why", body = deploy::Targets))
)]
async fn preview_targets(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<TargetsQuery>,
) -> Result<ApiJson<deploy::Targets>, ApiError> {
    who.require(Role::Viewer)?;
    let cluster = Cluster::parse(q.cluster)?;
    let selector = match q.hosts {
        Some(h) => HostSelector::parse(h)?,
        None => HostSelector::all(),
    };
    Ok(ApiJson(t.targets(&cluster, &selector).await?))
}

#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/retry", tag = "deploys",
    summary = "Deploy the same version again to the hosts that failed or timed out (deployer)",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, description = "The retry, a new deploy", body = Deploy),
              (status = 422, description = "`nothing_to_retry`", body = ErrorBody))
)]
async fn retry_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    let id: DeployId = parse(&id)?;
    note.target(format!("retry of deploy {id}"));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.retry_deploy(id, &who.name).await?))
}

/// Lets a deploy waiting for a human (a manual canary) go on.
#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/continue", tag = "deploys",
    summary = "Let a deploy waiting after its canaries (manual) start its next batch (deployer)",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, description = "The deploy, going on", body = Deploy),
              (status = 409, description = "`not_paused`", body = ErrorBody))
)]
async fn continue_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    let id: DeployId = parse(&id)?;
    note.target(format!("continue of deploy {id}"));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.continue_deploy(id).await?))
}

// ---------------------------------------------------------------- clusters

#[utoipa::path(
    get, path = "/api/v1/clusters", tag = "clusters",
    summary = "Every cluster with deploy controls (protected, frozen)",
    responses((status = 200, description = "The clusters' controls", body = Vec<deploy::ClusterSettings>))
)]
async fn list_clusters(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<deploy::ClusterSettings>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.db().clusters().await?))
}

#[utoipa::path(
    get, path = "/api/v1/clusters/{cluster}", tag = "clusters",
    summary = "A cluster's deploy controls",
    params(("cluster" = Cluster, Path, description = "The cluster")),
    responses((status = 200, description = "Its controls", body = deploy::ClusterSettings),
              (status = 404, description = "`not_found`: no controls set", body = ErrorBody))
)]
async fn show_cluster(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(cluster): ApiPath<String>,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    who.require(Role::Viewer)?;
    let cluster = Cluster::parse(cluster)?;
    t.db()
        .cluster_settings(&cluster)
        .await?
        .map(ApiJson)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "cluster `{cluster}` has no controls set (it is neither protected nor frozen)"
            ))
        })
}

/// Marks a cluster protected (deploys must name it back) or not.
#[utoipa::path(
    put, path = "/api/v1/clusters/{cluster}", tag = "clusters",
    summary = "Protect a cluster (deploys must name it back) or not (admin)",
    params(("cluster" = Cluster, Path, description = "The cluster")),
    request_body = deploy::SetProtected,
    responses((status = 200, description = "Its controls", body = deploy::ClusterSettings))
)]
async fn set_cluster(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(cluster): ApiPath<String>,
    ApiJson(req): ApiJson<deploy::SetProtected>,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    let cluster = Cluster::parse(cluster)?;
    note.target(format!(
        "{} {cluster}",
        if req.protected {
            "protect"
        } else {
            "unprotect"
        }
    ));
    who.require(Role::Admin)?;
    t.db()
        .set_protected(&cluster, req.protected, &who.name)
        .await?;
    tracing::info!(%cluster, protected = req.protected, by = %who.name, "cluster protection set");
    cluster_settings(&t, &cluster).await
}

/// Longest freeze one request sets: a forgotten freeze should not block
/// deploys for years.
const MAX_FREEZE: Duration = Duration::from_secs(90 * 24 * 3600);

/// Freezes a cluster: no deploy starts there until the freeze ends or is
/// lifted (rollbacks still do).
#[utoipa::path(
    post, path = "/api/v1/clusters/{cluster}/freeze", tag = "clusters",
    summary = "Freeze a cluster: no deploys but rollbacks until it ends (admin)",
    params(("cluster" = Cluster, Path, description = "The cluster")),
    request_body = deploy::Freeze,
    responses((status = 200, description = "Its controls", body = deploy::ClusterSettings),
              (status = 400, description = "`invalid_input`", body = ErrorBody))
)]
async fn freeze_cluster(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(cluster): ApiPath<String>,
    ApiJson(req): ApiJson<deploy::Freeze>,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    let cluster = Cluster::parse(cluster)?;
    note.target(format!("freeze {cluster}"));
    who.require(Role::Admin)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::Invalid(
            "`reason` must say why the cluster is frozen (1 to 500 characters)".into(),
        ));
    }
    let now = deploy::Timestamp::now();
    let until = match (req.until, req.duration.as_deref()) {
        (Some(until), None) => until,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d).map_err(|e| {
                ApiError::Invalid(format!(
                    "`duration` `{d}` is not a duration like 2h or 30m: {e}"
                ))
            })?;
            let ms = i64::try_from(d.as_millis().min(MAX_FREEZE.as_millis())).unwrap_or(0);
            deploy::Timestamp(now.0.saturating_add(ms))
        }
        _ => {
            return Err(ApiError::Invalid(
                "give exactly one of `until` (ms since the epoch) and `duration` (like 2h)".into(),
            ));
        }
    };
    if until <= now {
        return Err(ApiError::Invalid(format!(
            "`until` {until} is not in the future"
        )));
    }
    if until.0 - now.0 > MAX_FREEZE.as_millis() as i64 {
        return Err(ApiError::Invalid(format!(
            "a freeze lasts at most {}; freeze again to extend it",
            humantime::format_duration(MAX_FREEZE)
        )));
    }
    t.db()
        .set_freeze(&cluster, Some(until), Some(reason), &who.name)
        .await?;
    tracing::warn!(%cluster, %until, reason, by = %who.name, "cluster frozen");
    cluster_settings(&t, &cluster).await
}

#[utoipa::path(
    delete, path = "/api/v1/clusters/{cluster}/freeze", tag = "clusters",
    summary = "Lift a cluster's freeze; queued deploys start (admin)",
    params(("cluster" = Cluster, Path, description = "The cluster")),
    responses((status = 200, description = "Its controls", body = deploy::ClusterSettings))
)]
async fn thaw_cluster(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(cluster): ApiPath<String>,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    let cluster = Cluster::parse(cluster)?;
    note.target(format!("thaw {cluster}"));
    who.require(Role::Admin)?;
    t.db().set_freeze(&cluster, None, None, &who.name).await?;
    tracing::info!(%cluster, by = %who.name, "cluster thawed");
    t.wake_queues(&cluster).await?;
    cluster_settings(&t, &cluster).await
}

async fn cluster_settings(
    t: &Tracker,
    cluster: &Cluster,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    t.db()
        .cluster_settings(cluster)
        .await?
        .map(ApiJson)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("cluster `{cluster}` vanished")))
}

#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/cancel", tag = "deploys",
    summary = "Stop a deploy: no further host starts (deployer)",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, description = "The cancelled deploy", body = Deploy),
              (status = 409, description = "`deploy_finished`", body = ErrorBody))
)]
async fn cancel_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    let id: DeployId = parse(&id)?;
    note.target(format!("cancel of deploy {id}"));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.cancel_deploy(id).await?))
}

/// Every event the deploy's hosts reported, oldest first: when each host
/// went through each phase.
#[utoipa::path(
    get, path = "/api/v1/deploys/{id}/events", tag = "deploys",
    params(("id" = DeployId, Path, description = "The deploy's id"), PageQuery),
    responses((status = 200, description = "A page of events, oldest first", body = Vec<deploy::HostEventRecord>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
async fn deploy_events(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<deploy::HostEventRecord>, ApiError> {
    who.require(Role::Viewer)?;
    let id: DeployId = parse(&id)?;
    let limit = page::limit(q.limit)?;
    let after = page::id_cursor(q.cursor.as_deref())?;
    t.deploy(id).await?;
    let events = t.db().host_events(id, after, page::rows(limit)).await?;
    // The cursor is the event's row id, which the record does not show.
    let page = Paged::cut(events, limit, |(seq, _)| seq.to_string());
    Ok(page.map(|(_, e)| e))
}

#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/hosts/{host}/events", tag = "agents",
    summary = "A grabber reports a host's progress in a deploy (agent of the cluster)",
    params(("id" = DeployId, Path, description = "The deploy's id"), ("host" = HostName, Path, description = "The host")),
    request_body = HostEvent,
    responses((status = 200, description = "The host's row", body = DeployHost))
)]
async fn host_event(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath((id, host)): ApiPath<(String, String)>,
    ApiJson(ev): ApiJson<HostEvent>,
) -> Result<ApiJson<DeployHost>, ApiError> {
    let id: DeployId = parse(&id)?;
    let host: HostName = parse(&host)?;
    who.require_host(&ev.cluster, &host)?;
    Ok(ApiJson(t.host_event(id, &host, &bounded(ev)).await?))
}

/// The most of a host event's `message` kept (its start).
const MAX_EVENT_MESSAGE: usize = 16 << 10;
/// The most of a host event's `log_tail` kept (its end): what a grabber
/// sends at most.
const MAX_EVENT_LOG_TAIL: usize = 1 << 20;

/// A host event with its free text cut to the caps above, so an agent
/// cannot fill the database through it.
fn bounded(mut ev: HostEvent) -> HostEvent {
    if let Some(m) = &mut ev.message
        && m.len() > MAX_EVENT_MESSAGE
    {
        let mut at = MAX_EVENT_MESSAGE;
        while !m.is_char_boundary(at) {
            at -= 1;
        }
        let dropped = m.len() - at;
        m.truncate(at);
        m.push_str(&format!("… ({dropped} bytes dropped)"));
    }
    if let Some(l) = &mut ev.log_tail
        && l.len() > MAX_EVENT_LOG_TAIL
    {
        let mut at = l.len() - MAX_EVENT_LOG_TAIL;
        while !l.is_char_boundary(at) {
            at += 1;
        }
        *l = format!("({at} bytes dropped) …{}", &l[at..]);
    }
    ev
}

fn sse_event<T: serde::Serialize>(value: &T) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(value).unwrap_or_default()))
}

/// Resolves when the server stops, to end long-lived streams.
fn t_stop(t: &Tracker) -> tokio_util::sync::WaitForCancellationFutureOwned {
    t.stopping().clone().cancelled_owned()
}

/// The snapshot of a deploy as events: one per host, then its status.
fn snapshot(d: &Deploy) -> Vec<DeployEvent> {
    let mut out: Vec<DeployEvent> = d
        .hosts
        .iter()
        .map(|h| DeployEvent::Host {
            deploy_id: d.id,
            host: h.clone(),
        })
        .collect();
    out.push(DeployEvent::Status {
        deploy_id: d.id,
        status: d.status,
        version: d.version.clone(),
        error: d.error.clone(),
    });
    out
}

/// Live events of one deploy: a snapshot, then changes, ending after the
/// terminal status. Subscribes before reading the snapshot, so nothing
/// between the two is lost.
#[utoipa::path(
    get, path = "/api/v1/deploys/{id}/stream", tag = "deploys",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, content_type = "text/event-stream", body = String,
               description = "Server-sent events, each a JSON `DeployEvent` (`kind`: `host` or `status`)"))
)]
async fn deploy_stream(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    who.require(Role::Viewer)?;
    let id: DeployId = parse(&id)?;
    let rx = t.bus().events();
    let first_tracker = t.clone();
    let first = t.deploy(id).await?;
    let done = first.status.is_terminal();
    struct S {
        rx: tokio::sync::broadcast::Receiver<Live>,
        t: Tracker,
        done: bool,
        pending: std::collections::VecDeque<DeployEvent>,
        /// The last row sent per host: re-read snapshots repeat rows the
        /// watcher already has, and those are not sent again.
        sent: std::collections::HashMap<deploy::HostName, DeployHost>,
    }
    let live = stream::unfold(
        S {
            rx,
            t,
            done,
            pending: snapshot(&first).into(),
            sent: Default::default(),
        },
        move |mut s| async move {
            loop {
                if let Some(ev) = s.pending.pop_front() {
                    if let DeployEvent::Host { host, .. } = &ev {
                        if s.sent.get(&host.host) == Some(host) {
                            continue;
                        }
                        s.sent.insert(host.host.clone(), host.clone());
                    }
                    return Some((ev, s));
                }
                if s.done {
                    return None;
                }
                match s.rx.recv().await {
                    Ok(Live::Event(ev)) => match &ev {
                        DeployEvent::Host { deploy_id, .. } if *deploy_id == id => {
                            s.pending.push_back(ev);
                        }
                        DeployEvent::Status {
                            deploy_id, status, ..
                        } if *deploy_id == id => {
                            if !status.is_terminal() {
                                return Some((ev, s));
                            }
                            // Hosts report concurrently: the last host's event
                            // may be published after the status it completed.
                            // End with the record's final rows, then the status.
                            s.done = true;
                            let d = s.t.deploy(id).await.ok()?;
                            s.pending.extend(snapshot(&d));
                        }
                        _ => {}
                    },
                    Ok(Live::Resync) | Err(RecvError::Lagged(_)) => {
                        // Fell behind: send a fresh snapshot instead.
                        let d = s.t.deploy(id).await.ok()?;
                        s.done = d.status.is_terminal();
                        s.pending.extend(snapshot(&d));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let events = live
        .map(|ev| sse_event(&ev))
        .take_until(t_stop(&first_tracker))
        .take_until(first_tracker.until_revoked(&who));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// ---------------------------------------------------------------- webhooks

/// VCS webhooks authenticate by their signature, with the app's own secret
/// for the provider, not by a token.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{provider}/{app}", tag = "webhooks",
    summary = "A push from a VCS for one app, signed with the app's secret for that provider",
    params(("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`"),
           ("app" = AppName, Path, description = "The app the delivery is for")),
    request_body(content = serde_json::Value, description = "The provider's push event, signed with the app's webhook secret for the provider (up to 25 MB)"),
    security(()),
    responses((status = 200, description = "Handled (`pong`)", body = WebhookOutcome),
              (status = 202, description = "Accepted: builds (and deploys) started, the event ignored, or a `duplicate` delivery (nothing done)", body = WebhookOutcome),
              (status = 401, description = "`unauthorized`: not signed with the app's secret for the provider", body = ErrorBody),
              (status = 404, description = "`not_found`: no such provider, or the app has no secret for it", body = ErrorBody))
)]
async fn webhook(
    State(t): State<Tracker>,
    note: Note,
    ApiPath((provider, app)): ApiPath<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<WebhookOutcome>), ApiError> {
    let parsed = webhook_provider(&provider)?;
    // The provider it claims to be; the status says whether it proved it.
    note.actor(format!("webhook:{parsed}"), "webhook");
    let app: AppName = parse(&app)?;
    note.app(&app);
    let (taken, out) = crate::webhooks::handle(&t, parsed, &app, &headers, &body).await?;
    note.target(started(&out));
    let status = match taken {
        crate::webhooks::Taken::Answered => StatusCode::OK,
        crate::webhooks::Taken::Accepted => StatusCode::ACCEPTED,
    };
    Ok((status, ApiJson(out)))
}

impl crate::webhooks::Headers for axum::http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

fn webhook_provider(provider: &str) -> Result<deploy::WebhookProvider, ApiError> {
    provider.parse().map_err(|_| {
        ApiError::NotFound(format!(
            "unknown webhook provider `{provider}`: use github, gitlab, gitea or forgejo"
        ))
    })
}

/// The URL of one shared webhook secret, before secrets were per app.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{provider}", tag = "webhooks",
    summary = "Gone: webhooks are per app (`/api/v1/webhooks/{provider}/{app}`)",
    params(("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`")),
    security(()),
    responses((status = 404, description = "`not_found`, saying where webhooks go now", body = ErrorBody))
)]
async fn webhook_without_app(
    note: Note,
    ApiPath(provider): ApiPath<String>,
) -> Result<ApiJson<WebhookOutcome>, ApiError> {
    let parsed = webhook_provider(&provider)?;
    note.actor(format!("webhook:{parsed}"), "webhook");
    Err(ApiError::NotFound(format!(
        "webhooks are per app now: send them to /api/v1/webhooks/{parsed}/APP, signed with \
         the app's own secret (`deploy webhook-secret APP --provider {parsed}` makes it and prints \
         the URL); the shared `webhook_secret_file` is no longer used"
    )))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/webhook-secrets", tag = "webhooks",
    summary = "The providers the app takes webhooks from, and their URLs; never the secrets (admin)",
    params(("app" = AppName, Path, description = "The app's name")),
    responses((status = 200, description = "One entry per provider with a secret", body = Vec<WebhookSecretInfo>))
)]
async fn list_webhook_secrets(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
) -> Result<ApiJson<Vec<WebhookSecretInfo>>, ApiError> {
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    Ok(ApiJson(crate::webhooks::secrets_info(&t, &app).await?))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/webhook-secrets/{provider}", tag = "webhooks",
    summary = "Make the app's webhook secret for a provider, or rotate it (the old one keeps working for a grace); the answer holds its only copy (admin)",
    params(("app" = AppName, Path, description = "The app's name"),
           ("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`")),
    request_body(content = Option<SetWebhookSecret>, description = "Optional: no body makes a first secret"),
    responses((status = 201, description = "The secret, shown once, and the URL to configure", body = CreatedWebhookSecret),
              (status = 409, description = "`conflict`: the app has a secret for the provider and `rotate` is not set", body = ErrorBody))
)]
async fn set_webhook_secret(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath((app, provider)): ApiPath<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<CreatedWebhookSecret>), ApiError> {
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    let provider = webhook_provider(&provider)?;
    note.app(&app);
    let req: SetWebhookSecret = if body.iter().all(u8::is_ascii_whitespace) {
        SetWebhookSecret::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))?
    };
    let created = crate::webhooks::set_secret(&t, &app, provider, &req).await?;
    // Never the secret.
    let what = match created.previous_valid_until {
        Some(until) => format!("rotated; the old one is accepted until {until}"),
        None => "made".to_string(),
    };
    note.target(format!("{provider} webhook secret of app {app}: {what}"));
    tracing::info!(%app, %provider, by = %who.name, rotated = created.previous_valid_until.is_some(), "webhook secret set");
    Ok((StatusCode::CREATED, ApiJson(created)))
}

#[utoipa::path(
    delete, path = "/api/v1/apps/{app}/webhook-secrets/{provider}", tag = "webhooks",
    summary = "Stop taking the app's webhooks from a provider: its secrets stop working at once (admin)",
    params(("app" = AppName, Path, description = "The app's name"),
           ("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`")),
    responses((status = 200, description = "Deleted", body = Empty))
)]
async fn delete_webhook_secret(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath((app, provider)): ApiPath<(String, String)>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    let provider = webhook_provider(&provider)?;
    note.app(&app);
    note.target(format!("{provider} webhook secret of app {app}: deleted"));
    crate::webhooks::delete_secret(&t, &app, provider).await?;
    tracing::info!(%app, %provider, by = %who.name, "webhook secret deleted");
    Ok(ApiJson(serde_json::json!({})))
}

/// What a webhook or trigger started, for the audit log.
fn started(out: &WebhookOutcome) -> String {
    let ids = |what: &str, ids: Vec<String>| {
        (!ids.is_empty()).then(|| format!("{what} {}", ids.join(", ")))
    };
    let parts: Vec<String> = [
        ids("builds", out.builds.iter().map(|b| b.to_string()).collect()),
        ids(
            "deploys",
            out.deploys.iter().map(|d| d.to_string()).collect(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        out.result.clone()
    } else {
        format!("{}: {}", out.result, parts.join("; "))
    }
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/trigger", tag = "webhooks",
    summary = "A new secret build-trigger URL for the app; any earlier one stops working (admin)",
    params(("app" = AppName, Path, description = "The app's name")),
    responses((status = 201, description = "The URL, shown once", body = TriggerUrl))
)]
async fn new_trigger(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
) -> Result<(StatusCode, ApiJson<TriggerUrl>), ApiError> {
    // Never the URL: it is the credential.
    note.target(format!("new build-trigger URL of app {app}"));
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    let url = crate::webhooks::new_trigger_url(&t, &app).await?;
    tracing::info!(app = %app, by = %who.name, "build-trigger URL made");
    Ok((StatusCode::CREATED, ApiJson(TriggerUrl { url })))
}

/// The secret in the URL is the credential.
#[utoipa::path(
    post, path = "/api/v1/trigger/{secret}", tag = "webhooks",
    summary = "Build the app's branch, or the body's `git_ref` (the URL is the credential)",
    params(("secret" = String, Path, description = "The secret of a build-trigger URL")),
    request_body(content = Option<RequestBuild>, description = "Optional"),
    security(()),
    responses((status = 202, description = "Started", body = WebhookOutcome))
)]
async fn trigger(
    State(t): State<Tracker>,
    note: Note,
    ApiPath(secret): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<WebhookOutcome>), ApiError> {
    note.actor("build-trigger", "trigger");
    let req: RequestBuild = if body.iter().all(u8::is_ascii_whitespace) {
        RequestBuild::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))?
    };
    let (app, out) = crate::webhooks::trigger(&t, &secret, req.git_ref).await?;
    note.app(&app);
    note.target(started(&out));
    Ok((StatusCode::ACCEPTED, ApiJson(out)))
}

// ---------------------------------------------------------------- tokens

#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    summary = "Make an API token; the answer holds its only copy (admin)",
    request_body = CreateToken,
    responses((status = 201, description = "The token", body = CreatedToken),
              (status = 409, description = "`conflict`: the name is taken", body = ErrorBody))
)]
async fn create_token(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, ApiJson<CreatedToken>), ApiError> {
    // The name and role, never the token the answer carries.
    let cluster = req
        .cluster
        .as_ref()
        .map(|c| format!(" of cluster {c}"))
        .unwrap_or_default();
    let host = req
        .host
        .as_ref()
        .map(|h| format!(", host {h}"))
        .unwrap_or_default();
    note.target(format!("token {} ({}{cluster}{host})", req.name, req.role));
    who.require(Role::Admin)?;
    let token = t.create_token_for(&req).await?;
    tracing::info!(token = %req.name, role = %req.role, by = %who.name, "token created");
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedToken {
            name: req.name,
            token,
        }),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    summary = "Tokens by name, never their secret (admin, paged)",
    params(PageQuery),
    responses((status = 200, description = "A page of tokens", body = Vec<TokenInfo>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
async fn list_tokens(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<TokenInfo>, ApiError> {
    who.require(Role::Admin)?;
    let limit = page::limit(q.limit)?;
    let after = page::text_cursor(q.cursor.as_deref())?;
    let tokens = t.db().tokens(after, page::rows(limit)).await?;
    Ok(Paged::cut(tokens, limit, |t| t.name.clone()))
}

#[utoipa::path(
    delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    summary = "Revoke a token; its event streams end (admin)",
    params(("name" = String, Path, description = "The token's name")),
    responses((status = 204, description = "Revoked"))
)]
async fn delete_token(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    who.require(Role::Admin)?;
    // No token name holds a control character (and PostgreSQL's text
    // cannot hold NUL): such a name is no token, not a query.
    if !name.chars().any(char::is_control) && t.revoke_token(&name).await? {
        tracing::info!(token = %name, by = %who.name, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no token named `{name}`")))
    }
}

// ---------------------------------------------------------------- audit

/// The audit log, for deployers and admins: it shows who holds which token
/// and acts from where, more than the read-only viewers need.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    params(deploy::AuditQuery),
    responses((status = 200, description = "A page of entries, newest first", body = Vec<deploy::AuditEntry>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
async fn list_audit(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<deploy::AuditQuery>,
) -> Result<Paged<deploy::AuditEntry>, ApiError> {
    who.require(Role::Deployer)?;
    let limit = page::limit(q.limit)?;
    // `before` is the cursor older clients send; the same key.
    let before = match (page::id_cursor(q.cursor.as_deref())?, q.before) {
        (Some(c), _) => Some(c),
        (None, Some(b)) if b > 0 => Some(b),
        (None, Some(b)) => {
            return Err(ApiError::Invalid(format!(
                "`before` must be a positive entry id, not {b}"
            )));
        }
        (None, None) => None,
    };
    let actor = page::text_cursor(q.actor.as_deref())
        .map_err(|_| ApiError::Invalid("`actor` must be a token name".into()))?;
    let entries = t
        .db()
        .audit(page::rows(limit), before, actor, q.app.as_ref())
        .await?;
    Ok(Paged::cut(entries, limit, |e| e.id.to_string()))
}

// ---------------------------------------------------------------- hosts

#[utoipa::path(
    post, path = "/api/v1/hosts/heartbeat", tag = "agents",
    summary = "A grabber registers its host and says it is alive (agent of the cluster)",
    request_body = Heartbeat,
    responses((status = 200, description = "The host", body = Host))
)]
async fn heartbeat(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<ApiJson<Host>, ApiError> {
    who.require_host(&hb.cluster, &hb.host)?;
    Ok(ApiJson(t.db().upsert_host(&hb).await?))
}

#[utoipa::path(
    get, path = "/api/v1/hosts", tag = "hosts",
    summary = "Registered hosts by cluster and name, with what they run (paged)",
    params(PageQuery),
    responses((status = 200, description = "A page of hosts", body = Vec<Host>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
async fn list_hosts(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<Host>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page::limit(q.limit)?;
    let after = page::pair_cursor::<Cluster, HostName>(q.cursor.as_deref())?;
    let hosts = t.db().hosts_page(after.as_ref(), page::rows(limit)).await?;
    Ok(Paged::cut(hosts, limit, |h| {
        format!("{}/{}", h.cluster, h.name)
    }))
}

#[utoipa::path(
    get, path = "/api/v1/hosts/{cluster}/{host}/desired", tag = "agents",
    summary = "What a host should run (agent of the cluster)",
    params(("cluster" = Cluster, Path, description = "The cluster"), ("host" = HostName, Path, description = "The host")),
    responses((status = 200, description = "The desired state", body = DesiredState))
)]
async fn desired(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath((cluster, host)): ApiPath<(String, String)>,
) -> Result<ApiJson<DesiredState>, ApiError> {
    let cluster: Cluster = parse(&cluster)?;
    let host: HostName = parse(&host)?;
    who.require_host(&cluster, &host)?;
    let apps = t.desired(&cluster, &host).await?;
    Ok(ApiJson(DesiredState {
        cluster,
        host,
        apps,
    }))
}

/// The cluster's bus as server-sent events: `Sync` first (so a
/// reconnecting grabber re-reads its desired state), then every message; a
/// subscriber that falls behind gets a `Sync` instead of what it missed.
#[utoipa::path(
    get, path = "/api/v1/bus/{cluster}", tag = "agents",
    params(("cluster" = Cluster, Path, description = "The cluster")),
    responses((status = 200, content_type = "text/event-stream", body = String,
               description = "Server-sent events, each a JSON bus message (`kind`: `sync` or `deploy`); `sync` first"))
)]
async fn bus_stream(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(cluster): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let cluster: Cluster = parse(&cluster)?;
    who.require_agent(&cluster)?;
    let rx = t.bus().subscribe();
    let live = stream::unfold((rx, cluster), |(mut rx, cluster)| async move {
        loop {
            match rx.recv().await {
                Ok((Some(c), msg)) if c == cluster => return Some((msg, (rx, cluster))),
                Ok((None, msg)) => return Some((msg, (rx, cluster))),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Some((BusMessage::Sync, (rx, cluster))),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stop = t_stop(&t);
    let events = stream::once(async { BusMessage::Sync })
        .chain(live)
        .map(|m| sse_event(&m))
        .take_until(stop)
        .take_until(t.until_revoked(&who));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// ---------------------------------------------------------------- meta

/// Liveness: answers while the server runs.
#[utoipa::path(
    get, path = "/healthz", tag = "meta",
    security(()),
    responses((status = 200, content_type = "text/plain", body = String, description = "`ok`"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// This API's OpenAPI 3.1 document, generated from the code that serves it.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    security(()),
    responses((status = 200, description = "The document", body = serde_json::Value))
)]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::json(),
    )
        .into_response()
}

// ---------------------------------------------------------------- artifacts

#[derive(Deserialize)]
struct Signed {
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
async fn artifact(
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
