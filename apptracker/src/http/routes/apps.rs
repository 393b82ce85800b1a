//! `/api/v1/apps`: registering apps and reading them back; a `git_url`
//! with credentials is refused, and one stored before that rule is masked.

use axum::extract::State;
use axum::http::StatusCode;
use deploy::ErrorBody;
use deploy::{App, AppName, GitRef, PageQuery, RegisterApp};

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
    if req.git_url.trim().is_empty() {
        return Err(ApiError::Invalid("`git_url` must not be empty".into()));
    }
    if let Some(what) = packer::url_credentials(&req.git_url) {
        // Never echo the URL: it holds the secret.
        return Err(ApiError::Invalid(format!(
            "`git_url` must not carry credentials, and this one holds {what}: an app's URL is \
             shown to every viewer and sent to every build worker. Register the URL without them \
             (`https://git.example.com/team/app.git`) and give the credentials to packer: \
             `[git] username` and `password_file` (or `ssh_key_file`) in AppTracker's config, \
             `--git-username` and `--git-password-file` on `packer worker`"
        )));
    }
    let branch = req
        .branch
        .unwrap_or_else(|| crate::tracker::DEFAULT_BRANCH.to_string());
    GitRef::parse(branch.as_str()).map_err(|e| ApiError::Invalid(format!("`branch`: {e}")))?;
    let app = App {
        name: req.name.clone(),
        git_url: req.git_url.clone(),
        branch,
        auto_deploy: req.auto_deploy,
        created_at: deploy::Timestamp::now(),
    };
    match t.db().insert_app(&app).await? {
        Some(app) => {
            tracing::info!(app = %app.name, "app registered");
            Ok((StatusCode::CREATED, ApiJson(shown(app))))
        }
        None => Err(ApiError::Conflict(format!(
            "app `{}` is already registered",
            req.name
        ))),
    }
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
    let apps = t.db().apps_page(after.as_ref(), page::rows(limit)).await?;
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
    let found = t.db().app(&app).await?;
    found
        .map(|a| ApiJson(shown(a)))
        .ok_or_else(|| ApiError::NotFound(format!("unknown app `{app}`")))
}
