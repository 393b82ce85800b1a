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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use deploy::{AppRunStatus, Client, ClientError, Deploy, DeployHost, DeployId, Host, HostPhase};
use serde::Serialize;
use tera::{Context, Tera};

/// How many deploys the index page lists.
const RECENT_DEPLOYS: u32 = 50;

/// The templates, embedded so the dashboard ships inside the AppTracker
/// binary with no files to deploy. Names end in `.html` so Tera autoescapes
/// everything they print.
const TEMPLATES: [(&str, &str); 6] = [
    ("login.html", include_str!("../templates/login.html")),
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("deploy.html", include_str!("../templates/deploy.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("drift.html", include_str!("../templates/drift.html")),
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
        Ok(tera) => {
            // Behind https (the URL the dashboard itself is reached by),
            // cookies are marked Secure so they never travel in clear.
            let secure_cookies = api.base_url().starts_with("https://");
            Router::new()
                .route("/", get(index))
                .route("/deploys/{id}", get(deploy))
                .route("/drift", get(drift))
                .route("/login", get(login_form).post(login))
                .route("/logout", axum::routing::post(logout))
                .route("/static/slipway.css", get(stylesheet))
                .route("/static/deploy.js", get(deploy_script))
                .with_state(Arc::new(AppState {
                    api,
                    tera,
                    secure_cookies,
                }))
                .layer(axum::middleware::map_response(security_headers))
        }
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
    /// Whether cookies get `Secure` (the dashboard is reached over https).
    secure_cookies: bool,
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
        self.tera
            .render(template, ctx)
            .map(Html)
            .map_err(|source| PageError::Render {
                template: template.to_string(),
                source,
            })
    }
}

// ---------------------------------------------------------------- handlers

/// `GET /`: recent deploys and the host registry.
#[tracing::instrument(skip_all)]
async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let api = state.api_for(&headers);
    state.respond(index_page(&state, &api).await)
}

async fn index_page(state: &AppState, api: &Client) -> Result<Html<String>, PageError> {
    let (deploys, hosts, pins, clusters) = tokio::join!(
        api.deploys(RECENT_DEPLOYS),
        api.hosts(),
        api.all_pins(),
        api.clusters()
    );
    let deploys = deploys.map_err(|e| PageError::upstream("listing deploys", e))?;
    let hosts = hosts.map_err(|e| PageError::upstream("listing hosts", e))?;
    let pins = pins.map_err(|e| PageError::upstream("listing pins", e))?;
    let clusters = clusters.map_err(|e| PageError::upstream("listing clusters", e))?;
    tracing::debug!(
        deploys = deploys.len(),
        hosts = hosts.len(),
        "rendering index"
    );

    let mut ctx = Context::new();
    ctx.insert(
        "deploys",
        &deploys.iter().map(DeployRow::from).collect::<Vec<_>>(),
    );
    ctx.insert(
        "hosts",
        &hosts.iter().map(HostRow::from).collect::<Vec<_>>(),
    );
    ctx.insert("pins", &pins);
    let now = deploy::Timestamp::now();
    ctx.insert(
        "clusters",
        &clusters
            .iter()
            .map(|c| ClusterRow::new(c, now))
            .filter(|c| c.protected || c.frozen_until.is_some())
            .collect::<Vec<_>>(),
    );
    state.render("index.html", &ctx)
}

/// `GET /deploys/{id}`: one deploy, host by host, kept live by the browser.
#[tracing::instrument(skip_all, fields(deploy_id = %raw_id))]
async fn deploy(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let api = state.api_for(&headers);
    state.respond(deploy_page(&state, &api, &raw_id).await)
}

async fn deploy_page(
    state: &AppState,
    api: &Client,
    raw_id: &str,
) -> Result<Html<String>, PageError> {
    // A malformed id names no deploy: the same 404 as an unknown one.
    let id: DeployId = raw_id
        .parse()
        .map_err(|_| PageError::NotFound(format!("there is no deploy {raw_id:?}")))?;
    let deploy = api.deploy(id).await.map_err(|e| match e {
        ClientError::Api { status: 404, .. } => {
            PageError::NotFound(format!("there is no deploy #{id}"))
        }
        e => PageError::upstream("fetching the deploy", e),
    })?;
    tracing::debug!(status = %deploy.status, hosts = deploy.hosts.len(), "rendering deploy");

    let mut ctx = Context::new();
    ctx.insert("deploy", &DeployView::from(&deploy));
    ctx.insert(
        "hosts",
        &deploy.hosts.iter().map(HostView::from).collect::<Vec<_>>(),
    );
    state.render("deploy.html", &ctx)
}

/// `GET /drift`: the drift table, summary first.
#[tracing::instrument(skip_all)]
async fn drift(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let api = state.api_for(&headers);
    state.respond(drift_page(&state, &api).await)
}

async fn drift_page(state: &AppState, api: &Client) -> Result<Html<String>, PageError> {
    let report = api
        .drift(&deploy::DriftQuery::default())
        .await
        .map_err(|e| PageError::upstream("reading the drift table", e))?;
    let mut ctx = Context::new();
    let summary: Vec<DriftSummaryRow> = report.summary.iter().map(DriftSummaryRow::from).collect();
    ctx.insert("summary", &summary);
    ctx.insert(
        "hosts",
        &report.hosts.iter().map(DriftRow::from).collect::<Vec<_>>(),
    );
    state.render("drift.html", &ctx)
}

/// One app on one cluster in the drift summary.
#[derive(Serialize)]
struct DriftSummaryRow {
    app: String,
    cluster: String,
    desired: String,
    counts: deploy::drift::DriftCounts,
}

impl From<&deploy::DriftSummary> for DriftSummaryRow {
    fn from(s: &deploy::DriftSummary) -> Self {
        let desired: Vec<String> = s.desired.iter().map(|v| v.to_string()).collect();
        Self {
            app: s.app.to_string(),
            cluster: s.cluster.to_string(),
            desired: desired.join(", "),
            counts: s.counts,
        }
    }
}

/// One app on one host in the drift table.
#[derive(Serialize)]
struct DriftRow {
    cluster: String,
    host: String,
    app: String,
    state: &'static str,
    desired: String,
    current: String,
    process: String,
    disk: String,
    reason: String,
    over_limits: Vec<String>,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl From<&deploy::DriftHost> for DriftRow {
    fn from(h: &deploy::DriftHost) -> Self {
        let v = |v: &Option<deploy::Version>| v.as_ref().map_or("-".into(), |v| v.to_string());
        Self {
            cluster: h.cluster.to_string(),
            host: h.host.to_string(),
            app: h.app.to_string(),
            state: h.state.as_str(),
            desired: v(&h.desired),
            current: v(&h.current),
            process: h.process.as_ref().map_or("-".into(), |p| {
                format!(
                    "pid {}, up {}, {}",
                    p.pid,
                    humantime::format_duration(std::time::Duration::from_secs(p.uptime_ms / 1000)),
                    mib(p.rss_bytes)
                )
            }),
            disk: h.disk.map_or("-".into(), |d| mib(d.total())),
            reason: h.reason.clone(),
            over_limits: h
                .over_limits
                .iter()
                .map(|b| {
                    format!(
                        "{} {} over its {} limit",
                        b.resource,
                        mib(b.used_bytes),
                        mib(b.limit_bytes)
                    )
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- sign-in

/// The cookie holding the dashboard session (`sls_…`, never an API token).
/// AppTracker accepts it for reads, so the page's live stream
/// authenticates the same way; the dashboard forwards it as a bearer.
const SESSION_COOKIE: &str = "slipway_session";

/// The sign-in form's anti-forgery value, also in a hidden field: a form
/// posted from another site cannot carry this SameSite cookie, so it cannot
/// sign a visitor in as someone else (login CSRF).
const LOGIN_CSRF_COOKIE: &str = "slipway_login_csrf";

/// A cookie's value from the request, if sent.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The credential a request carries: `Authorization: Bearer`, else the
/// session cookie.
fn request_credential(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    cookie(headers, SESSION_COOKIE).map(str::to_string)
}

impl AppState {
    /// The API client acting with the visitor's session (or token).
    fn api_for(&self, headers: &HeaderMap) -> Client {
        match request_credential(headers) {
            Some(t) => self.api.clone().with_token(t),
            None => self.api.clone(),
        }
    }

    /// A cookie with the attributes every dashboard cookie has: HttpOnly,
    /// SameSite=Strict, and Secure when the dashboard is served over https.
    fn cookie(&self, name: &str, value: &str, path: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure_cookies {
            c.push_str("; Secure");
        }
        c
    }

    /// The sign-in page, with a fresh anti-forgery value in its form and
    /// cookie.
    fn login_page(&self, status: StatusCode, error: Option<&str>) -> Response {
        let csrf = match random_hex() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for the sign-in form");
                return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
            }
        };
        let mut ctx = Context::new();
        ctx.insert("csrf", &csrf);
        if let Some(error) = error {
            ctx.insert("error", error);
        }
        let page = self.render("login.html", &ctx);
        let cookie = self.cookie(LOGIN_CSRF_COOKIE, &csrf, "/login", Some(600));
        (status, [(header::SET_COOKIE, cookie)], self.respond(page)).into_response()
    }
}

/// 128 random bits as hex.
fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `GET /login`
async fn login_form(State(state): State<Arc<AppState>>) -> Response {
    state.login_page(StatusCode::OK, None)
}

/// `POST /login`: checks the form came from our own sign-in page, then
/// exchanges the token for a dashboard session kept in an HttpOnly cookie.
/// The token itself is never stored in the browser.
async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    let same_form = !expected.is_empty()
        && expected.len() == form.csrf.len()
        && expected
            .bytes()
            .zip(form.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same_form {
        tracing::info!("sign-in refused: the form did not come from this dashboard's sign-in page");
        return state.login_page(
            StatusCode::FORBIDDEN,
            Some("this sign-in form expired or came from another site: sign in again here"),
        );
    }
    let token = form.token.trim().to_string();
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return state.login_page(
            StatusCode::UNAUTHORIZED,
            Some("that is not an API token (they look like slp_ and 40 hex digits)"),
        );
    }
    let session = match state.api.clone().with_token(token).create_session().await {
        Ok(session) => session,
        Err(ClientError::Api {
            status: 401 | 403,
            message,
            ..
        }) => {
            tracing::info!(%message, "sign-in refused");
            return state.login_page(
                StatusCode::UNAUTHORIZED,
                Some("that token is unknown, revoked or may not read the dashboard"),
            );
        }
        Err(e) => return state.error_page(PageError::upstream("opening a session", e)),
    };
    let max_age =
        u64::try_from(session.expires_at.0 - deploy::Timestamp::now().0).unwrap_or(0) / 1000;
    let cookie = state.cookie(SESSION_COOKIE, &session.session, "/", Some(max_age));
    let clear_csrf = state.cookie(LOGIN_CSRF_COOKIE, "", "/login", Some(0));
    // Appended: a plain header array would keep only the last Set-Cookie.
    (
        axum::response::AppendHeaders([
            (header::SET_COOKIE, cookie),
            (header::SET_COOKIE, clear_csrf),
        ]),
        Redirect::to("/"),
    )
        .into_response()
}

/// `POST /logout`: closes the session on the server, then forgets it. The
/// session cookie is SameSite=Strict, so another site's form cannot close
/// it.
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.api.clone().with_token(session).delete_session().await
    {
        // An expired or already closed session is fine: it is gone.
        tracing::info!(error = %e, "the session could not be closed on the server");
    }
    let cookie = state.cookie(SESSION_COOKIE, "", "/", Some(0));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

// ---------------------------------------------------------------- static files and headers

/// The stylesheet and the deploy page's script: files, not inline, so the
/// Content-Security-Policy can forbid every inline script and style.
const STYLESHEET: &str = include_str!("../static/slipway.css");
const DEPLOY_SCRIPT: &str = include_str!("../static/deploy.js");

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLESHEET)
}

async fn deploy_script() -> Response {
    static_file("text/javascript; charset=utf-8", DEPLOY_SCRIPT)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// What the dashboard's pages may load and who may frame them: only this
/// origin's own files, no inline script or style, no frames (clickjacking),
/// forms posted only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every dashboard response.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    resp
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
            PageError::Upstream {
                source: ClientError::Api { status: 401, .. },
                ..
            } => return Redirect::to("/login").into_response(),
            PageError::Upstream {
                source:
                    ClientError::Api {
                        status: 403,
                        message,
                        ..
                    },
                ..
            } => (StatusCode::FORBIDDEN, "Not allowed", message.clone()),
            PageError::Upstream { .. } => {
                tracing::warn!(error = %error, "AppTracker API failed");
                (
                    StatusCode::BAD_GATEWAY,
                    "AppTracker API unavailable",
                    error.to_string(),
                )
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

/// A cluster with deploy controls, on the index page.
#[derive(Debug, Serialize)]
struct ClusterRow {
    name: String,
    protected: bool,
    /// Set while a freeze is in force.
    frozen_until: Option<String>,
    freeze_reason: Option<String>,
    frozen_by: Option<String>,
}

impl ClusterRow {
    fn new(c: &deploy::ClusterSettings, now: deploy::Timestamp) -> Self {
        let frozen = c.frozen_at(now);
        ClusterRow {
            name: c.name.to_string(),
            protected: c.protected,
            frozen_until: frozen.map(|t| t.to_string()),
            freeze_reason: frozen.and(c.freeze_reason.clone()),
            frozen_by: frozen.and(c.frozen_by.clone()),
        }
    }
}

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
    let count = |phases: &[HostPhase]| hosts.iter().filter(|h| phases.contains(&h.phase)).count();
    let failed = count(&[HostPhase::Failed, HostPhase::TimedOut]);
    // A host that is down is not an app that failed: said apart.
    let unreachable = count(&[HostPhase::Unreachable]);
    let mut s = format!("{ok}/{} done", hosts.len());
    if failed > 0 {
        s.push_str(&format!(", {failed} failed"));
    }
    if unreachable > 0 {
        s.push_str(&format!(", {unreachable} unreachable"));
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
    /// `restarting` or `failing` (with its restarts), else nothing.
    trouble: Option<String>,
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
                    trouble: match a.status {
                        AppRunStatus::Restarting | AppRunStatus::Failing => {
                            Some(format!("{} ({} restarts)", a.status, a.restarts))
                        }
                        AppRunStatus::Running | AppRunStatus::Stopped => None,
                    },
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
    requested_by: Option<String>,
    retry_of: Option<i64>,
    rollback_of: Option<i64>,
    /// Waiting for `deploy continue`.
    paused: bool,
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
            requested_by: d.requested_by.clone(),
            retry_of: d.retry_of.map(|d| d.0),
            rollback_of: d.rollback_of.map(|d| d.0),
            paused: d.paused_at.is_some() && !d.status.is_terminal(),
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

#[cfg(test)]
mod tests {
    //! Rendering tests against a stub of AppTracker's API serving canned
    //! JSON; the end-to-end test against the real server lives in `tests/`.

    use super::*;

    use axum::Json;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    const MALICIOUS_LOG: &str = "step 3 failed\n</pre><script>alert(\"pwned\")</script>";
    const MALICIOUS_SELECTOR: &str = "<img src=x onerror=alert(1)>";

    fn host(name: &str, phase: &str) -> Value {
        json!({
            "host": name, "phase": phase, "failed_phase": null, "rolled_back": false,
            "message": null, "log_tail": null, "updated_at": 1_700_000_100_000_i64,
        })
    }

    /// Deploy 7: running, one host done, one failed with a hostile log
    /// tail, one still checking.
    fn running_deploy() -> Value {
        let mut failed = host("local-2", "failed");
        failed["failed_phase"] = json!("checking");
        failed["rolled_back"] = json!(true);
        failed["message"] = json!("health check failed: <b>connection refused</b>");
        failed["log_tail"] = json!(MALICIOUS_LOG);
        json!({
            "id": 7, "app": "hello-python", "version": "3-abcdef1", "git_ref": "main",
            "build_id": 3, "cluster": "local", "hosts_selector": MALICIOUS_SELECTOR,
            "status": "running", "error": null,
            "created_at": 1_700_000_000_000_i64, "finished_at": null,
            "hosts": [host("local-1", "done"), failed, host("local-3", "checking")],
        })
    }

    /// Deploy 8: still waiting for its build, so it has a git ref but no
    /// version yet, and no hosts.
    fn building_deploy() -> Value {
        json!({
            "id": 8, "app": "hello-node", "version": null, "git_ref": "feature/x",
            "build_id": null, "cluster": "local", "hosts_selector": ".*",
            "status": "building", "error": null,
            "created_at": 1_700_000_200_000_i64, "finished_at": null, "hosts": [],
        })
    }

    fn hosts() -> Value {
        json!([{
            "cluster": "local", "name": "local-1", "root": "/srv/slipway",
            "registered_at": 1_699_000_000_000_i64, "last_seen": 1_700_000_300_000_i64,
            "apps": [
                {"app": "hello-python", "version": "3-abcdef1", "pid": 4242, "port": 8000},
                {"app": "crashy", "version": "1-0000000", "pid": null, "port": null,
                 "status": "failing", "restarts": 6},
            ],
        }])
    }

    fn pins() -> Value {
        json!([{
            "app": "hello-python", "cluster": "prod", "version": "2-1234567",
            "pinned_by": "alice", "reason": "rolled back from 3-abcdef1 (deploy 7) <script>",
            "pinned_at": 1_700_000_100_000_i64,
        }])
    }

    /// `prod` protected and frozen far into the future; `old` was frozen
    /// once, long ago, and is shown nowhere.
    fn clusters() -> Value {
        json!([
            {"name": "old", "protected": false, "frozen_until": 1_000_i64,
             "freeze_reason": "long over", "frozen_by": "bob",
             "updated_by": "bob", "updated_at": 1_000_i64},
            {"name": "prod", "protected": true, "frozen_until": 9_999_999_999_999_i64,
             "freeze_reason": "Black Friday", "frozen_by": "carol",
             "updated_by": "carol", "updated_at": 1_700_000_000_000_i64},
        ])
    }

    #[tokio::test]
    async fn index_shows_pins_freezes_and_protection() {
        let (status, body) = fetch(dashboard().await, "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let pin = body.split(r#"<tr class="pin">"#).nth(1).expect("a pin row");
        assert!(
            pin.contains("pinned to <span class=\"mono\">2-1234567</span>"),
            "{pin}"
        );
        assert!(
            pin.contains("alice") && pin.contains("&lt;script&gt;"),
            "{pin}"
        );
        let freeze = body
            .split(r#"<tr class="freeze">"#)
            .nth(1)
            .expect("a freeze row");
        assert!(
            freeze.contains("prod") && freeze.contains("Black Friday") && freeze.contains("carol"),
            "{freeze}"
        );
        assert!(
            body.contains(r#"<tr class="protection"><td>every app</td><td>prod</td>"#),
            "{body}"
        );
        assert!(
            !body.contains("long over"),
            "an ended freeze is not shown: {body}"
        );
    }

    /// Two hosts of hello-python: one in sync, one drifted with a reason
    /// that carries markup, and over its disk limit.
    fn drift_report() -> Value {
        let row = |host: &str, state: &str, current: &str, reason: &str| {
            json!({
                "cluster": "local", "host": host, "app": "hello-python", "state": state,
                "reason": reason, "desired": "3-abcdef1", "desired_deploy": 7,
                "current": current, "process": {"pid": 4242, "version": current,
                "uptime_ms": 90_000, "rss_bytes": 10_485_760, "cpu_ms": 10},
                "restarts": 0, "disk": {"releases_bytes": 1_048_576, "shared_bytes": 0,
                "logs_bytes": 0}, "reported_at": 1_700_000_300_000_i64, "over_limits": [],
            })
        };
        let mut drifted = row(
            "local-2",
            "drifted",
            "2-0000000",
            "`current` names <b>2-0000000</b>",
        );
        drifted["over_limits"] =
            json!([{"resource": "disk", "used_bytes": 3_145_728, "limit_bytes": 1_048_576}]);
        json!({
            "generated_at": 1_700_000_300_000_i64,
            "summary": [{"app": "hello-python", "cluster": "local", "desired": ["3-abcdef1"],
                "counts": {"in_sync": 1, "drifted": 1, "not_running": 0, "missing": 0,
                "stale": 0, "unknown_app": 0, "deploying": 0, "over_limit": 1}}],
            "hosts": [row("local-1", "in-sync", "3-abcdef1", "runs 3-abcdef1 (deploy 7), pid 4242"), drifted],
            "agents": [],
        })
    }

    #[tokio::test]
    async fn drift_page_shows_the_summary_and_each_hosts_reason() {
        let (status, body) = fetch(dashboard().await, "/drift").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(r#"<table id="drift-summary">"#), "{body}");
        assert!(
            body.contains(r#"<span class="badge drift-drifted">drifted</span>"#),
            "{body}"
        );
        assert!(
            body.contains("`current` names &lt;b&gt;2-0000000&lt;&#x2F;b&gt;")
                || body.contains("`current` names &lt;b&gt;2-0000000&lt;/b&gt;"),
            "escaped: {body}"
        );
        assert!(
            body.contains("disk 3.0 MiB over its 1.0 MiB limit"),
            "{body}"
        );
        assert!(body.contains("pid 4242, up 1m 30s, 10.0 MiB"), "{body}");
    }

    fn not_found(what: &str) -> (StatusCode, Json<Value>) {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"code": "not_found", "message": format!("no {what}")})),
        )
    }

    /// Serves canned answers on a port-0 listener and returns its base URL.
    async fn spawn_stub(deploys: Value, hosts: Value) -> String {
        let list = deploys.clone();
        let stub = Router::new()
            .route("/api/v1/deploys", get(move || async move { Json(list) }))
            .route(
                "/api/v1/deploys/{id}",
                get(move |Path(id): Path<i64>| async move {
                    if id == 500 {
                        let body = json!({"code": "internal", "message": "database is locked"});
                        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body));
                    }
                    let found = deploys
                        .as_array()
                        .and_then(|ds| ds.iter().find(|d| d["id"] == json!(id)).cloned());
                    match found {
                        Some(d) => (StatusCode::OK, Json(d)),
                        None => not_found("such deploy"),
                    }
                }),
            )
            .route("/api/v1/hosts", get(move || async move { Json(hosts) }))
            .route("/api/v1/pins", get(|| async { Json(pins()) }))
            .route("/api/v1/clusters", get(|| async { Json(clusters()) }))
            .route("/api/v1/drift", get(|| async { Json(drift_report()) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stub listener");
        let addr = listener.local_addr().expect("stub address");
        tokio::spawn(async move { axum::serve(listener, stub).await });
        format!("http://{addr}")
    }

    async fn dashboard() -> Router {
        let url = spawn_stub(json!([building_deploy(), running_deploy()]), hosts()).await;
        router(Client::new(url))
    }

    /// A URL nothing listens on: bind a port, then free it.
    async fn dead_api() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        format!("http://{addr}")
    }

    async fn fetch(app: Router, path: &str) -> (StatusCode, String) {
        let req = Request::get(path).body(Body::empty()).expect("request");
        let resp = app.oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("read body");
        (
            status,
            String::from_utf8(bytes.to_vec()).expect("utf-8 page"),
        )
    }

    #[test]
    fn templates_compile() {
        templates().expect("the embedded templates must compile");
    }

    #[test]
    fn progress_counts_successes_and_failures() {
        let h = |phase| DeployHost {
            host: deploy::HostName::parse("h").expect("valid"),
            phase,
            failed_phase: None,
            rolled_back: false,
            message: None,
            log_tail: None,
            updated_at: deploy::Timestamp(0),
            batch: 0,
        };
        assert_eq!(progress(&[]), "no hosts");
        let all = [
            h(HostPhase::Done),
            h(HostPhase::Skipped),
            h(HostPhase::Done),
        ];
        assert_eq!(progress(&all), "3/3 done");
        let mixed = [
            h(HostPhase::Done),
            h(HostPhase::TimedOut),
            h(HostPhase::Checking),
            h(HostPhase::Unreachable),
        ];
        assert_eq!(progress(&mixed), "1/4 done, 1 failed, 1 unreachable");
    }

    #[tokio::test]
    async fn index_lists_deploys_with_links_and_hosts() {
        let (status, body) = fetch(dashboard().await, "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(r#"<a href="/deploys/7">#7</a>"#), "{body}");
        assert!(body.contains(r#"<a href="/deploys/8">#8</a>"#), "{body}");
        assert!(body.contains("hello-python") && body.contains("3-abcdef1"));
        assert!(
            body.contains(r#"<span class="badge status-failed">failing (6 restarts)</span>"#),
            "{body}"
        );
        // While building, the git ref stands in for the version.
        assert!(body.contains(">feature/x</span>"), "{body}");
        assert!(body.contains(r#"class="badge status-running""#), "{body}");
        assert!(body.contains("1/3 done, 1 failed"), "{body}");
        assert!(
            body.contains("2023-11-14T22:13:20Z"),
            "created time: {body}"
        );
        // The selector is user input: escaped, never markup.
        assert!(!body.contains(MALICIOUS_SELECTOR), "{body}");
        assert!(
            body.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{body}"
        );
        // The hosts table: cluster, name, app with version and port.
        assert!(body.contains(r#"<table id="hosts">"#), "{body}");
        assert!(body.contains("local-1") && body.contains(":8000"), "{body}");
        assert!(!body.contains("No deploys yet"));
    }

    #[tokio::test]
    async fn index_empty_states_say_what_to_do() {
        let url = spawn_stub(json!([]), json!([])).await;
        let (status, body) = fetch(router(Client::new(url)), "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.contains("deploy release hello-python main --cluster local --wait"),
            "{body}"
        );
        assert!(body.contains("No hosts have checked in"), "{body}");
        assert!(!body.contains(r#"<table id="deploys">"#), "{body}");
    }

    #[tokio::test]
    async fn deploy_page_has_a_row_per_host_with_its_phase() {
        let (status, body) = fetch(dashboard().await, "/deploys/7").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body.matches(r#"<tr id="host-"#).count(), 3, "{body}");
        for (host, phase) in [
            ("local-1", "done"),
            ("local-2", "failed"),
            ("local-3", "checking"),
        ] {
            let row_start = body
                .find(&format!(r#"<tr id="host-{host}""#))
                .unwrap_or_else(|| panic!("no row for {host}: {body}"));
            let row = &body[row_start..];
            let row = &row[..row.find("</tr>").expect("row ends")];
            assert!(
                row.contains(&format!(
                    r#"<span class="phase phase-{phase}" data-phase="{phase}">{phase}</span>"#
                )),
                "{host} should be {phase}: {row}"
            );
        }
        assert!(body.contains(r#"class="badge status-running" data-status="running""#));
        assert!(
            body.contains(r#"<td class="failed-phase">checking</td>"#),
            "{body}"
        );
        assert!(
            body.contains(r#"<td class="rolled-back">yes</td>"#),
            "{body}"
        );
        // Live updates come from the page's script file, which finds the
        // deploy by the heading's id (no inline script: the CSP forbids it).
        assert!(body.contains(r#"data-deploy-id="7""#), "{body}");
        assert!(
            body.contains(r#"<script src="/static/deploy.js" defer></script>"#),
            "{body}"
        );
        assert!(!body.contains("<script>"), "no inline script: {body}");
        assert!(DEPLOY_SCRIPT.contains("new EventSource('/api/v1/deploys/' + ID + '/stream')"));
        assert!(DEPLOY_SCRIPT.contains("getAttribute('data-deploy-id')"));
    }

    #[tokio::test]
    async fn pages_forbid_framing_and_inline_script_and_serve_their_files() {
        let app = dashboard().await;
        for path in ["/", "/deploys/7", "/drift", "/login", "/deploys/999"] {
            let req = Request::get(path).body(Body::empty()).expect("request");
            let resp = app.clone().oneshot(req).await.expect("infallible");
            let h = resp.headers();
            assert_eq!(
                h.get(header::CONTENT_SECURITY_POLICY)
                    .and_then(|v| v.to_str().ok()),
                Some(CONTENT_SECURITY_POLICY),
                "{path}"
            );
            assert_eq!(
                h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
                Some(&b"DENY"[..])
            );
            assert_eq!(
                h.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
                Some(&b"nosniff"[..])
            );
        }
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        for (path, kind, needle) in [
            ("/static/deploy.js", "text/javascript", "EventSource"),
            ("/static/slipway.css", "text/css", ".phase-done"),
        ] {
            let req = Request::get(path).body(Body::empty()).expect("request");
            let resp = app.clone().oneshot(req).await.expect("infallible");
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let ct = resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii");
            assert!(ct.starts_with(kind), "{path}: {ct}");
            let (_, body) = fetch(app.clone(), path).await;
            assert!(body.contains(needle), "{path}");
        }
        // No template keeps an inline script or style the CSP would block.
        for (name, text) in TEMPLATES {
            assert!(
                !text.contains("<script>") && !text.contains("<style"),
                "{name}"
            );
            assert!(!text.contains("style=\""), "{name}");
        }
    }

    #[tokio::test]
    async fn cookies_are_secure_behind_https() {
        let set_cookie = |app: Router| async move {
            let req = Request::get("/login").body(Body::empty()).expect("request");
            let resp = app.oneshot(req).await.expect("infallible");
            resp.headers()[header::SET_COOKIE]
                .to_str()
                .expect("ascii")
                .to_string()
        };
        let c = set_cookie(router(Client::new("https://slipway.example.com"))).await;
        assert!(c.starts_with("slipway_login_csrf="), "{c}");
        assert!(
            c.ends_with("; HttpOnly; SameSite=Strict; Max-Age=600; Secure"),
            "{c}"
        );
        let c = set_cookie(router(Client::new("http://127.0.0.1:8080"))).await;
        assert!(!c.contains("Secure"), "{c}");
    }

    #[tokio::test]
    async fn deploy_page_shows_the_failed_hosts_log_tail_escaped() {
        let (status, body) = fetch(dashboard().await, "/deploys/7").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body.matches(r#"<pre class="log">"#).count(), 1, "{body}");
        assert!(
            body.contains(r#"<pre class="log">step 3 failed"#),
            "log tail shown: {body}"
        );
        assert!(
            !body.contains("<script>alert"),
            "raw script in page: {body}"
        );
        assert!(!body.contains("</pre><script>"), "{body}");
        assert!(body.contains("&lt;/pre&gt;&lt;script&gt;alert("), "{body}");
        assert!(!body.contains("<b>connection refused</b>"), "{body}");
        assert!(
            body.contains("&lt;b&gt;connection refused&lt;/b&gt;"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn deploy_page_while_building_shows_the_git_ref() {
        let (status, body) = fetch(dashboard().await, "/deploys/8").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(">feature/x</span>"), "{body}");
        assert!(body.contains("No host has reported yet."), "{body}");
        assert!(body.contains(r#"data-status="building""#), "{body}");
    }

    #[tokio::test]
    async fn unknown_deploy_is_a_404_page() {
        let (status, body) = fetch(dashboard().await, "/deploys/999").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("there is no deploy #999"), "{body}");

        let (status, body) = fetch(dashboard().await, "/deploys/%3Cb%3E").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(!body.contains("<b>"), "{body}");
    }

    #[tokio::test]
    async fn api_down_is_a_502_page_with_the_error() {
        let app = router(Client::new(dead_api().await));
        for path in ["/", "/deploys/7"] {
            let (status, body) = fetch(app.clone(), path).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {body}");
            assert!(body.contains("cannot reach AppTracker"), "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn api_failing_is_a_502_page_with_its_message() {
        let (status, body) = fetch(dashboard().await, "/deploys/500").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains("database is locked"), "{body}");
    }
}
