//! The grabbers' protocol: heartbeats, desired state, progress reports of
//! a deploy's hosts, and the cluster's bus as server-sent events. Agent
//! tokens of the cluster (or of the host) only.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use deploy::{
    BusMessage, Cluster, DeployHost, DeployId, DesiredState, Heartbeat, Host, HostEvent, HostName,
    ReleasePhase, ReleasePhaseResult, Sources, SourcesRequest,
};
use futures::{Stream, StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;

use crate::http::stream::{sse_event, t_stop};
use axum::extract::State;

use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, parse};
use crate::model::Principal;
use crate::tracker::Tracker;

#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/hosts/{host}/events", tag = "agents",
    summary = "A grabber reports a host's progress in a deploy (agent of the cluster)",
    params(("id" = DeployId, Path, description = "The deploy's id"), ("host" = HostName, Path, description = "The host")),
    request_body = HostEvent,
    responses((status = 200, description = "The host's row", body = DeployHost))
)]
pub(crate) async fn host_event(
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

#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/hosts/{host}/sources", tag = "agents",
    summary = "Where a host fetches the files of a deploy's release it lacks (the host's agent)",
    description = "One signed download URL per blob (file content, by the sha256 the release's \
                   signed index gives it) asked for, duplicates once. At most 100,000 blobs per \
                   request. `404 not_found` when the deploy's build has no file index: download \
                   the whole artifact.",
    params(("id" = DeployId, Path, description = "The deploy's id"), ("host" = HostName, Path, description = "The host")),
    request_body = SourcesRequest,
    responses((status = 200, description = "Where to fetch them", body = Sources),
              (status = 400, description = "`invalid_input`: too many blobs, another cluster", body = deploy::ErrorBody),
              (status = 404, description = "`not_found`: no such deploy or host of it, or no file index", body = deploy::ErrorBody))
)]
pub(crate) async fn sources(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath((id, host)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<SourcesRequest>,
) -> Result<ApiJson<Sources>, ApiError> {
    let id: DeployId = parse(&id)?;
    let host: HostName = parse(&host)?;
    who.require_host(&req.cluster, &host)?;
    Ok(ApiJson(t.sources(id, &host, &req).await?))
}

/// `?cluster=`: the cluster of the host asking.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HostCluster {
    /// The asking host's cluster (its token must be an agent's of it).
    cluster: String,
}

#[utoipa::path(
    get, path = "/api/v1/deploys/{id}/release-phase/{host}", tag = "agents",
    summary = "What a host is asked to run as a deploy's release phase, while it waits on that host (agent of the cluster)",
    description = "A `release_phase` bus message only rings: the grabber runs the release this answer names, so whoever can publish on the bus cannot make a host run another release's command.",
    params(("id" = DeployId, Path, description = "The deploy's id"), ("host" = HostName, Path, description = "The host asked to run it"), HostCluster),
    responses((status = 200, description = "The release whose `[release] command` to run", body = deploy::DesiredApp),
              (status = 409, description = "`conflict`: no release phase of the deploy waits on this host (asked of another, ended, or never asked)", body = deploy::ErrorBody))
)]
pub(crate) async fn release_phase_asked(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath((id, host)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HostCluster>,
) -> Result<ApiJson<deploy::Release>, ApiError> {
    let id: DeployId = parse(&id)?;
    let host: HostName = parse(&host)?;
    let cluster: Cluster = parse(&q.cluster)?;
    who.require_host(&cluster, &host)?;
    Ok(ApiJson(t.release_phase_asked(id, &cluster, &host).await?))
}

#[utoipa::path(
    post, path = "/api/v1/deploys/{id}/release-phase/{host}", tag = "agents",
    summary = "The grabber that ran a deploy's release phase says how it went (agent of the cluster)",
    params(("id" = DeployId, Path, description = "The deploy's id"), ("host" = HostName, Path, description = "The host asked to run it")),
    request_body = ReleasePhaseResult,
    responses((status = 200, description = "The deploy's release phase", body = ReleasePhase))
)]
pub(crate) async fn release_phase_result(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath((id, host)): ApiPath<(String, String)>,
    ApiJson(result): ApiJson<ReleasePhaseResult>,
) -> Result<ApiJson<ReleasePhase>, ApiError> {
    let id: DeployId = parse(&id)?;
    let host: HostName = parse(&host)?;
    who.require_host(&result.cluster, &host)?;
    Ok(ApiJson(t.release_phase_result(id, &host, &result).await?))
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

#[utoipa::path(
    post, path = "/api/v1/hosts/heartbeat", tag = "agents",
    summary = "A grabber registers its host and says it is alive (agent of the cluster)",
    request_body = Heartbeat,
    responses((status = 200, description = "The host", body = Host))
)]
pub(crate) async fn heartbeat(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<ApiJson<Host>, ApiError> {
    who.require_host(&hb.cluster, &hb.host)?;
    Ok(ApiJson(t.heartbeat(&hb).await?))
}

#[utoipa::path(
    get, path = "/api/v1/hosts/{cluster}/{host}/desired", tag = "agents",
    summary = "What a host should run (agent of the cluster)",
    params(("cluster" = Cluster, Path, description = "The cluster"), ("host" = HostName, Path, description = "The host")),
    responses((status = 200, description = "The desired state", body = DesiredState))
)]
pub(crate) async fn desired(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath((cluster, host)): ApiPath<(String, String)>,
) -> Result<ApiJson<DesiredState>, ApiError> {
    let cluster: Cluster = parse(&cluster)?;
    let host: HostName = parse(&host)?;
    who.require_host(&cluster, &host)?;
    let apps = t.desired(&cluster, &host).await?;
    let fingerprint = deploy::desired_fingerprint(
        apps.iter()
            .map(|r| (r.app.as_str(), r.version.as_str(), r.deploy_id.0)),
    );
    Ok(ApiJson(DesiredState {
        cluster,
        host,
        apps,
        fingerprint: Some(fingerprint),
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
pub(crate) async fn bus_stream(
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
