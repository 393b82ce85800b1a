//! What a deploy's hosts went through: the recorded events
//! (`/api/v1/deploys/{id}/events`) and the live stream
//! (`/api/v1/deploys/{id}/stream`, server-sent events).

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use deploy::{Deploy, DeployEvent, DeployHost, DeployId, PageQuery};
use futures::{Stream, StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;

use crate::bus::Live;
use crate::http::stream::{sse_event, t_stop};
use axum::extract::State;

use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery, parse};
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

/// Every event the deploy's hosts reported, oldest first: when each host
/// went through each phase.
#[utoipa::path(
    get, path = "/api/v1/deploys/{id}/events", tag = "deploys",
    params(("id" = DeployId, Path, description = "The deploy's id"), PageQuery),
    responses((status = 200, description = "A page of events, oldest first", body = Vec<deploy::HostEventRecord>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn deploy_events(
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
    let events = t
        .queries()
        .host_events(id, after, page::rows(limit))
        .await?;
    // The cursor is the event's row id, which the record does not show.
    let page = Paged::cut(events, limit, |(seq, _)| seq.to_string());
    Ok(page.map(|(_, e)| e))
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

/// How long a deploy's stream waits for an event before it re-reads the
/// deploy.
const REREAD: Duration = Duration::from_secs(5);

/// Live events of one deploy: a snapshot, then changes, ending after the
/// terminal status. Subscribes before reading the snapshot, so nothing
/// between the two is lost.
#[utoipa::path(
    get, path = "/api/v1/deploys/{id}/stream", tag = "deploys",
    params(("id" = DeployId, Path, description = "The deploy's id")),
    responses((status = 200, content_type = "text/event-stream", body = String,
               description = "Server-sent events, each a JSON `DeployEvent` (`kind`: `host` or `status`)"))
)]
pub(crate) async fn deploy_stream(
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
        /// The last status sent: a quiet re-read repeats it, unsent.
        status: Option<DeployEvent>,
    }
    let live = stream::unfold(
        S {
            rx,
            t,
            done,
            pending: snapshot(&first).into(),
            sent: Default::default(),
            status: None,
        },
        move |mut s| async move {
            loop {
                if let Some(ev) = s.pending.pop_front() {
                    if let DeployEvent::Host { host, .. } = &ev {
                        if s.sent.get(&host.host) == Some(host) {
                            continue;
                        }
                        s.sent.insert(host.host.clone(), host.clone());
                    } else if s.status.as_ref() == Some(&ev) {
                        continue;
                    } else {
                        s.status = Some(ev.clone());
                    }
                    return Some((ev, s));
                }
                if s.done {
                    return None;
                }
                // Quiet for a while: re-read the record, in case the event
                // that ended it was lost (a failed Redis publish), so no
                // watcher waits forever on a deploy that is over.
                let next = match tokio::time::timeout(REREAD, s.rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => Ok(Live::Resync),
                };
                match next {
                    Ok(Live::Event(ev)) => match &ev {
                        DeployEvent::Host { deploy_id, .. } if *deploy_id == id => {
                            s.pending.push_back(ev);
                        }
                        DeployEvent::Status {
                            deploy_id, status, ..
                        } if *deploy_id == id => {
                            if !status.is_terminal() {
                                s.pending.push_back(ev);
                                continue;
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
