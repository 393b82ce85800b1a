//! `/api/v1/tokens`: making, listing and revoking API tokens (admin).

use axum::extract::State;
use axum::http::StatusCode;
use deploy::ErrorBody;
use deploy::{CreateToken, CreatedToken, PageQuery, TokenInfo};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::page::{self, Paged};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    summary = "Make an API token; the answer holds its only copy (admin)",
    request_body = CreateToken,
    responses((status = 201, description = "The token", body = CreatedToken),
              (status = 409, description = "`conflict`: the name is taken", body = ErrorBody))
)]
pub(crate) async fn create_token(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, ApiJson<CreatedToken>), ApiError> {
    // The name and role, never the token the answer carries.
    let cluster = req
        .cluster
        .as_ref()
        .map(|c| format!(" of cluster {c}"))
        .unwrap_or_default();
    let host = req
        .host
        .as_ref()
        .map(|h| format!(", host {h}"))
        .unwrap_or_default();
    note.target(format!("token {} ({}{cluster}{host})", req.name, req.role));
    who.require(Role::Admin)?;
    let token = t.create_token_for(&req).await?;
    tracing::info!(token = %req.name, role = %req.role, by = %who.name, "token created");
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedToken {
            name: req.name,
            token,
        }),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    summary = "Tokens by name, never their secret (admin, paged)",
    params(PageQuery),
    responses((status = 200, description = "A page of tokens", body = Vec<TokenInfo>, headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last"))))
)]
pub(crate) async fn list_tokens(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Paged<TokenInfo>, ApiError> {
    who.require(Role::Admin)?;
    let limit = page::limit(q.limit)?;
    let after = page::text_cursor(q.cursor.as_deref())?;
    let tokens = t.queries().tokens(after, page::rows(limit)).await?;
    Ok(Paged::cut(tokens, limit, |t| t.name.clone()))
}

#[utoipa::path(
    delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    summary = "Revoke a token; its event streams end (admin)",
    params(("name" = String, Path, description = "The token's name")),
    responses((status = 204, description = "Revoked"))
)]
pub(crate) async fn delete_token(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    who.require(Role::Admin)?;
    // No token name holds a control character (and PostgreSQL's text
    // cannot hold NUL): such a name is no token, not a query.
    if !name.chars().any(char::is_control) && t.revoke_token(&name).await? {
        tracing::info!(token = %name, by = %who.name, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no token named `{name}`")))
    }
}
