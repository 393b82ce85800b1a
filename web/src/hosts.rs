//! The fleet's pages: every host with its apps and their state
//! (`/hosts`), one host with its apps' recent log (`/hosts/{cluster}/{host}`),
//! and the JSON piece of a log the host page's script follows
//! (`/hosts/{cluster}/{host}/log/{app}`).
//!
//! Logs come from the host's grabber through AppTracker
//! (`POST /api/v1/apps/{app}/logs`), which lets deployers only read them and
//! audits every read; the dashboard forwards the visitor's session and
//! shows what AppTracker says when the host does not answer.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deploy::{AppName, AppRunStatus, Client, ClientError, Cluster, Host, HostName, InstalledApp};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::AppState;
use crate::assets::static_file;
use crate::error::PageError;
use crate::signin::request_credential;
use crate::views::When;
use crate::visitor::Visitor;

/// The host page's log follower, a file (the CSP forbids inline script).
pub(crate) const HOSTLOG_SCRIPT: &str = include_str!("../static/hostlog.js");

pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("hosts.html", include_str!("../templates/hosts.html")),
    ("host.html", include_str!("../templates/host.html")),
];

/// How long a host may stay silent and still count as reachable, when the
/// API does not say (`Host::alive`, from an older server): AppTracker's
/// default `host_alive`.
const HOST_ALIVE_MS: i64 = 120_000;

/// The most of a log one piece asks for: the page's first view and every
/// follow request.
const LOG_PIECE: u64 = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/hosts", get(hosts))
        .route("/hosts/{cluster}/{host}", get(host))
        .route("/hosts/{cluster}/{host}/log/{app}", get(log_piece))
        .route("/static/hostlog.js", get(hostlog_script))
}

async fn hostlog_script() -> Response {
    static_file("text/javascript; charset=utf-8", HOSTLOG_SCRIPT)
}

/// One host as the fleet pages show it.
#[derive(Debug, Serialize)]
pub(crate) struct HostCard {
    pub(crate) cluster: String,
    pub(crate) name: String,
    /// Its page.
    pub(crate) href: String,
    pub(crate) root: String,
    pub(crate) last_seen: When,
    pub(crate) registered_at: When,
    /// Silent for longer than [`HOST_ALIVE_MS`]: nothing it reports is
    /// current, and AppTracker will not ask it for logs.
    pub(crate) unreachable: bool,
    pub(crate) apps: Vec<AppOnHost>,
    /// What its versionchecker last said, when the drift report has it.
    pub(crate) checker: Option<CheckerView>,
}

/// A host's versionchecker as the drift report shows it: the API has no
/// agent versions, so this is what there is of the agents' health.
#[derive(Debug, Serialize)]
pub(crate) struct CheckerView {
    pub(crate) reported_at: Option<When>,
    /// Its last report is older than three of its intervals.
    pub(crate) stale: bool,
    /// "12.0 GiB free of 40.0 GiB" where the host layout lives.
    pub(crate) disk: Option<String>,
}

impl From<&deploy::drift::AgentStatus> for CheckerView {
    fn from(a: &deploy::drift::AgentStatus) -> Self {
        let gib = |b: u64| format!("{:.1} GiB", b as f64 / f64::from(1 << 30));
        CheckerView {
            reported_at: a.reported_at.map(When::from),
            stale: a.stale,
            disk: a
                .disk
                .map(|d| format!("{} free of {}", gib(d.free_bytes), gib(d.total_bytes))),
        }
    }
}

/// One app on a host.
#[derive(Debug, Serialize)]
pub(crate) struct AppOnHost {
    pub(crate) app: String,
    pub(crate) version: Option<String>,
    /// The app's config version it runs with (0: none).
    pub(crate) config_version: u64,
    /// A class-safe state: `running`, `restarting`, `failing`, `stopped`
    /// or `not-running`.
    pub(crate) state: &'static str,
    /// The state in words.
    pub(crate) state_label: &'static str,
    pub(crate) restarts: u32,
    pub(crate) pid: Option<u32>,
    pub(crate) port: Option<u16>,
    /// Every process of a release with more than a web process.
    pub(crate) processes: Vec<ProcessOnHost>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ProcessOnHost {
    pub(crate) label: String,
    pub(crate) state: &'static str,
    pub(crate) state_label: &'static str,
    pub(crate) pid: Option<u32>,
    pub(crate) port: Option<u16>,
    pub(crate) restarts: u32,
}

/// A process's state: the supervisor's word, except that "running" with
/// no process (an older grabber, or nothing installed) is "not running".
fn run_state(status: AppRunStatus, pid: Option<u32>) -> (&'static str, &'static str) {
    match status {
        AppRunStatus::Running if pid.is_none() => ("not-running", "not running"),
        s => (s.as_str(), s.as_str()),
    }
}

impl From<&InstalledApp> for AppOnHost {
    fn from(a: &InstalledApp) -> Self {
        let (state, state_label) = run_state(a.status, a.pid);
        AppOnHost {
            app: a.app.to_string(),
            version: a.version.as_ref().map(ToString::to_string),
            config_version: a.config_version,
            state,
            state_label,
            restarts: a.restarts,
            pid: a.pid,
            port: a.port,
            processes: a
                .processes
                .iter()
                .map(|p| {
                    let (state, state_label) = run_state(p.status, p.pid);
                    ProcessOnHost {
                        label: p.label(),
                        state,
                        state_label,
                        pid: p.pid,
                        port: p.port,
                        restarts: p.restarts,
                    }
                })
                .collect(),
        }
    }
}

impl HostCard {
    pub(crate) fn new(
        h: &Host,
        now: deploy::Timestamp,
        agents: &[deploy::drift::AgentStatus],
    ) -> Self {
        HostCard {
            cluster: h.cluster.to_string(),
            name: h.name.to_string(),
            href: host_href(&h.cluster, &h.name),
            root: h.root.clone(),
            last_seen: When::from(h.last_seen),
            registered_at: When::from(h.registered_at),
            unreachable: match h.alive {
                Some(alive) => !alive,
                None => now.0.saturating_sub(h.last_seen.0) > HOST_ALIVE_MS,
            },
            apps: h.apps.iter().map(AppOnHost::from).collect(),
            checker: agents
                .iter()
                .find(|a| a.cluster == h.cluster && a.host == h.name)
                .map(CheckerView::from),
        }
    }
}

/// The agents' status from the drift report, or none if it cannot be
/// had: the fleet pages show hosts without it rather than fail. Only
/// `stale` rows are asked for, since only `agents` is used.
async fn agents(api: &Client, cluster: Option<&Cluster>) -> Vec<deploy::drift::AgentStatus> {
    let query = deploy::DriftQuery {
        app: None,
        cluster: cluster.map(ToString::to_string),
        state: Some("stale".into()),
    };
    match api.drift(&query).await {
        Ok(report) => report.agents,
        Err(e) => {
            tracing::info!(error = %e, "hosts shown without their versionchecker's status");
            Vec::new()
        }
    }
}

/// A host's page. Cluster and host names are validated path-safe tokens.
pub(crate) fn host_href(cluster: &Cluster, host: &HostName) -> String {
    format!("/hosts/{cluster}/{host}")
}

async fn all_hosts(api: &Client) -> Result<Vec<Host>, PageError> {
    let mut hosts = api
        .hosts()
        .await
        .map_err(|e| PageError::upstream("listing hosts", e))?;
    hosts.sort_by(|a, b| (&a.cluster, &a.name).cmp(&(&b.cluster, &b.name)));
    Ok(hosts)
}

/// `GET /hosts`: every host, its heartbeat, its apps and their state.
#[tracing::instrument(skip_all)]
async fn hosts(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        let now = deploy::Timestamp::now();
        let (hosts, agents) = tokio::join!(all_hosts(&api), agents(&api, None));
        let cards: Vec<HostCard> = hosts?
            .iter()
            .map(|h| HostCard::new(h, now, &agents))
            .collect();
        let mut ctx = Context::new();
        ctx.insert(
            "unreachable",
            &cards.iter().filter(|c| c.unreachable).count(),
        );
        ctx.insert("hosts", &cards);
        state.render_for(&visitor, "hosts.html", ctx)
    };
    state.respond(page.await)
}

/// The host page's query: which app's log to show.
#[derive(Debug, Default, Deserialize)]
struct HostQuery {
    #[serde(default)]
    app: Option<String>,
}

/// What the host page shows of the chosen app's log.
#[derive(Debug, Serialize)]
struct LogView {
    app: String,
    /// Where the script's next read starts; none when the first read
    /// failed (the script then asks for the log's tail).
    next_offset: Option<u64>,
    text: String,
    truncated: bool,
    /// AppTracker's words when the host did not give the log.
    error: Option<String>,
    /// The follow route of this app's log on this host.
    follow: String,
}

/// Parses the path's cluster and host: a malformed one names no host.
fn host_path(cluster: &str, host: &str) -> Result<(Cluster, HostName), PageError> {
    let missing =
        || PageError::NotFound(format!("there is no host {host:?} in cluster {cluster:?}"));
    let c = Cluster::parse(cluster).map_err(|_| missing())?;
    let h = HostName::parse(host).map_err(|_| missing())?;
    Ok((c, h))
}

/// `GET /hosts/{cluster}/{host}[?app=APP]`: the host's apps, and the
/// recent log of one of them (its first by default) for deployers.
#[tracing::instrument(skip_all)]
async fn host(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HostQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        let Ok(Path((raw_cluster, raw_host))) = path else {
            return Err(PageError::NotFound("there is no such host".into()));
        };
        let Query(query) = query.map_err(|e| PageError::BadInput(e.body_text()))?;
        let (cluster, name) = host_path(&raw_cluster, &raw_host)?;
        host_page(
            &state,
            &api,
            &visitor,
            &cluster,
            &name,
            query.app.as_deref(),
        )
        .await
    };
    state.respond(page.await)
}

async fn host_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
    cluster: &Cluster,
    name: &HostName,
    app: Option<&str>,
) -> Result<Html<String>, PageError> {
    let (hosts, agents) = tokio::join!(all_hosts(api), agents(api, Some(cluster)));
    let hosts = hosts?;
    let Some(host) = hosts
        .iter()
        .find(|h| &h.cluster == cluster && &h.name == name)
    else {
        return Err(PageError::NotFound(format!(
            "there is no host {name} in cluster {cluster}"
        )));
    };
    let card = HostCard::new(host, deploy::Timestamp::now(), &agents);
    // The app whose log is shown: the one asked for, which must be on
    // this host, else the host's first.
    let chosen: Option<AppName> = match app.map(str::trim).filter(|a| !a.is_empty()) {
        Some(raw) => {
            let found = AppName::parse(raw)
                .ok()
                .filter(|a| host.apps.iter().any(|i| &i.app == a));
            match found {
                Some(a) => Some(a),
                None => {
                    return Err(PageError::NotFound(format!(
                        "host {name} in cluster {cluster} has no app {raw:?}"
                    )));
                }
            }
        }
        None => host.apps.first().map(|a| a.app.clone()),
    };
    let log = match &chosen {
        Some(app) if visitor.can_deploy => Some(first_piece(api, app, cluster, name).await),
        _ => None,
    };
    let mut ctx = Context::new();
    ctx.insert("host", &card);
    ctx.insert("chosen", &chosen.as_ref().map(ToString::to_string));
    ctx.insert("log", &log);
    state.render_for(visitor, "host.html", ctx)
}

/// The log's last piece, or why the host did not give it: shown in the
/// page either way, never as an error page.
async fn first_piece(api: &Client, app: &AppName, cluster: &Cluster, host: &HostName) -> LogView {
    let req = deploy::LogRequest {
        cluster: cluster.clone(),
        host: host.clone(),
        offset: None,
        max_bytes: Some(LOG_PIECE),
    };
    let follow = format!("{}/log/{app}", host_href(cluster, host));
    match api.read_log(app, &req).await {
        Ok(piece) => LogView {
            app: app.to_string(),
            next_offset: Some(piece.next_offset),
            text: piece.text,
            truncated: piece.truncated || piece.offset > 0,
            error: None,
            follow,
        },
        Err(e) => {
            tracing::info!(error = %e, %app, %host, "no log for the host page");
            LogView {
                app: app.to_string(),
                next_offset: None,
                text: String::new(),
                truncated: false,
                error: Some(upstream_words(&e)),
                follow,
            }
        }
    }
}

/// What AppTracker said, without the HTTP decoration.
fn upstream_words(e: &ClientError) -> String {
    match e {
        ClientError::Api { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

/// `?offset=N` of the follow route, as text so a bad one gets a JSON
/// answer rather than the framework's.
#[derive(Debug, Default, Deserialize)]
struct PieceQuery {
    #[serde(default)]
    offset: Option<String>,
}

/// A follow answer: the piece, or why there is none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum PieceAnswer {
    Piece {
        text: String,
        offset: u64,
        next_offset: u64,
        truncated: bool,
    },
    Refused {
        error: String,
    },
}

fn json_answer(status: StatusCode, answer: PieceAnswer) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response()
}

fn refused(status: StatusCode, error: impl Into<String>) -> Response {
    json_answer(
        status,
        PieceAnswer::Refused {
            error: error.into(),
        },
    )
}

/// `GET /hosts/{cluster}/{host}/log/{app}?offset=N`: the next piece of the
/// app's log (at most [`LOG_PIECE`]), read with the visitor's session.
/// AppTracker's refusals keep their status (a silent host is 422, one too
/// slow to answer 408); only AppTracker itself failing is a 502.
#[tracing::instrument(skip_all)]
async fn log_piece(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    query: Result<Query<PieceQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((raw_cluster, raw_host, raw_app))) = path else {
        return refused(StatusCode::NOT_FOUND, "no such log");
    };
    let (Ok(cluster), Ok(host), Ok(app)) = (
        Cluster::parse(&raw_cluster),
        HostName::parse(&raw_host),
        AppName::parse(&raw_app),
    ) else {
        return refused(
            StatusCode::NOT_FOUND,
            format!("there is no app {raw_app:?} on host {raw_host:?} in cluster {raw_cluster:?}"),
        );
    };
    let offset = match query.map(|Query(q)| q.offset) {
        Ok(None) => None,
        Ok(Some(raw)) if raw.trim().is_empty() => None,
        Ok(Some(raw)) => match raw.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    format!("offset {raw:?}: a byte offset, a whole number"),
                );
            }
        },
        Err(e) => return refused(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(credential) = request_credential(&headers) else {
        return refused(StatusCode::UNAUTHORIZED, "sign in first");
    };
    let api = state.api.clone().with_token(credential);
    let req = deploy::LogRequest {
        cluster,
        host,
        offset,
        max_bytes: Some(LOG_PIECE),
    };
    match api.read_log(&app, &req).await {
        Ok(piece) => json_answer(
            StatusCode::OK,
            PieceAnswer::Piece {
                text: piece.text,
                offset: piece.offset,
                next_offset: piece.next_offset,
                truncated: piece.truncated,
            },
        ),
        Err(ClientError::Api {
            status: status @ 400..=499,
            message,
            ..
        }) => refused(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            message,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reading a host's log through AppTracker failed");
            refused(StatusCode::BAD_GATEWAY, e.to_string())
        }
    }
}
