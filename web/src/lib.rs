//! Slipway's dashboard: server-rendered pages over the same HTTP API the CLI
//! uses, with live updates of a running deploy through its event stream.
//!
//! The dashboard holds no state of its own and never touches the database:
//! every page is one or two calls through [`deploy::Client`], turned into a
//! view model and rendered with Tera templates compiled into the binary.
//! Live updates happen in the browser, which subscribes to
//! `/api/v1/deploys/{id}/stream` on the same origin (AppTracker mounts this
//! router next to its API).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use deploy::{Client, ClientError, Deploy, DeployHost, DeployId, Host, HostPhase};
use serde::Serialize;
use tera::{Context, Tera};

/// How many deploys the index page lists.
const RECENT_DEPLOYS: u32 = 50;

/// The templates, embedded so the dashboard ships inside the AppTracker
/// binary with no files to deploy. Names end in `.html` so Tera autoescapes
/// everything they print.
const TEMPLATES: [(&str, &str); 4] = [
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("deploy.html", include_str!("../templates/deploy.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// The dashboard's routes (`/` and `/deploys/{id}`), reading everything
/// through `api`.
///
/// Templates are compiled here, once. A template that does not compile is a
/// programming error that the tests catch (`templates_compile`); should one
/// slip through anyway, the dashboard answers every request with a 500 that
/// names the error instead of panicking, so a broken dashboard never takes
/// AppTracker's API down with it.
pub fn router(api: Client) -> Router {
    match templates() {
        Ok(tera) => Router::new()
            .route("/", get(index))
            .route("/deploys/{id}", get(deploy))
            .with_state(Arc::new(AppState { api, tera })),
        Err(e) => {
            let message = format!("the dashboard's templates do not compile: {e}");
            tracing::error!(error = %message, "dashboard disabled");
            let broken = move || {
                let message = message.clone();
                async move { (StatusCode::INTERNAL_SERVER_ERROR, message) }
            };
            Router::new()
                .route("/", get(broken.clone()))
                .route("/deploys/{id}", get(broken))
        }
    }
}

/// Compiles the embedded templates.
fn templates() -> Result<Tera, tera::Error> {
    let mut tera = Tera::new();
    tera.add_raw_templates(TEMPLATES)?;
    Ok(tera)
}

/// What every handler shares.
struct AppState {
    /// The AppTracker API, the dashboard's only source of data.
    api: Client,
    tera: Tera,
}

impl AppState {
    /// Turns a page's outcome into the response: the page, or the error
    /// page with the status the error calls for.
    fn respond(&self, page: Result<Html<String>, PageError>) -> Response {
        match page {
            Ok(html) => html.into_response(),
            Err(e) => self.error_page(e),
        }
    }

    fn render(&self, template: &str, ctx: &Context) -> Result<Html<String>, PageError> {
        self.tera.render(template, ctx).map(Html).map_err(|source| PageError::Render {
            template: template.to_string(),
            source,
        })
    }
}

// ---------------------------------------------------------------- handlers

/// `GET /`: recent deploys and the host registry.
#[tracing::instrument(skip_all)]
async fn index(State(state): State<Arc<AppState>>) -> Response {
    state.respond(index_page(&state).await)
}

async fn index_page(state: &AppState) -> Result<Html<String>, PageError> {
    let (deploys, hosts) = tokio::join!(state.api.deploys(RECENT_DEPLOYS), state.api.hosts());
    let deploys = deploys.map_err(|e| PageError::upstream("listing deploys", e))?;
    let hosts = hosts.map_err(|e| PageError::upstream("listing hosts", e))?;
    tracing::debug!(deploys = deploys.len(), hosts = hosts.len(), "rendering index");

    let mut ctx = Context::new();
    ctx.insert(
        "deploys",
        &deploys.iter().map(DeployRow::from).collect::<Vec<_>>(),
    );
    ctx.insert("hosts", &hosts.iter().map(HostRow::from).collect::<Vec<_>>());
    state.render("index.html", &ctx)
}

/// `GET /deploys/{id}`: one deploy, host by host, kept live by the browser.
#[tracing::instrument(skip_all, fields(deploy_id = %raw_id))]
async fn deploy(State(state): State<Arc<AppState>>, Path(raw_id): Path<String>) -> Response {
    state.respond(deploy_page(&state, &raw_id).await)
}

async fn deploy_page(state: &AppState, raw_id: &str) -> Result<Html<String>, PageError> {
    // A malformed id names no deploy: the same 404 as an unknown one.
    let id: DeployId = raw_id
        .parse()
        .map_err(|_| PageError::NotFound(format!("there is no deploy {raw_id:?}")))?;
    let deploy = state.api.deploy(id).await.map_err(|e| match e {
        ClientError::Api { status: 404, .. } => {
            PageError::NotFound(format!("there is no deploy #{id}"))
        }
        e => PageError::upstream("fetching the deploy", e),
    })?;
    tracing::debug!(status = %deploy.status, hosts = deploy.hosts.len(), "rendering deploy");

    let mut ctx = Context::new();
    ctx.insert("deploy", &DeployView::from(&deploy));
    ctx.insert("hosts", &deploy.hosts.iter().map(HostView::from).collect::<Vec<_>>());
    state.render("deploy.html", &ctx)
}

// ---------------------------------------------------------------- errors

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
enum PageError {
    /// What the page is about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// AppTracker's API could not be reached or failed.
    #[error("{doing}: {source}")]
    Upstream {
        doing: &'static str,
        #[source]
        source: ClientError,
    },
    /// A template failed at render time: a bug in this crate.
    #[error("rendering {template}: {source}")]
    Render {
        template: String,
        #[source]
        source: tera::Error,
    },
}

impl PageError {
    fn upstream(doing: &'static str, source: ClientError) -> Self {
        PageError::Upstream { doing, source }
    }
}

/// The error page's view model.
#[derive(Serialize)]
struct ErrorView {
    status: u16,
    title: &'static str,
    message: String,
}

impl AppState {
    /// Logs the error once, at the level it deserves, and renders the error
    /// page. Falls back to minimal escaped HTML if even that fails.
    fn error_page(&self, error: PageError) -> Response {
        let (status, title, message) = match &error {
            PageError::NotFound(message) => {
                tracing::info!(%message, "not found");
                (StatusCode::NOT_FOUND, "Not found", message.clone())
            }
            PageError::Upstream { .. } => {
                tracing::warn!(error = %error, "AppTracker API failed");
                (StatusCode::BAD_GATEWAY, "AppTracker API unavailable", error.to_string())
            }
            PageError::Render { .. } => {
                tracing::error!(error = ?error, "dashboard template failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Dashboard error",
                    "the page could not be rendered; the error is in the server's log".to_string(),
                )
            }
        };
        let view = ErrorView {
            status: status.as_u16(),
            title,
            message,
        };
        let mut ctx = Context::new();
        ctx.insert("error", &view);
        let html = match self.tera.render("error.html", &ctx) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(error = ?e, "error page failed to render");
                let mut escaped = Vec::new();
                // Writing into a Vec cannot fail.
                let _ = tera::escape_html(&view.message, &mut escaped);
                format!(
                    "<!DOCTYPE html><title>{status}</title><h1>{title}</h1><p>{}</p>",
                    String::from_utf8_lossy(&escaped)
                )
            }
        };
        (status, Html(html)).into_response()
    }
}

// ---------------------------------------------------------------- view models

/// One line of the recent deploys table.
#[derive(Debug, Serialize)]
struct DeployRow {
    id: i64,
    app: String,
    /// The version, or the git ref it is being built from.
    version: String,
    /// Whether `version` is a git ref still being built.
    building: bool,
    cluster: String,
    selector: String,
    status: &'static str,
    created_at: String,
    /// "2/3 done", plus how many failed.
    progress: String,
}

impl From<&Deploy> for DeployRow {
    fn from(d: &Deploy) -> Self {
        let (version, building) = version_label(d);
        DeployRow {
            id: d.id.0,
            app: d.app.to_string(),
            version,
            building,
            cluster: d.cluster.to_string(),
            selector: d.hosts_selector.to_string(),
            status: d.status.as_str(),
            created_at: d.created_at.to_string(),
            progress: progress(&d.hosts),
        }
    }
}

/// The version to show, or the git ref while the build is pending.
fn version_label(d: &Deploy) -> (String, bool) {
    match (&d.version, &d.git_ref) {
        (Some(v), _) => (v.to_string(), false),
        (None, Some(r)) => (r.clone(), true),
        (None, None) => ("—".to_string(), true),
    }
}

/// "3/3 done", "1/3 done, 2 failed", or "no hosts".
fn progress(hosts: &[DeployHost]) -> String {
    if hosts.is_empty() {
        return "no hosts".to_string();
    }
    let ok = hosts.iter().filter(|h| h.phase.is_success()).count();
    let failed = hosts
        .iter()
        .filter(|h| matches!(h.phase, HostPhase::Failed | HostPhase::TimedOut))
        .count();
    let mut s = format!("{ok}/{} done", hosts.len());
    if failed > 0 {
        s.push_str(&format!(", {failed} failed"));
    }
    s
}

/// One host of the registry table.
#[derive(Debug, Serialize)]
struct HostRow {
    cluster: String,
    name: String,
    apps: Vec<InstalledView>,
    last_seen: String,
}

/// One app a host reports.
#[derive(Debug, Serialize)]
struct InstalledView {
    app: String,
    version: Option<String>,
    port: Option<u16>,
    running: bool,
}

impl From<&Host> for HostRow {
    fn from(h: &Host) -> Self {
        HostRow {
            cluster: h.cluster.to_string(),
            name: h.name.to_string(),
            apps: h
                .apps
                .iter()
                .map(|a| InstalledView {
                    app: a.app.to_string(),
                    version: a.version.as_ref().map(ToString::to_string),
                    port: a.port,
                    running: a.pid.is_some(),
                })
                .collect(),
            last_seen: h.last_seen.to_string(),
        }
    }
}

/// The header of the deploy page.
#[derive(Debug, Serialize)]
struct DeployView {
    id: i64,
    app: String,
    version: String,
    building: bool,
    build_id: Option<i64>,
    cluster: String,
    selector: String,
    status: &'static str,
    /// Whether the page needs no live updates.
    terminal: bool,
    error: Option<String>,
    created_at: String,
    finished_at: Option<String>,
    progress: String,
}

impl From<&Deploy> for DeployView {
    fn from(d: &Deploy) -> Self {
        let (version, building) = version_label(d);
        DeployView {
            id: d.id.0,
            app: d.app.to_string(),
            version,
            building,
            build_id: d.build_id.map(|b| b.0),
            cluster: d.cluster.to_string(),
            selector: d.hosts_selector.to_string(),
            status: d.status.as_str(),
            terminal: d.status.is_terminal(),
            error: d.error.clone(),
            created_at: d.created_at.to_string(),
            finished_at: d.finished_at.map(|t| t.to_string()),
            progress: progress(&d.hosts),
        }
    }
}

/// One host's row on the deploy page; the page's script builds the same
/// row from a `DeployEvent::Host`.
#[derive(Debug, Serialize)]
struct HostView {
    name: String,
    phase: &'static str,
    failed_phase: Option<&'static str>,
    rolled_back: bool,
    message: Option<String>,
    log_tail: Option<String>,
    updated_at: String,
}

impl From<&DeployHost> for HostView {
    fn from(h: &DeployHost) -> Self {
        HostView {
            name: h.host.to_string(),
            phase: h.phase.as_str(),
            failed_phase: h.failed_phase.map(HostPhase::as_str),
            rolled_back: h.rolled_back,
            message: h.message.clone(),
            log_tail: h.log_tail.clone().filter(|t| !t.trim().is_empty()),
            updated_at: h.updated_at.to_string(),
        }
    }
}
