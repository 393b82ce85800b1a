//! The builds pages: recent builds across apps (`/builds`) and one build
//! (`/builds/{id}`) with its log, which `static/build.js` keeps live while
//! the build runs by polling `GET /api/v1/builds/{id}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use axum::routing::get;
use deploy::{Build, BuildId, BuildStatus, Client, ClientError, Deploy, Timestamp};
use serde::Serialize;
use tera::Context;

use crate::AppState;
use crate::assets::static_file;
use crate::error::PageError;
use crate::views::{When, mib};
use crate::visitor::Visitor;

/// How many builds `/builds` lists.
const RECENT_BUILDS: u32 = 100;
/// How many of the app's deploys the build page searches for those that
/// used the build.
const DEPLOYS_SEARCHED: u32 = 100;

/// The build page's live log: a file, so the Content-Security-Policy can
/// forbid inline script.
pub(crate) const BUILD_SCRIPT: &str = include_str!("../static/build.js");

pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("builds.html", include_str!("../templates/builds.html")),
    ("build.html", include_str!("../templates/build.html")),
];

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/builds", get(builds))
        .route("/builds/{id}", get(build))
        .route("/static/build.js", get(build_script))
}

async fn build_script() -> Response {
    static_file("text/javascript; charset=utf-8", BUILD_SCRIPT)
}

/// One build in a table (the app page's and `/builds`).
#[derive(Debug, Serialize)]
pub(crate) struct BuildRow {
    pub(crate) id: i64,
    pub(crate) app: String,
    pub(crate) number: i64,
    pub(crate) version: String,
    pub(crate) git_ref: String,
    pub(crate) commit: String,
    /// The first 7 hex digits, as `git log --oneline` shows them.
    pub(crate) short_commit: String,
    /// The commit's author, `Name <email>`, and just the name for tables.
    pub(crate) author: Option<String>,
    pub(crate) author_name: Option<String>,
    /// The first line of the commit's message.
    pub(crate) message: Option<String>,
    pub(crate) status: &'static str,
    pub(crate) error: Option<String>,
    /// The artifact's size, once built.
    pub(crate) size: Option<String>,
    pub(crate) created: When,
    /// From queued to finished; none while it runs.
    pub(crate) took: Option<String>,
    /// Why an admin marked it bad.
    pub(crate) bad: Option<String>,
}

impl From<&Build> for BuildRow {
    fn from(b: &Build) -> Self {
        BuildRow {
            id: b.id.0,
            app: b.app.to_string(),
            number: b.number,
            version: b.version.to_string(),
            git_ref: b.git_ref.clone(),
            commit: b.commit.clone(),
            short_commit: b.commit.chars().take(7).collect(),
            author: b.author.clone(),
            author_name: b.author.as_deref().map(author_name),
            message: b.message.clone(),
            status: status_str(b.status),
            error: b.error.clone(),
            size: b.artifact.as_ref().map(|a| mib(a.size)),
            created: When::from(b.created_at),
            took: b.finished_at.map(|end| took(b.created_at, end)),
            bad: b
                .bad
                .as_ref()
                .map(|m| format!("marked bad by {}: {}", m.by, m.reason)),
        }
    }
}

/// The name in `Name <email>` (all of it when there is no name).
pub(crate) fn author_name(author: &str) -> String {
    match author.rsplit_once(" <") {
        Some((name, _)) if !name.trim().is_empty() => name.trim().to_string(),
        _ => author.to_string(),
    }
}

/// A build status as the pages and `build.js` name it: the API's word.
pub(crate) fn status_str(s: BuildStatus) -> &'static str {
    s.as_str()
}

/// How long from `start` to `end`, to the second ("1m 30s").
pub(crate) fn took(start: Timestamp, end: Timestamp) -> String {
    let secs = u64::try_from((end.0 - start.0) / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// One build on its page: the row plus its log and who held it.
#[derive(Debug, Serialize)]
struct BuildView {
    #[serde(flatten)]
    row: BuildRow,
    build_type: Option<String>,
    sha256: Option<String>,
    worker: Option<String>,
    finished: Option<When>,
    /// Whether the page needs no live updates.
    terminal: bool,
    log: String,
}

/// A deploy that used the build.
#[derive(Debug, Serialize)]
struct UsedBy {
    id: i64,
    cluster: String,
    status: &'static str,
    created: When,
}

impl From<&Deploy> for UsedBy {
    fn from(d: &Deploy) -> Self {
        UsedBy {
            id: d.id.0,
            cluster: d.cluster.to_string(),
            status: d.status.as_str(),
            created: When::from(d.created_at),
        }
    }
}

/// `GET /builds`: the newest builds of every app.
#[tracing::instrument(skip_all)]
async fn builds(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        builds_page(&state, &api, &visitor).await
    };
    state.respond(page.await)
}

async fn builds_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
) -> Result<Html<String>, PageError> {
    let builds = api
        .recent_builds(None, RECENT_BUILDS)
        .await
        .map_err(|e| PageError::upstream("listing builds", e))?;
    let mut ctx = Context::new();
    ctx.insert(
        "builds",
        &builds.iter().map(BuildRow::from).collect::<Vec<_>>(),
    );
    state.render_for(visitor, "builds.html", ctx)
}

/// `GET /builds/{id}`: one build with its log, live while it runs.
#[tracing::instrument(skip_all, fields(build_id = %raw_id))]
async fn build(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        build_page(&state, &api, &visitor, &raw_id).await
    };
    state.respond(page.await)
}

async fn build_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
    raw_id: &str,
) -> Result<Html<String>, PageError> {
    // A malformed id names no build: the same 404 as an unknown one.
    let id: BuildId = raw_id
        .parse()
        .map_err(|_| PageError::NotFound(format!("there is no build {raw_id:?}")))?;
    let build = api.build(id).await.map_err(|e| match e {
        ClientError::Api { status: 404, .. } => {
            PageError::NotFound(format!("there is no build {id}"))
        }
        e => PageError::upstream("fetching the build", e),
    })?;
    // Which deploys used it: one call, the app's newest deploys; an API
    // that fails here only costs the page that list.
    let used_by: Vec<UsedBy> = match api.deploys_of(&build.app, None, DEPLOYS_SEARCHED).await {
        Ok(ds) => ds
            .iter()
            .filter(|d| d.build_id == Some(id) || d.version.as_ref() == Some(&build.version))
            .map(UsedBy::from)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "listing the deploys of the build's app");
            Vec::new()
        }
    };
    let view = BuildView {
        row: BuildRow::from(&build),
        build_type: build.build_type.map(|t| t.to_string()),
        sha256: build.artifact.as_ref().map(|a| a.sha256.to_string()),
        worker: build.worker.clone(),
        finished: build.finished_at.map(When::from),
        terminal: build.status.is_terminal(),
        log: build.log.clone(),
    };
    let mut ctx = Context::new();
    ctx.insert("build", &view);
    ctx.insert("used_by", &used_by);
    state.render_for(visitor, "build.html", ctx)
}
