//! The notifications page (`/notifications`): where deploy events are sent,
//! with each one's last deliveries; admins add and remove them here.
//!
//! AppTracker makes each notification's signing secret and shows it once,
//! in its answer to the creation: so a successful add answers with the
//! page itself, the secret in it, never cached, instead of a redirect that
//! would lose it. The receiver's URL is sealed like a secret (a Slack
//! webhook's path is one): the form takes it in a password field and the
//! API only ever shows its scheme and host.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use deploy::{
    Client, CreateNotification, Notification, NotificationDelivery, NotifyEvent, NotifyFormat,
};
use serde::Serialize;
use tera::Context;

use crate::AppState;
use crate::actions::{Plain, acting, app_name, cluster, field, optional};
use crate::error::PageError;
use crate::views::When;
use crate::visitor::Visitor;

pub(crate) const TEMPLATES: &[(&str, &str)] = &[(
    "notifications.html",
    include_str!("../templates/notifications.html"),
)];

/// Deliveries shown per notification (the API keeps its last 100).
const SHOWN_DELIVERIES: usize = 10;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/notifications", get(list).post(create))
        .route("/notifications/{id}/delete", post(delete))
}

/// One notification on the page.
#[derive(Debug, Serialize)]
struct NotificationView {
    id: i64,
    app: Option<String>,
    cluster: Option<String>,
    /// Scheme and host only, as the API gives it.
    url: String,
    format: &'static str,
    /// Empty: every event.
    events: Vec<&'static str>,
    created_by: String,
    created_at: When,
    deliveries: Vec<DeliveryView>,
    /// Why the deliveries could not be read, if they could not.
    deliveries_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeliveryView {
    id: i64,
    deploy_id: i64,
    event: &'static str,
    status: &'static str,
    attempts: u32,
    last_error: Option<String>,
    created_at: When,
    delivered_at: Option<When>,
}

impl From<&NotificationDelivery> for DeliveryView {
    fn from(d: &NotificationDelivery) -> Self {
        DeliveryView {
            id: d.id,
            deploy_id: d.deploy_id.0,
            event: d.event.as_str(),
            status: d.status.as_str(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            created_at: When::from(d.created_at),
            delivered_at: d.delivered_at.map(When::from),
        }
    }
}

/// An event the form offers.
#[derive(Debug, Serialize)]
struct EventChoice {
    name: &'static str,
    label: &'static str,
}

fn event_choices() -> Vec<EventChoice> {
    NotifyEvent::ALL
        .into_iter()
        .map(|e| EventChoice {
            name: e.as_str(),
            label: match e {
                NotifyEvent::DeployStarted => "started",
                NotifyEvent::DeploySucceeded => "succeeded",
                NotifyEvent::DeployFailed => "failed",
                NotifyEvent::DeployRolledBack => "rolled back",
                NotifyEvent::DeployCancelled => "cancelled",
                NotifyEvent::DriftFound => "drift found",
                NotifyEvent::Unknown => "unknown",
            },
        })
        .collect()
}

/// The secret of the notification just made, shown this once.
#[derive(Serialize)]
struct Created {
    id: i64,
    secret: String,
}

async fn with_deliveries(api: &Client, n: &Notification) -> NotificationView {
    let (deliveries, deliveries_error) = match api.notification_deliveries(n.id).await {
        Ok(ds) => (
            ds.iter()
                .take(SHOWN_DELIVERIES)
                .map(DeliveryView::from)
                .collect(),
            None,
        ),
        Err(e) => {
            tracing::info!(error = %e, notification = n.id, "deliveries not shown");
            (Vec::new(), Some(e.to_string()))
        }
    };
    NotificationView {
        id: n.id,
        app: n.app.as_ref().map(ToString::to_string),
        cluster: n.cluster.as_ref().map(ToString::to_string),
        url: n.url.clone(),
        format: n.format.as_str(),
        events: n.events.iter().map(|e| e.as_str()).collect(),
        created_by: n.created_by.clone(),
        created_at: When::from(n.created_at),
        deliveries,
        deliveries_error,
    }
}

async fn page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
    created: Option<Created>,
) -> Result<Html<String>, PageError> {
    let mut ctx = Context::new();
    let list = match api.notifications().await {
        Ok(list) => list,
        // The notification was made: its secret is shown even so, since
        // it cannot be asked for again.
        Err(e) if created.is_some() => {
            tracing::warn!(error = %e, "notifications not listed after adding one");
            ctx.insert("list_error", &e.to_string());
            Vec::new()
        }
        Err(e) => return Err(PageError::upstream("listing notifications", e)),
    };
    let views = futures::future::join_all(list.iter().map(|n| with_deliveries(api, n))).await;
    ctx.insert("notifications", &views);
    ctx.insert("events", &event_choices());
    ctx.insert("created", &created);
    state.render_for(visitor, "notifications.html", ctx)
}

/// `GET /notifications`
#[tracing::instrument(skip_all)]
async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let outcome = async {
        let (api, visitor) = state.visitor(&headers).await?;
        page(&state, &api, &visitor, None).await
    };
    state.respond(outcome.await)
}

/// The add form, as sent: `events` repeats, so the fields come as pairs.
fn create_request(fields: &[(String, String)]) -> Result<CreateNotification, PageError> {
    let one = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let format = match one("format").trim() {
        "" | "json" => NotifyFormat::Json,
        "slack" => NotifyFormat::Slack,
        other => {
            return Err(PageError::BadInput(format!(
                "format {other:?}: json or slack"
            )));
        }
    };
    let events = fields
        .iter()
        .filter(|(k, _)| k == "events")
        .map(|(_, v)| field("events", v, |raw| raw.parse::<NotifyEvent>()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CreateNotification {
        app: optional("app", one("app"), app_name)?,
        cluster: optional("cluster", one("cluster"), cluster)?,
        url: field("url", one("url"), |raw| Ok(raw.to_string()))?,
        format,
        events,
    })
}

/// `POST /notifications` (admin): fields `csrf`, `app`, `cluster`, `url`,
/// `format` (`json` or `slack`) and `events` (repeated; all when none).
#[tracing::instrument(skip_all)]
async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let outcome = async {
        let Form(fields) = form.map_err(|e| PageError::BadInput(e.body_text()))?;
        let csrf = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str());
        let api = acting(&headers, csrf, &state)?;
        let req = create_request(&fields)?;
        // Who the visitor is, asked before the secret exists so nothing
        // after its making can fail but the list.
        let (_, visitor) = state.visitor(&headers).await?;
        let made = api
            .create_notification(&req)
            .await
            .map_err(|e| PageError::upstream("adding the notification", e))?;
        tracing::info!(notification = made.notification.id, url = %made.notification.url, "notification added from the dashboard");
        let created = Created {
            id: made.notification.id,
            secret: made.secret,
        };
        page(&state, &api, &visitor, Some(created)).await
    };
    match outcome.await {
        // The secret is in this page: never stored by the browser or a
        // proxy.
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(e) => state.error_page(e),
    }
}

/// `POST /notifications/{id}/delete` (admin).
#[tracing::instrument(skip_all)]
async fn delete(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    form: Result<Form<Plain>, FormRejection>,
) -> Response {
    let outcome = async {
        let Ok(Path(raw_id)) = path else {
            return Err(PageError::NotFound("there is no such notification".into()));
        };
        let Form(form) = form.map_err(|e| PageError::BadInput(e.body_text()))?;
        let api = acting(&headers, &form.csrf, &state)?;
        let id: i64 = raw_id
            .parse()
            .map_err(|_| PageError::NotFound(format!("there is no notification {raw_id:?}")))?;
        api.delete_notification(id)
            .await
            .map_err(|e| PageError::upstream("removing the notification", e))?;
        tracing::info!(notification = id, "notification removed from the dashboard");
        Ok(Redirect::to("/notifications").into_response())
    };
    match outcome.await {
        Ok(resp) => resp,
        Err(e) => state.error_page(e),
    }
}
