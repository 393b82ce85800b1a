//! Rollbacks and the pins they leave: `/api/v1/apps/{app}/rollback`,
//! `/api/v1/apps/{app}/pins`, `/api/v1/pins`.

use axum::extract::State;
use deploy::ErrorBody;
use deploy::{AppName, Cluster, Deploy, PageQuery};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::openapi::Empty;
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

/// Back to the version before the newest deploy, everywhere it replaced
/// one; pins the app there.
#[utoipa::path(
    post, path = "/api/v1/apps/{app}/rollback", tag = "deploys",
    params(("app" = AppName, Path, description = "The app's name")), request_body = deploy::Rollback,
    responses((status = 200, description = "The rollback deploy", body = Deploy),
              (status = 409, description = "`deploy_in_progress`", body = ErrorBody),
              (status = 422, description = "`nothing_to_roll_back`, `ambiguous_rollback`", body = ErrorBody))
)]
pub(crate) async fn rollback_app(
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
pub(crate) async fn list_pins(
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
        .queries()
        .pins_page(&app, after.as_ref(), page::rows(limit))
        .await?;
    Ok(Paged::cut(pins, limit, |p| p.cluster.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/pins", tag = "deploys",
    summary = "Every pin of every app, by app and cluster",
    responses((status = 200, description = "The pins", body = Vec<deploy::Pin>))
)]
pub(crate) async fn list_all_pins(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<deploy::Pin>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.queries().all_pins().await?))
}

#[utoipa::path(
    delete, path = "/api/v1/apps/{app}/pins/{cluster}", tag = "deploys",
    summary = "Unpin the app on a cluster: other versions may be deployed again (deployer)",
    params(("app" = AppName, Path, description = "The app's name"), ("cluster" = Cluster, Path, description = "The cluster")),
    responses((status = 200, description = "Unpinned", body = Empty))
)]
pub(crate) async fn delete_pin(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath((app, cluster)): ApiPath<(String, String)>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    let (app, cluster) = (AppName::parse(app)?, Cluster::parse(cluster)?);
    note.app(&app);
    note.target(format!("unpin on {cluster}"));
    who.require(Role::Deployer)?;
    t.unpin(&app, &cluster, &who.name).await?;
    Ok(ApiJson(serde_json::json!({})))
}
