//! `/api/v1/clusters`: the deploy controls of a cluster (protected,
//! frozen).

use std::time::Duration;

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
    Ok(ApiJson(t.db().clusters().await?))
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
pub(crate) async fn thaw_cluster(
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

pub(crate) async fn cluster_settings(
    t: &Tracker,
    cluster: &Cluster,
) -> Result<ApiJson<deploy::ClusterSettings>, ApiError> {
    t.db()
        .cluster_settings(cluster)
        .await?
        .map(ApiJson)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("cluster `{cluster}` vanished")))
}
