//! The apps pages: every app with what it runs where (`/apps`), and one
//! app (`/apps/{app}`): its builds, which version runs on which host, its
//! deploys, its config keys, and a rollback per cluster for deployers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use axum::routing::get;
use deploy::{App, AppName, Build, Client, ClientError, Deploy, DeployStatus, DriftQuery, Host};
use serde::Serialize;
use tera::Context;

use crate::AppState;
use crate::builds::{BuildRow, took};
use crate::error::PageError;
use crate::views::{When, progress, version_label};
use crate::visitor::Visitor;

/// How many deploys `/apps` reads to find each app's last one.
const RECENT_DEPLOYS: u32 = 200;
/// How many builds `/apps` reads to find each app's last one.
const RECENT_BUILDS: u32 = 200;
/// How many of its deploys the app page lists.
const APP_DEPLOYS: u32 = 50;

pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("apps.html", include_str!("../templates/apps.html")),
    ("app.html", include_str!("../templates/app.html")),
];

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/apps", get(apps))
        .route("/apps/{app}", get(app))
}

/// A deploy in one line: the apps table's "last deploy", the app page's
/// history.
#[derive(Debug, Serialize)]
struct DeployLine {
    id: i64,
    version: String,
    /// Whether `version` is a git ref still being built.
    building: bool,
    cluster: String,
    status: &'static str,
    /// `restart`, `stop` or `start`; none for a release.
    action: Option<&'static str>,
    progress: String,
    who: Option<String>,
    created: When,
    /// From request to end; none while it runs.
    took: Option<String>,
    rollback_of: Option<i64>,
    retry_of: Option<i64>,
}

impl From<&Deploy> for DeployLine {
    fn from(d: &Deploy) -> Self {
        let (version, building) = version_label(d);
        DeployLine {
            id: d.id.0,
            version,
            building,
            cluster: d.cluster.to_string(),
            status: d.status.as_str(),
            action: (!d.action.is_deploy()).then(|| d.action.as_str()),
            progress: progress(&d.hosts),
            who: d.requested_by.clone(),
            created: When::from(d.created_at),
            took: d.finished_at.map(|end| took(d.created_at, end)),
            rollback_of: d.rollback_of.map(|d| d.0),
            retry_of: d.retry_of.map(|d| d.0),
        }
    }
}

/// What an app runs on one cluster.
#[derive(Debug, Serialize)]
struct RunsOn {
    cluster: String,
    /// Each version its hosts report, with how many run it: "3-abc (2)".
    versions: Vec<String>,
    /// The version of the newest deploy there that succeeded.
    deployed: Option<String>,
}

/// One line of `/apps`.
#[derive(Debug, Serialize)]
struct AppRow {
    name: String,
    branch: String,
    runs: Vec<RunsOn>,
    last_build: Option<BuildRow>,
    last_deploy: Option<DeployLine>,
}

/// Per cluster, what the hosts report of `app`: version → host count.
fn reported(app: &AppName, hosts: &[Host]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for h in hosts {
        for a in h.apps.iter().filter(|a| &a.app == app) {
            let version = a
                .version
                .as_ref()
                .map_or_else(|| "no release".to_string(), ToString::to_string);
            *out.entry(h.cluster.to_string())
                .or_default()
                .entry(version)
                .or_default() += 1;
        }
    }
    out
}

fn app_row(app: &App, hosts: &[Host], builds: &[Build], deploys: &[Deploy]) -> AppRow {
    let mine: Vec<&Deploy> = deploys.iter().filter(|d| d.app == app.name).collect();
    let reported = reported(&app.name, hosts);
    let clusters: BTreeSet<String> = reported
        .keys()
        .cloned()
        .chain(mine.iter().map(|d| d.cluster.to_string()))
        .collect();
    let runs = clusters
        .into_iter()
        .map(|cluster| RunsOn {
            versions: reported.get(&cluster).map_or_else(Vec::new, |vs| {
                vs.iter().map(|(v, n)| format!("{v} ({n})")).collect()
            }),
            // Deploys come newest first.
            deployed: mine
                .iter()
                .find(|d| {
                    d.cluster.as_str() == cluster
                        && d.status == DeployStatus::Succeeded
                        && d.action.is_deploy()
                })
                .and_then(|d| d.version.as_ref().map(ToString::to_string)),
            cluster,
        })
        .collect();
    AppRow {
        name: app.name.to_string(),
        branch: app.branch.clone(),
        runs,
        last_build: builds
            .iter()
            .find(|b| b.app == app.name)
            .map(BuildRow::from),
        last_deploy: mine.first().map(|d| DeployLine::from(*d)),
    }
}

/// `GET /apps`: every app, what it runs where, its last build and deploy.
#[tracing::instrument(skip_all)]
async fn apps(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        apps_page(&state, &api, &visitor).await
    };
    state.respond(page.await)
}

async fn apps_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
) -> Result<Html<String>, PageError> {
    let (apps, hosts, builds, deploys) = tokio::join!(
        api.apps(),
        api.hosts(),
        api.recent_builds(None, RECENT_BUILDS),
        api.deploys(RECENT_DEPLOYS)
    );
    let apps = apps.map_err(|e| PageError::upstream("listing apps", e))?;
    let hosts = hosts.map_err(|e| PageError::upstream("listing hosts", e))?;
    let builds = builds.map_err(|e| PageError::upstream("listing builds", e))?;
    let deploys = deploys.map_err(|e| PageError::upstream("listing deploys", e))?;
    let rows: Vec<AppRow> = apps
        .iter()
        .map(|a| app_row(a, &hosts, &builds, &deploys))
        .collect();
    let mut ctx = Context::new();
    ctx.insert("apps", &rows);
    state.render_for(visitor, "apps.html", ctx)
}

/// The app page's header.
#[derive(Debug, Serialize)]
struct AppView {
    name: String,
    git_url: String,
    branch: String,
    /// The subdirectory it is built from, in a monorepo.
    root: Option<String>,
    /// "prod (hosts ~ web-.*)" when pushes deploy on their own.
    auto_deploy: Option<String>,
    new_hosts: &'static str,
    created: When,
}

impl From<&App> for AppView {
    fn from(a: &App) -> Self {
        AppView {
            name: a.name.to_string(),
            git_url: a.git_url.clone(),
            branch: a.branch.clone(),
            root: a.root.clone(),
            auto_deploy: a.auto_deploy.as_ref().map(|r| match &r.hosts {
                Some(h) => format!("{} (hosts ~ {h})", r.cluster),
                None => r.cluster.to_string(),
            }),
            new_hosts: a.new_hosts.as_str(),
            created: When::from(a.created_at),
        }
    }
}

/// One host's copy of the app: what it should run and what it runs.
#[derive(Debug, Serialize)]
struct PlacementRow {
    cluster: String,
    host: String,
    state: &'static str,
    desired: Option<String>,
    desired_deploy: Option<i64>,
    current: Option<String>,
    reason: String,
    reported: Option<When>,
}

impl From<&deploy::DriftHost> for PlacementRow {
    fn from(h: &deploy::DriftHost) -> Self {
        PlacementRow {
            cluster: h.cluster.to_string(),
            host: h.host.to_string(),
            state: h.state.as_str(),
            desired: h.desired.as_ref().map(ToString::to_string),
            desired_deploy: h.desired_deploy.map(|d| d.0),
            current: h.current.as_ref().map(ToString::to_string),
            reason: h.reason.clone(),
            reported: h.reported_at.map(When::from),
        }
    }
}

/// One config variable, its value masked when secret.
#[derive(Debug, Serialize)]
struct ConfigRow {
    key: String,
    /// None: app-wide.
    cluster: Option<String>,
    value: Option<String>,
    secret: bool,
}

/// A cluster the app was deployed to, where deployers may roll it back.
#[derive(Debug, Serialize)]
struct RollbackTarget {
    cluster: String,
    /// The form asks for the cluster's name typed back.
    protected: bool,
}

/// `GET /apps/{app}`
#[tracing::instrument(skip_all, fields(app = %raw_app))]
async fn app(
    State(state): State<Arc<AppState>>,
    Path(raw_app): Path<String>,
    headers: HeaderMap,
) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        app_page(&state, &api, &visitor, &raw_app).await
    };
    state.respond(page.await)
}

async fn app_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
    raw_app: &str,
) -> Result<Html<String>, PageError> {
    // A malformed name names no app: the same 404 as an unknown one.
    let name = AppName::parse(raw_app)
        .map_err(|_| PageError::NotFound(format!("there is no app {raw_app:?}")))?;
    let app = api.app(&name).await.map_err(|e| match e {
        ClientError::Api { status: 404, .. } => {
            PageError::NotFound(format!("there is no app {name}"))
        }
        e => PageError::upstream("fetching the app", e),
    })?;
    let drift_query = DriftQuery {
        app: Some(name.to_string()),
        ..DriftQuery::default()
    };
    let (builds, drift, deploys, config, clusters) = tokio::join!(
        api.builds(&name),
        api.drift(&drift_query),
        api.deploys_of(&name, None, APP_DEPLOYS),
        api.app_config(&name, None),
        api.clusters()
    );
    let builds = builds.map_err(|e| PageError::upstream("listing the app's builds", e))?;
    let drift = drift.map_err(|e| PageError::upstream("reading where the app runs", e))?;
    let deploys = deploys.map_err(|e| PageError::upstream("listing the app's deploys", e))?;
    let clusters = clusters.map_err(|e| PageError::upstream("listing clusters", e))?;
    // The config is a part of the page, not its point: without it the
    // rest still shows.
    let config = match config {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "reading the app's config");
            None
        }
    };

    let mut ctx = Context::new();
    ctx.insert("app", &AppView::from(&app));
    ctx.insert(
        "builds",
        &builds.iter().map(BuildRow::from).collect::<Vec<_>>(),
    );
    ctx.insert(
        "placement",
        &drift
            .hosts
            .iter()
            .filter(|h| h.app == name)
            .map(PlacementRow::from)
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "deploys",
        &deploys.iter().map(DeployLine::from).collect::<Vec<_>>(),
    );
    ctx.insert("config_known", &config.is_some());
    ctx.insert("config_version", &config.as_ref().map_or(0, |c| c.version));
    ctx.insert(
        "config",
        &config
            .iter()
            .flat_map(|c| c.vars.iter())
            .map(|v| ConfigRow {
                key: v.key.clone(),
                cluster: v.cluster.as_ref().map(ToString::to_string),
                // The API masks secrets; never print a value marked secret
                // even if one arrived.
                value: if v.secret { None } else { v.value.clone() },
                secret: v.secret,
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("rollbacks", &rollback_targets(visitor, &deploys, &clusters));
    state.render_for(visitor, "app.html", ctx)
}

/// The clusters the app was deployed to, for a visitor who may roll back
/// (only their token's cluster, if it is bound to one); nothing for others.
fn rollback_targets(
    visitor: &Visitor,
    deploys: &[Deploy],
    clusters: &[deploy::ClusterSettings],
) -> Vec<RollbackTarget> {
    if !visitor.can_deploy {
        return Vec::new();
    }
    let deployed: BTreeSet<String> = deploys.iter().map(|d| d.cluster.to_string()).collect();
    deployed
        .into_iter()
        .filter(|c| visitor.cluster.as_ref().is_none_or(|mine| mine == c))
        .map(|cluster| RollbackTarget {
            protected: clusters
                .iter()
                .any(|s| s.name.as_str() == cluster && s.protected),
            cluster,
        })
        .collect()
}
