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
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use deploy::Client;
use tera::{Context, Tera};

mod actions;
mod apps;
mod assets;
mod audit;
mod builds;
mod error;
mod hosts;
mod notifications;
mod pages;
mod release;
mod signin;
mod views;
mod visitor;

use assets::{deploy_script, page_script, release_script, security_headers, stylesheet};
use error::PageError;
use pages::{deploy, drift, index};
use signin::{login, login_form, logout};

/// How many deploys the index page lists.
const RECENT_DEPLOYS: u32 = 50;

/// The templates, embedded so the dashboard ships inside the AppTracker
/// binary with no files to deploy. Names end in `.html` so Tera autoescapes
/// everything they print.
const TEMPLATES: &[(&str, &str)] = &[
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
                .route("/static/slipway.js", get(page_script))
                .route("/static/release.js", get(release_script))
                .merge(actions::routes())
                .merge(release::routes())
                .merge(hosts::routes())
                .merge(audit::routes())
                .merge(notifications::routes())
                .merge(apps::routes())
                .merge(builds::routes())
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
    // Pages in modules of their own bring their templates along.
    let all = TEMPLATES
        .iter()
        .chain(release::TEMPLATES)
        .chain(hosts::TEMPLATES)
        .chain(audit::TEMPLATES)
        .chain(notifications::TEMPLATES)
        .chain(apps::TEMPLATES)
        .chain(builds::TEMPLATES)
        .copied();
    tera.add_raw_templates(all)?;
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

    /// Renders a signed-in page: its own context plus who the visitor is
    /// (the layout shows their name, and action buttons only to those who
    /// may use them).
    fn render_for(
        &self,
        visitor: &visitor::Visitor,
        template: &str,
        mut ctx: Context,
    ) -> Result<Html<String>, PageError> {
        ctx.insert("visitor", visitor);
        self.render(template, &ctx)
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_actions;
#[cfg(test)]
mod tests_catalog;
#[cfg(test)]
mod tests_fleet;
