//! `/api/v1/deploys` and `/api/v1/targets`: starting deploys, reading
//! them, and steering a running one (cancel, retry, continue).

use axum::extract::State;
use axum::http::StatusCode;
use deploy::ErrorBody;
use deploy::{Cluster, CreateDeploy, Deploy, DeployId, HostSelector};

use crate::db::DeployFilter;
use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, parse};
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

#[utoipa::path(
    post, path = "/api/v1/deploys", tag = "deploys",
    summary = "Deploy an app at a version or git ref to a cluster's hosts (deployer)",
    request_body = CreateDeploy,
    responses((status = 201, description = "Started (or waiting for its build)", body = Deploy),
              (status = 409, description = "`deploy_in_progress`, `pinned`", body = ErrorBody),
              (status = 422, description = "`no_matching_hosts`, `bad_ref`, `build_not_ready`", body = ErrorBody))
)]
pub(crate) async fn create_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<CreateDeploy>,
) -> Result<(StatusCode, ApiJson<Deploy>), ApiError> {
    // What was asked for, so a refusal says it too.
    let what = req
        .source()
        .map_or_else(|_| "?".to_string(), |s| s.to_string());
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
    summary = "Deploys, newest first, with their hosts (paged), of one app or cluster, or in some statuses, when asked; without logs (hosts' `log_tail` is null, the release phase's `log` empty: GET /api/v1/deploys/{id} has them)",
    params(deploy::DeployQuery),
    responses((status = 200, description = "A page of deploys", body = Vec<Deploy>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn list_deploys(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<deploy::DeployQuery>,
) -> Result<Paged<Deploy>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page::limit(q.limit)?;
    let before = page::id_cursor(q.cursor.as_deref())?;
    let deploys = t
        .queries()
        .deploys(
            before,
            page::rows(limit),
            &DeployFilter {
                app: q.app.as_ref(),
                cluster: q.cluster.as_ref(),
                statuses: q.status.as_ref().map_or(&[], |s| s.as_slice()),
            },
        )
        .await?;
    Ok(Paged::cut(deploys, limit, |d| d.id.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/deploys/{id}", tag = "deploys", summary = "One deploy, one row per host",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, description = "The deploy", body = Deploy))
)]
pub(crate) async fn show_deploy(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    who.require(Role::Viewer)?;
    let id: DeployId = parse(&id)?;
    Ok(ApiJson(t.deploy(id).await?))
}

#[derive(serde::Deserialize)]
pub(crate) struct TargetsQuery {
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
pub(crate) async fn preview_targets(
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
pub(crate) async fn retry_deploy(
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
pub(crate) async fn continue_deploy(
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

#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/cancel", tag = "deploys",
    summary = "Stop a deploy: no further host starts (deployer)",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, description = "The cancelled deploy", body = Deploy),
              (status = 409, description = "`deploy_finished`", body = ErrorBody))
)]
pub(crate) async fn cancel_deploy(
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
