//! `/api/v1/apps`: registering apps, reading them back, changing and
//! removing them; a `git_url` with credentials is refused, and one stored
//! before that rule is masked.

use axum::extract::State;
use axum::http::StatusCode;
use deploy::ErrorBody;
use deploy::{App, AppName, PageQuery, RegisterApp, RemovedApp, UpdateApp};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, parse};
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

#[utoipa::path(
    post, path = "/api/v1/apps", tag = "apps",
    summary = "Register an app by its git repository (admin)",
    request_body = RegisterApp,
    responses((status = 201, description = "Registered", body = App),
              (status = 409, description = "`conflict`: the name is taken", body = ErrorBody))
)]
pub(crate) async fn register_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<RegisterApp>,
) -> Result<(StatusCode, ApiJson<App>), ApiError> {
    // Not the git URL: it may carry credentials.
    note.app(&req.name);
    note.target(format!("app {}", req.name));
    who.require(Role::Admin)?;
    let app = t.register_app(req).await?;
    Ok((StatusCode::CREATED, ApiJson(shown(app))))
}

/// An app as the API shows it: credentials in a `git_url` registered
/// before they were refused are masked (`https://***@host/…`).
fn shown(mut app: App) -> App {
    app.git_url = packer::redact_url(&app.git_url);
    app
}

#[utoipa::path(
    get, path = "/api/v1/apps", tag = "apps",
    summary = "Registered apps, by name (paged)",
    params(PageQuery),
    responses((status = 200, description = "A page of apps", body = Vec<App>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn list_apps(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<App>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page::limit(q.limit)?;
    let after = page::name_cursor::<AppName>(q.cursor.as_deref())?;
    let apps = t
        .queries()
        .apps_page(after.as_ref(), page::rows(limit))
        .await?;
    let apps = apps.into_iter().map(shown).collect();
    Ok(Paged::cut(apps, limit, |a| a.name.to_string()))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}", tag = "apps", summary = "One app",
    params(("app" = AppName, Path, description = "The app's name")),
    responses((status = 200, description = "The app", body = App))
)]
pub(crate) async fn show_app(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
) -> Result<ApiJson<App>, ApiError> {
    who.require(Role::Viewer)?;
    let app: AppName = parse(&app)?;
    let found = t.queries().app(&app).await?;
    found
        .map(|a| ApiJson(shown(a)))
        .ok_or_else(|| ApiError::NotFound(format!("unknown app `{app}`")))
}

#[utoipa::path(
    patch, path = "/api/v1/apps/{app}", tag = "apps",
    summary = "Change an app's branch, auto-deploy rule or new-host policy; fields left out stay (admin)",
    params(("app" = AppName, Path, description = "The app's name")),
    request_body = UpdateApp,
    responses((status = 200, description = "The app as changed", body = App))
)]
pub(crate) async fn update_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
    ApiJson(change): ApiJson<UpdateApp>,
) -> Result<ApiJson<App>, ApiError> {
    let app: AppName = parse(&app)?;
    note.app(&app);
    note.target(format!("change app {app}"));
    who.require(Role::Admin)?;
    let updated = t.update_app(&app, &change).await?;
    // Only once checked: the branch is the caller's text.
    note.target(format!("change app {app}: {}", changed(&change)));
    Ok(ApiJson(shown(updated)))
}

/// What a change sets, for the audit log.
fn changed(change: &UpdateApp) -> String {
    let mut parts = Vec::new();
    if let Some(branch) = &change.branch {
        parts.push(format!("branch {branch}"));
    }
    match &change.auto_deploy {
        None => {}
        Some(None) => parts.push("no auto-deploy".into()),
        Some(Some(rule)) => parts.push(match &rule.hosts {
            Some(hosts) => format!("auto-deploy to {} hosts ~ {hosts}", rule.cluster),
            None => format!("auto-deploy to {}", rule.cluster),
        }),
    }
    if let Some(policy) = change.new_hosts {
        parts.push(format!("new hosts {}", policy.as_str()));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

#[utoipa::path(
    delete, path = "/api/v1/apps/{app}", tag = "apps",
    summary = "Remove an app that runs nowhere, with its builds, deploys, pins, config and secrets; the audit log stays (admin)",
    params(("app" = AppName, Path, description = "The app's name")),
    responses((status = 200, description = "Removed: what went with it", body = RemovedApp),
              (status = 409, description = "`deploy_in_progress`: a deploy of it is queued or under way; `app_running`: hosts run it (the message says which, and what to run first)", body = ErrorBody))
)]
pub(crate) async fn remove_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
) -> Result<ApiJson<RemovedApp>, ApiError> {
    let app: AppName = parse(&app)?;
    note.app(&app);
    note.target(format!("remove app {app}"));
    who.require(Role::Admin)?;
    let removed = t.remove_app(&app).await?;
    note.target(format!(
        "remove app {app} ({} builds, {} deploys)",
        removed.builds, removed.deploys
    ));
    Ok(ApiJson(removed))
}
