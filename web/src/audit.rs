//! The audit page (`/audit`): every state-changing API request, newest
//! first, filtered by who made it or which app it concerned, a page at a
//! time through the API's cursor.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use deploy::{AppName, AuditEntry, AuditQuery};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::AppState;
use crate::error::PageError;
use crate::views::When;

pub(crate) const TEMPLATES: &[(&str, &str)] =
    &[("audit.html", include_str!("../templates/audit.html"))];

/// Entries per page when the form names no number.
const DEFAULT_LIMIT: u32 = 100;
/// The API's own bounds on the query's fields.
const MAX_LIMIT: u32 = 1000;
const MAX_ACTOR: usize = 100;
const MAX_CURSOR: usize = 512;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/audit", get(audit))
}

/// The filter form as typed: text, parsed by [`AuditFilter::query`] so a
/// bad value gets a page saying what was wrong.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    limit: String,
    #[serde(default)]
    cursor: String,
}

/// The form's values as the page prints them back, and the pager's links.
#[derive(Debug, Serialize)]
struct FilterView {
    actor: String,
    app: String,
    limit: u32,
    /// Set when this is not the first page.
    paged: bool,
    /// The first page of this filter.
    newest: String,
    /// The next (older) page, when there is one.
    older: Option<String>,
}

impl FilterView {
    fn new(query: &AuditQuery, next: Option<&str>) -> Self {
        let actor = query.actor.clone().unwrap_or_default();
        let app = query
            .app
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        let newest = audit_href(&actor, &app, limit, None);
        let older = next.map(|cursor| audit_href(&actor, &app, limit, Some(cursor)));
        FilterView {
            actor,
            app,
            limit,
            paged: query.cursor.is_some(),
            newest,
            older,
        }
    }
}

/// `/audit?…` with the filter's values, empty ones left out.
fn audit_href(actor: &str, app: &str, limit: u32, cursor: Option<&str>) -> String {
    let limit = limit.to_string();
    let pairs = [
        ("actor", actor),
        ("app", app),
        ("limit", limit.as_str()),
        ("cursor", cursor.unwrap_or("")),
    ];
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    format!("/audit?{}", query.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AuditFilter {
    /// The API query the form asks for, or what is wrong with it.
    pub(crate) fn query(&self) -> Result<AuditQuery, PageError> {
        let actor = self.actor.trim();
        if actor.chars().count() > MAX_ACTOR {
            return Err(PageError::BadInput(format!(
                "who: at most {MAX_ACTOR} characters"
            )));
        }
        let app = match self.app.trim() {
            "" => None,
            raw => Some(
                AppName::parse(raw)
                    .map_err(|e| PageError::BadInput(format!("app {raw:?}: {e}")))?,
            ),
        };
        let limit = match self.limit.trim() {
            "" => DEFAULT_LIMIT,
            raw => match raw.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(PageError::BadInput(format!(
                        "per page {raw:?}: a number from 1 to {MAX_LIMIT}"
                    )));
                }
            },
        };
        let cursor = self.cursor.trim();
        if cursor.len() > MAX_CURSOR {
            return Err(PageError::BadInput(format!(
                "cursor: at most {MAX_CURSOR} characters (follow the page's \"older\" link)"
            )));
        }
        Ok(AuditQuery {
            limit: Some(limit),
            before: None,
            cursor: (!cursor.is_empty()).then(|| cursor.to_string()),
            actor: (!actor.is_empty()).then(|| actor.to_string()),
            app,
        })
    }
}

/// One entry as the table shows it.
#[derive(Debug, Serialize)]
struct AuditRow {
    id: i64,
    at: When,
    actor: String,
    /// This actor's entries.
    actor_href: String,
    role: Option<String>,
    method: String,
    /// The path asked for, with the route it matched when it differs.
    path: String,
    route: Option<String>,
    app: Option<String>,
    target: Option<String>,
    peer: Option<String>,
    status: u16,
    /// `ok`, `refused` or `failed`: the status's colour.
    outcome: &'static str,
    error_code: Option<String>,
}

impl From<&AuditEntry> for AuditRow {
    fn from(e: &AuditEntry) -> Self {
        AuditRow {
            id: e.id,
            at: When::from(e.at),
            actor: e.actor.clone(),
            actor_href: format!("/audit?actor={}", query_escape(&e.actor)),
            role: e.role.clone(),
            method: e.method.clone(),
            path: e.path.clone(),
            route: e.route.clone().filter(|r| r != &e.path),
            app: e.app.as_ref().map(ToString::to_string),
            target: e.target.clone(),
            peer: e.peer.clone(),
            status: e.status,
            outcome: match e.status {
                0..=399 => "ok",
                400..=499 => "refused",
                _ => "failed",
            },
            error_code: e.error_code.clone(),
        }
    }
}

/// `GET /audit[?actor=…&app=…&limit=…&cursor=…]`
#[tracing::instrument(skip_all)]
async fn audit(
    State(state): State<Arc<AppState>>,
    form: Result<Query<AuditFilter>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let page = async {
        let Query(form) = form.map_err(|e| PageError::BadInput(e.body_text()))?;
        let (api, visitor) = state.visitor(&headers).await?;
        let query = form.query()?;
        let page = api
            .audit_page(&query)
            .await
            .map_err(|e| PageError::upstream("reading the audit log", e))?;
        let mut ctx = Context::new();
        ctx.insert(
            "entries",
            &page.items.iter().map(AuditRow::from).collect::<Vec<_>>(),
        );
        ctx.insert("filter", &FilterView::new(&query, page.next.as_deref()));
        state.render_for(&visitor, "audit.html", ctx)
    };
    state.respond(page.await)
}
