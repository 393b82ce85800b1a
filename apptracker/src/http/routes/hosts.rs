//! `GET /api/v1/hosts`: the host registry, for people.

use axum::extract::State;
use deploy::{Cluster, Host, HostName, PageQuery};

use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;
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
