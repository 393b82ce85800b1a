//! App config and operating an app: `/api/v1/apps/{app}/config` (set,
//! unset, show: secrets masked), `/api/v1/apps/{app}/{restart,stop,start}`
//! (deploys of the release the cluster runs), and the host agents' own
//! `/api/v1/hosts/{cluster}/{host}/config/{app}/{version}` (secrets open,
//! for the agent token of a host the app was deployed to, bound to that
//! host or to its cluster; never a person's token, not even an admin's).
//!
//! The audit log gets the keys a change touched, never a value.

use axum::extract::State;
use deploy::{
    AppConfig, AppName, Cluster, ConfigChange, ConfigQuery, Deploy, DeployAction, ErrorBody,
    HostConfig, HostName, OperateApp, SetConfig, UnsetConfig,
};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, parse};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

fn scope(cluster: Option<&Cluster>) -> String {
    match cluster {
        Some(c) => format!(" on {c}"),
        None => " (app-wide)".into(),
    }
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/config", tag = "config",
    summary = "The app's config variables at its newest version; secrets masked",
    params(("app" = AppName, Path, description = "The app's name"), ConfigQuery),
    responses((status = 200, description = "The config", body = AppConfig),
              (status = 404, description = "No such app", body = ErrorBody))
)]
pub(crate) async fn show_config(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConfigQuery>,
) -> Result<ApiJson<AppConfig>, ApiError> {
    who.require(Role::Viewer)?;
    let app = AppName::parse(app)?;
    Ok(ApiJson(t.app_config(&app, q.cluster.as_ref()).await?))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/config", tag = "config",
    summary = "Set config variables or secrets, app-wide or for a cluster: a new config version; `apply` restarts the app with it (deployer)",
    params(("app" = AppName, Path, description = "The app's name")), request_body = SetConfig,
    responses((status = 200, description = "The new version, and the restarts when applied", body = ConfigChange),
              (status = 400, description = "A bad key or value", body = ErrorBody))
)]
pub(crate) async fn set_config(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(req): ApiJson<SetConfig>,
) -> Result<ApiJson<ConfigChange>, ApiError> {
    let app = AppName::parse(app)?;
    note.app(&app);
    let keys: Vec<&str> = req.vars.keys().map(String::as_str).collect();
    note.target(format!(
        "env set{} {}{}",
        if req.secret { " --secret" } else { "" },
        keys.join(" "),
        scope(req.cluster.as_ref())
    ));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.set_config(&app, &req, &who.name).await?))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/config/unset", tag = "config",
    summary = "Remove config variables: a new config version; `apply` restarts the app with it (deployer)",
    params(("app" = AppName, Path, description = "The app's name")), request_body = UnsetConfig,
    responses((status = 200, description = "The new version, and the restarts when applied", body = ConfigChange),
              (status = 404, description = "A key that is not set", body = ErrorBody))
)]
pub(crate) async fn unset_config(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(req): ApiJson<UnsetConfig>,
) -> Result<ApiJson<ConfigChange>, ApiError> {
    let app = AppName::parse(app)?;
    note.app(&app);
    note.target(format!(
        "env unset {}{}",
        req.keys.join(" "),
        scope(req.cluster.as_ref())
    ));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.unset_config(&app, &req, &who.name).await?))
}

async fn operate(
    t: Tracker,
    who: Principal,
    note: Note,
    app: String,
    action: DeployAction,
    req: OperateApp,
) -> Result<ApiJson<Deploy>, ApiError> {
    let app = AppName::parse(app)?;
    note.app(&app);
    note.target(format!("{action} on {}", req.cluster));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.operate(&app, action, &req, &who.name).await?))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/restart", tag = "config",
    summary = "Restart the app on a cluster's hosts (rolling with `batch`, health-checked), as a deploy (deployer)",
    params(("app" = AppName, Path, description = "The app's name")), request_body = OperateApp,
    responses((status = 200, description = "The restart deploy", body = Deploy),
              (status = 409, description = "`deploy_in_progress`", body = ErrorBody),
              (status = 422, description = "`no_matching_hosts`", body = ErrorBody))
)]
pub(crate) async fn restart_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(req): ApiJson<OperateApp>,
) -> Result<ApiJson<Deploy>, ApiError> {
    operate(t, who, note, app, DeployAction::Restart, req).await
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/stop", tag = "config",
    summary = "Stop the app on a cluster's hosts and keep it stopped, as a deploy (deployer)",
    params(("app" = AppName, Path, description = "The app's name")), request_body = OperateApp,
    responses((status = 200, description = "The stop deploy", body = Deploy),
              (status = 409, description = "`deploy_in_progress`", body = ErrorBody),
              (status = 422, description = "`no_matching_hosts`", body = ErrorBody))
)]
pub(crate) async fn stop_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(req): ApiJson<OperateApp>,
) -> Result<ApiJson<Deploy>, ApiError> {
    operate(t, who, note, app, DeployAction::Stop, req).await
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/start", tag = "config",
    summary = "Start a stopped app on a cluster's hosts, health-checked, as a deploy (deployer)",
    params(("app" = AppName, Path, description = "The app's name")), request_body = OperateApp,
    responses((status = 200, description = "The start deploy", body = Deploy),
              (status = 409, description = "`deploy_in_progress`", body = ErrorBody),
              (status = 422, description = "`no_matching_hosts`", body = ErrorBody))
)]
pub(crate) async fn start_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(req): ApiJson<OperateApp>,
) -> Result<ApiJson<Deploy>, ApiError> {
    operate(t, who, note, app, DeployAction::Start, req).await
}

#[utoipa::path(
    get, path = "/api/v1/hosts/{cluster}/{host}/config/{app}/{version}", tag = "agents",
    summary = "The config an app runs with on a host, secrets in the clear (agent tokens of that host or its cluster only)",
    params(("cluster" = Cluster, Path, description = "The cluster"), ("host" = HostName, Path, description = "The host"),
           ("app" = AppName, Path, description = "The app's name"), ("version" = u64, Path, description = "The config version")),
    responses((status = 200, description = "The variables", body = HostConfig),
              (status = 403, description = "Not that host's agent", body = ErrorBody),
              (status = 404, description = "No such version, or the app was never deployed to the host", body = ErrorBody))
)]
pub(crate) async fn host_config(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath((cluster, host, app, version)): ApiPath<(String, String, String, u64)>,
) -> Result<ApiJson<HostConfig>, ApiError> {
    let cluster: Cluster = parse(&cluster)?;
    let host: HostName = parse(&host)?;
    let app = AppName::parse(app)?;
    // The host's agent (a token bound to it, or the cluster's): not even
    // an admin reads secrets back.
    if who.role != Role::Agent {
        return Err(ApiError::Forbidden(format!(
            "token `{}` is not an agent token: only the grabber of a host running `{app}` reads \
             the config it runs with (secrets are shown masked: GET /api/v1/apps/{app}/config)",
            who.name
        )));
    }
    who.require_host(&cluster, &host)?;
    Ok(ApiJson(
        t.host_config(&cluster, &host, &app, version).await?,
    ))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/logs", tag = "config",
    summary = "A piece of the app's log on one host, relayed by its grabber (deployer; audited); follow by asking again from `next_offset`",
    params(("app" = AppName, Path, description = "The app's name")), request_body = deploy::LogRequest,
    responses((status = 200, description = "The piece of log", body = deploy::AppLog),
              (status = 404, description = "No such app or host, or no log there", body = ErrorBody),
              (status = 408, description = "The host did not answer in time", body = ErrorBody))
)]
pub(crate) async fn read_log(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(req): ApiJson<deploy::LogRequest>,
) -> Result<ApiJson<deploy::AppLog>, ApiError> {
    let app = AppName::parse(app)?;
    note.app(&app);
    note.target(format!("logs on {}", req.host));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.read_log(&app, &req, &who.name).await?))
}

#[utoipa::path(
    post, path = "/api/v1/log-requests/{id}", tag = "agents",
    summary = "A grabber answers a log request asked of its host (agent of the host or its cluster)",
    params(("id" = i64, Path, description = "The log request's id")), request_body = deploy::LogAnswer,
    responses((status = 200, description = "Taken", body = crate::http::openapi::Empty),
              (status = 404, description = "No such request", body = ErrorBody))
)]
pub(crate) async fn answer_log(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(a): ApiJson<deploy::LogAnswer>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    let (cluster, host) = t.log_request_host(id).await?;
    if who.role != Role::Agent {
        return Err(ApiError::Forbidden(format!(
            "token `{}` is not an agent token: only the grabber of `{host}` answers a log request",
            who.name
        )));
    }
    who.require_host(&cluster, &host)?;
    t.answer_log(id, &host, &a).await?;
    Ok(ApiJson(serde_json::json!({})))
}
