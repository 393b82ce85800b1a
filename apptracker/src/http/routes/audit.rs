//! `GET /api/v1/audit`: reading the audit log (the middleware that writes
//! it is `http/audit.rs`).

use axum::extract::State;

use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

/// The audit log, for deployers and admins: it shows who holds which token
/// and acts from where, more than the read-only viewers need.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    params(deploy::AuditQuery),
    responses((status = 200, description = "A page of entries, newest first", body = Vec<deploy::AuditEntry>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn list_audit(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<deploy::AuditQuery>,
) -> Result<Paged<deploy::AuditEntry>, ApiError> {
    who.require(Role::Deployer)?;
    let limit = page::limit(q.limit)?;
    // `before` is the cursor older clients send; the same key.
    let before = match (page::id_cursor(q.cursor.as_deref())?, q.before) {
        (Some(c), _) => Some(c),
        (None, Some(b)) if b > 0 => Some(b),
        (None, Some(b)) => {
            return Err(ApiError::Invalid(format!(
                "`before` must be a positive entry id, not {b}"
            )));
        }
        (None, None) => None,
    };
    let actor = page::text_cursor(q.actor.as_deref())
        .map_err(|_| ApiError::Invalid("`actor` must be a token name".into()))?;
    let entries = t
        .queries()
        .audit(page::rows(limit), before, actor, q.app.as_ref())
        .await?;
    Ok(Paged::cut(entries, limit, |e| e.id.to_string()))
}
