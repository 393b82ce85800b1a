//! `/api/v1/clusters`: the deploy controls of a cluster (protected,
//! frozen).

use axum::extract::State;
use deploy::Cluster;
use deploy::ErrorBody;

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

#[utoipa::path(
    get, path = "/api/v1/clusters", tag = "clusters",
    summary = "Every cluster with deploy controls (protected, frozen)",
    responses((status = 200, description = "The clusters' controls", body = Vec<deploy::ClusterSettings>))
)]
pub(crate) async fn list_clusters(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<deploy::ClusterSettings>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.queries().clusters().await?))
}

#[utoipa::path(
    get, path = "/api/v1/clusters/{cluster}", tag = "clusters",
    summary = "A cluster's deploy controls",
    params(("cluster" = Cluster, Path, description = "The cluster")),
    responses((status = 200, description = "Its controls", body = deploy::ClusterSettings),
              (status = 404, description = "`not_found`: no controls set", body = ErrorBody))
)]
pub(crate) async fn show_cluster(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(cluster): ApiPath<String>,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    who.require(Role::Viewer)?;
    let cluster = Cluster::parse(cluster)?;
    t.queries()
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
pub(crate) async fn set_cluster(
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
    Ok(ApiJson(
        t.set_protected(&cluster, req.protected, &who.name).await?,
    ))
}

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
pub(crate) async fn freeze_cluster(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(cluster): ApiPath<String>,
    ApiJson(req): ApiJson<deploy::Freeze>,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    let cluster = Cluster::parse(cluster)?;
    note.target(format!("freeze {cluster}"));
    who.require(Role::Admin)?;
    Ok(ApiJson(t.freeze_cluster(&cluster, &req, &who.name).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/clusters/{cluster}/freeze", tag = "clusters",
    summary = "Lift a cluster's freeze; queued deploys start (admin)",
    params(("cluster" = Cluster, Path, description = "The cluster")),
    responses((status = 200, description = "Its controls", body = deploy::ClusterSettings))
)]
pub(crate) async fn thaw_cluster(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(cluster): ApiPath<String>,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    let cluster = Cluster::parse(cluster)?;
    note.target(format!("thaw {cluster}"));
    who.require(Role::Admin)?;
    Ok(ApiJson(t.thaw_cluster(&cluster, &who.name).await?))
}
