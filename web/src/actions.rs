//! The dashboard's buttons: every state-changing form posts here, carries
//! the session's anti-forgery value (see `visitor.rs`), and becomes one
//! call to AppTracker's API with the visitor's session, which checks the
//! visitor's rights itself. Success redirects (303) to what the action
//! made, usually a deploy's page; a refusal shows AppTracker's reason with
//! its status.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use deploy::{AppName, Client, Cluster, Deploy, DeployId};
use serde::Deserialize;

use crate::AppState;
use crate::error::PageError;
use crate::signin::request_credential;
use crate::visitor::csrf_ok;

/// The action routes, all `POST`.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/deploys/{id}/retry", post(retry))
        .route("/deploys/{id}/cancel", post(cancel))
        .route("/deploys/{id}/continue", post(continue_deploy))
        .route("/deploys/{id}/rollback", post(rollback_deploy))
        .route("/apps/{app}/rollback", post(rollback_app))
        .route("/drift/sync", post(sync))
}

/// A form with nothing but its anti-forgery value.
#[derive(Debug, Deserialize)]
pub(crate) struct Plain {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// The API client for a state-changing form: refused unless the form
/// carries this session's anti-forgery value.
pub(crate) fn acting(
    headers: &HeaderMap,
    csrf: &str,
    state: &AppState,
) -> Result<Client, PageError> {
    let Some(credential) = request_credential(headers) else {
        return Err(PageError::SignIn);
    };
    if !csrf_ok(headers, csrf) {
        return Err(PageError::Forgery(
            "this form did not come from a page of this dashboard (its anti-forgery value is missing or stale): reload the page and try again".into(),
        ));
    }
    Ok(state.api.clone().with_token(credential))
}

/// The page of the deploy an action made.
pub(crate) fn to_deploy(d: &Deploy) -> Response {
    Redirect::to(&format!("/deploys/{}", d.id)).into_response()
}

/// A deploy id from the path: a malformed one names no deploy.
fn deploy_id(raw: &str) -> Result<DeployId, PageError> {
    raw.parse()
        .map_err(|_| PageError::NotFound(format!("there is no deploy {raw:?}")))
}

/// A required form field parsed into its type, or an error naming it.
pub(crate) fn field<T>(
    name: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, PageError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(PageError::BadInput(format!("{name}: required")));
    }
    parse(raw).map_err(|e| PageError::BadInput(format!("{name} {raw:?}: {e}")))
}

/// An optional form field: empty means absent.
pub(crate) fn optional<T>(
    name: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, PageError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    field(name, raw, parse).map(Some)
}

pub(crate) fn cluster(raw: &str) -> Result<Cluster, String> {
    Cluster::parse(raw).map_err(|e| e.to_string())
}

pub(crate) fn app_name(raw: &str) -> Result<AppName, String> {
    AppName::parse(raw).map_err(|e| e.to_string())
}

/// Runs an action: checks the form, calls the API, redirects or shows why
/// not.
async fn run<F, Fut>(state: &AppState, headers: &HeaderMap, csrf: &str, call: F) -> Response
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Response, PageError>>,
{
    let outcome = match acting(headers, csrf, state) {
        Ok(api) => call(api).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(resp) => resp,
        Err(e) => state.error_page(e),
    }
}

/// What a button on a deploy's page asks of the deploy.
#[derive(Debug, Clone, Copy)]
enum DeployAct {
    /// The failed hosts again, as a new deploy.
    Retry,
    Cancel,
    /// Past a manual canary.
    Continue,
}

/// `POST /deploys/{id}/{retry,cancel,continue}`: one call, then the page of
/// the deploy it answers with (a retry's is a new one).
async fn act_on_deploy(
    state: &AppState,
    raw_id: String,
    headers: &HeaderMap,
    csrf: &str,
    act: DeployAct,
) -> Response {
    run(state, headers, csrf, |api| async move {
        let id = deploy_id(&raw_id)?;
        let (answer, doing) = match act {
            DeployAct::Retry => (api.retry_deploy(id).await, "retrying the deploy"),
            DeployAct::Cancel => (api.cancel_deploy(id).await, "cancelling the deploy"),
            DeployAct::Continue => (api.continue_deploy(id).await, "continuing the deploy"),
        };
        let d = answer.map_err(|e| PageError::upstream(doing, e))?;
        tracing::info!(action = ?act, answer_deploy_id = %d.id, "deploy action from the dashboard");
        Ok(to_deploy(&d))
    })
    .await
}

#[tracing::instrument(skip_all, fields(deploy_id = %raw_id))]
async fn retry(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Plain>,
) -> Response {
    act_on_deploy(&state, raw_id, &headers, &form.csrf, DeployAct::Retry).await
}

#[tracing::instrument(skip_all, fields(deploy_id = %raw_id))]
async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Plain>,
) -> Response {
    act_on_deploy(&state, raw_id, &headers, &form.csrf, DeployAct::Cancel).await
}

#[tracing::instrument(skip_all, fields(deploy_id = %raw_id))]
async fn continue_deploy(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Plain>,
) -> Response {
    act_on_deploy(&state, raw_id, &headers, &form.csrf, DeployAct::Continue).await
}

/// A rollback form: the cluster's name typed back for a protected one.
#[derive(Debug, Deserialize)]
pub(crate) struct RollbackForm {
    #[serde(default)]
    pub(crate) csrf: String,
    #[serde(default)]
    pub(crate) cluster: String,
    #[serde(default)]
    pub(crate) confirm: String,
}

/// `POST /deploys/{id}/rollback`: the release before this deploy's app on
/// its cluster, back.
#[tracing::instrument(skip_all, fields(deploy_id = %raw_id))]
async fn rollback_deploy(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<RollbackForm>,
) -> Response {
    run(&state, &headers, &form.csrf, |api| async move {
        let id = deploy_id(&raw_id)?;
        let d = api.deploy(id).await.map_err(|e| PageError::upstream("fetching the deploy", e))?;
        let confirm = optional("confirm", &form.confirm, cluster)?;
        let back = api
            .rollback_confirmed(&d.app, &d.cluster, confirm.as_ref())
            .await
            .map_err(|e| PageError::upstream("rolling back", e))?;
        tracing::info!(app = %d.app, cluster = %d.cluster, new_deploy_id = %back.id, "rollback started from the dashboard");
        Ok(to_deploy(&back))
    })
    .await
}

/// `POST /apps/{app}/rollback` (field `cluster`).
#[tracing::instrument(skip_all, fields(app = %raw_app))]
async fn rollback_app(
    State(state): State<Arc<AppState>>,
    Path(raw_app): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<RollbackForm>,
) -> Response {
    run(&state, &headers, &form.csrf, |api| async move {
        let app = AppName::parse(&raw_app)
            .map_err(|_| PageError::NotFound(format!("there is no app {raw_app:?}")))?;
        let on = field("cluster", &form.cluster, cluster)?;
        let confirm = optional("confirm", &form.confirm, cluster)?;
        let back = api
            .rollback_confirmed(&app, &on, confirm.as_ref())
            .await
            .map_err(|e| PageError::upstream("rolling back", e))?;
        tracing::info!(%app, cluster = %on, new_deploy_id = %back.id, "rollback started from the dashboard");
        Ok(to_deploy(&back))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct SyncForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    cluster: String,
}

/// `POST /drift/sync` (fields `app`, `cluster`): the desired version back
/// on the hosts that drifted; off to the deploy doing it.
#[tracing::instrument(skip_all)]
async fn sync(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SyncForm>,
) -> Response {
    run(&state, &headers, &form.csrf, |api| async move {
        let req = deploy::SyncRequest {
            app: field("app", &form.app, app_name)?,
            cluster: field("cluster", &form.cluster, cluster)?,
        };
        let outcome = api
            .sync(&req)
            .await
            .map_err(|e| PageError::upstream("syncing", e))?;
        tracing::info!(app = %req.app, cluster = %req.cluster, deploy_id = %outcome.deploy.id, "sync started from the dashboard");
        Ok(to_deploy(&outcome.deploy))
    })
    .await
}
