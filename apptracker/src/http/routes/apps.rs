//! `/api/v1/apps`: registering apps and reading them back; a `git_url`
//! with credentials is refused, and one stored before that rule is masked.

use axum::extract::State;
use axum::http::StatusCode;
use deploy::ErrorBody;
use deploy::{App, AppName, PageQuery, RegisterApp};

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
