//! `/api/v1/hosts`: the host registry, for people, and forgetting a
//! retired host.

use axum::extract::State;
use deploy::{Cluster, ErrorBody, Host, HostName, PageQuery, RemovedHost};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

#[utoipa::path(
    get, path = "/api/v1/hosts", tag = "hosts",
    summary = "Registered hosts by cluster and name, with what they run (paged)",
    params(PageQuery),
    responses((status = 200, description = "A page of hosts", body = Vec<Host>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn list_hosts(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<Host>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page::limit(q.limit)?;
    let after = page::pair_cursor::<Cluster, HostName>(q.cursor.as_deref())?;
    let mut hosts = t
        .queries()
        .hosts_page(after.as_ref(), page::rows(limit))
        .await?;
    let alive_since = t.alive_since();
    for h in &mut hosts {
        h.alive = Some(h.last_seen >= alive_since);
    }
    Ok(Paged::cut(hosts, limit, |h| {
        format!("{}/{}", h.cluster, h.name)
    }))
}

#[utoipa::path(
    delete, path = "/api/v1/hosts/{cluster}/{host}", tag = "hosts",
    summary = "Forget a retired host: drift no longer shows it stale or missing; it comes back if its agents report again (admin)",
    params(("cluster" = Cluster, Path, description = "The host's cluster"),
           ("host" = HostName, Path, description = "The host's name")),
    responses((status = 200, description = "Forgotten", body = RemovedHost),
              (status = 409, description = "`deploy_in_progress`: a deploy under way has the host", body = ErrorBody))
)]
pub(crate) async fn remove_host(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath((cluster, host)): ApiPath<(String, String)>,
) -> Result<ApiJson<RemovedHost>, ApiError> {
    let (cluster, host) = (Cluster::parse(cluster)?, HostName::parse(host)?);
    note.target(format!("remove host {host} of {cluster}"));
    who.require(Role::Admin)?;
    Ok(ApiJson(t.remove_host(&cluster, &host).await?))
}
