//! Outgoing notifications: `/api/v1/notifications` (made and removed by
//! admins, the secret shown once; listed by viewers, never the secret) and
//! their deliveries.

use axum::extract::State;
use deploy::{
    CreateNotification, CreatedNotification, ErrorBody, Notification, NotificationDelivery,
};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::openapi::Empty;
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

#[utoipa::path(
    post, path = "/api/v1/notifications", tag = "notifications",
    summary = "Send deploy events of an app and cluster (or all) to a URL, signed (admin); the secret is shown once",
    request_body = CreateNotification,
    responses((status = 200, description = "The notification and its signing secret", body = CreatedNotification),
              (status = 400, description = "A bad URL, format or event", body = ErrorBody))
)]
pub(crate) async fn create_notification(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<CreateNotification>,
) -> Result<ApiJson<CreatedNotification>, ApiError> {
    if let Some(app) = &req.app {
        note.app(app);
    }
    // Never the URL's path or query: a Slack webhook's is its credential.
    let host = req
        .url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    note.target(format!("notify {host}"));
    who.require(Role::Admin)?;
    Ok(ApiJson(t.create_notification(&req, &who.name).await?))
}

#[utoipa::path(
    get, path = "/api/v1/notifications", tag = "notifications",
    summary = "Every notification (never its secret)",
    responses((status = 200, description = "The notifications", body = Vec<Notification>))
)]
pub(crate) async fn list_notifications(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<Notification>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.notifications().await?))
}

#[utoipa::path(
    delete, path = "/api/v1/notifications/{id}", tag = "notifications",
    summary = "Stop a notification (admin)",
    params(("id" = i64, Path, description = "The notification's id")),
    responses((status = 200, description = "Removed", body = Empty),
              (status = 404, description = "No such notification", body = ErrorBody))
)]
pub(crate) async fn delete_notification(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(id): ApiPath<i64>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    note.target(format!("notification {id}"));
    who.require(Role::Admin)?;
    t.delete_notification(id).await?;
    Ok(ApiJson(serde_json::json!({})))
}

#[utoipa::path(
    get, path = "/api/v1/notifications/{id}/deliveries", tag = "notifications",
    summary = "A notification's last 100 deliveries, newest first, with their tries",
    params(("id" = i64, Path, description = "The notification's id")),
    responses((status = 200, description = "The deliveries", body = Vec<NotificationDelivery>),
              (status = 404, description = "No such notification", body = ErrorBody))
)]
pub(crate) async fn list_deliveries(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<ApiJson<Vec<NotificationDelivery>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.deliveries(id).await?))
}
