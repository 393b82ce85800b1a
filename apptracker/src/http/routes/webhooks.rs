//! VCS push webhooks (`/api/v1/webhooks/{provider}/{app}`, signed with the
//! app's secret), the apps' webhook secrets, and secret build-trigger URLs.

use axum::extract::State;
use axum::http::StatusCode;
use deploy::ErrorBody;
use deploy::{
    AppName, CreatedWebhookSecret, RequestBuild, SetWebhookSecret, TriggerUrl, WebhookOutcome,
    WebhookSecretInfo,
};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, parse};
use crate::http::openapi::Empty;
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

/// The largest webhook delivery accepted (GitHub's own cap on payloads).
pub(crate) const WEBHOOK_BODY_LIMIT: usize = 25 << 20;

/// VCS webhooks authenticate by their signature, with the app's own secret
/// for the provider, not by a token.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{provider}/{app}", tag = "webhooks",
    summary = "A push from a VCS for one app, signed with the app's secret for that provider",
    params(("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`"),
           ("app" = AppName, Path, description = "The app the delivery is for")),
    request_body(content = serde_json::Value, description = "The provider's push event, signed with the app's webhook secret for the provider (up to 25 MB)"),
    security(()),
    responses((status = 200, description = "Handled (`pong`)", body = WebhookOutcome),
              (status = 202, description = "Accepted: builds (and deploys) started, the event ignored, or a `duplicate` delivery (nothing done)", body = WebhookOutcome),
              (status = 401, description = "`unauthorized`: not signed with the app's secret for the provider", body = ErrorBody),
              (status = 404, description = "`not_found`: no such provider, or the app has no secret for it", body = ErrorBody))
)]
pub(crate) async fn webhook(
    State(t): State<Tracker>,
    note: Note,
    ApiPath((provider, app)): ApiPath<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<WebhookOutcome>), ApiError> {
    let parsed = webhook_provider(&provider)?;
    // The provider it claims to be; the status says whether it proved it.
    note.actor(format!("webhook:{parsed}"), "webhook");
    let app: AppName = parse(&app)?;
    note.app(&app);
    let (taken, out) = crate::webhooks::handle(&t, parsed, &app, &headers, &body).await?;
    note.target(started(&out));
    let status = match taken {
        crate::webhooks::Taken::Answered => StatusCode::OK,
        crate::webhooks::Taken::Accepted => StatusCode::ACCEPTED,
    };
    Ok((status, ApiJson(out)))
}

impl crate::webhooks::Headers for axum::http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

fn webhook_provider(provider: &str) -> Result<deploy::WebhookProvider, ApiError> {
    provider.parse().map_err(|_| {
        ApiError::NotFound(format!(
            "unknown webhook provider `{provider}`: use github, gitlab, gitea or forgejo"
        ))
    })
}

/// The URL of one shared webhook secret, before secrets were per app.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{provider}", tag = "webhooks",
    summary = "Gone: webhooks are per app (`/api/v1/webhooks/{provider}/{app}`)",
    params(("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`")),
    security(()),
    responses((status = 404, description = "`not_found`, saying where webhooks go now", body = ErrorBody))
)]
pub(crate) async fn webhook_without_app(
    note: Note,
    ApiPath(provider): ApiPath<String>,
) -> Result<ApiJson<WebhookOutcome>, ApiError> {
    let parsed = webhook_provider(&provider)?;
    note.actor(format!("webhook:{parsed}"), "webhook");
    Err(ApiError::NotFound(format!(
        "webhooks are per app now: send them to /api/v1/webhooks/{parsed}/APP, signed with \
         the app's own secret (`deploy webhook-secret APP --provider {parsed}` makes it and prints \
         the URL); the shared `webhook_secret_file` is no longer used"
    )))
}

#[utoipa::path(
    get, path = "/api/v1/apps/{app}/webhook-secrets", tag = "webhooks",
    summary = "The providers the app takes webhooks from, and their URLs; never the secrets (admin)",
    params(("app" = AppName, Path, description = "The app's name")),
    responses((status = 200, description = "One entry per provider with a secret", body = Vec<WebhookSecretInfo>))
)]
pub(crate) async fn list_webhook_secrets(
    State(t): State<Tracker>,
    who: Principal,
    ApiPath(app): ApiPath<String>,
) -> Result<ApiJson<Vec<WebhookSecretInfo>>, ApiError> {
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    Ok(ApiJson(crate::webhooks::secrets_info(&t, &app).await?))
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/webhook-secrets/{provider}", tag = "webhooks",
    summary = "Make the app's webhook secret for a provider, or rotate it (the old one keeps working for a grace); the answer holds its only copy (admin)",
    params(("app" = AppName, Path, description = "The app's name"),
           ("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`")),
    request_body(content = Option<SetWebhookSecret>, description = "Optional: no body makes a first secret"),
    responses((status = 201, description = "The secret, shown once, and the URL to configure", body = CreatedWebhookSecret),
              (status = 409, description = "`conflict`: the app has a secret for the provider and `rotate` is not set", body = ErrorBody))
)]
pub(crate) async fn set_webhook_secret(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath((app, provider)): ApiPath<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<CreatedWebhookSecret>), ApiError> {
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    let provider = webhook_provider(&provider)?;
    note.app(&app);
    let req: SetWebhookSecret = if body.iter().all(u8::is_ascii_whitespace) {
        SetWebhookSecret::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))?
    };
    let created = crate::webhooks::set_secret(&t, &app, provider, &req).await?;
    // Never the secret.
    let what = match created.previous_valid_until {
        Some(until) => format!("rotated; the old one is accepted until {until}"),
        None => "made".to_string(),
    };
    note.target(format!("{provider} webhook secret of app {app}: {what}"));
    tracing::info!(%app, %provider, by = %who.name, rotated = created.previous_valid_until.is_some(), "webhook secret set");
    Ok((StatusCode::CREATED, ApiJson(created)))
}

#[utoipa::path(
    delete, path = "/api/v1/apps/{app}/webhook-secrets/{provider}", tag = "webhooks",
    summary = "Stop taking the app's webhooks from a provider: its secrets stop working at once (admin)",
    params(("app" = AppName, Path, description = "The app's name"),
           ("provider" = String, Path, description = "`github`, `gitlab`, `gitea` or `forgejo`")),
    responses((status = 200, description = "Deleted", body = Empty))
)]
pub(crate) async fn delete_webhook_secret(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath((app, provider)): ApiPath<(String, String)>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    let provider = webhook_provider(&provider)?;
    note.app(&app);
    note.target(format!("{provider} webhook secret of app {app}: deleted"));
    crate::webhooks::delete_secret(&t, &app, provider).await?;
    tracing::info!(%app, %provider, by = %who.name, "webhook secret deleted");
    Ok(ApiJson(serde_json::json!({})))
}

/// What a webhook or trigger started, for the audit log.
fn started(out: &WebhookOutcome) -> String {
    let ids = |what: &str, ids: Vec<String>| {
        (!ids.is_empty()).then(|| format!("{what} {}", ids.join(", ")))
    };
    let parts: Vec<String> = [
        ids("builds", out.builds.iter().map(|b| b.to_string()).collect()),
        ids(
            "deploys",
            out.deploys.iter().map(|d| d.to_string()).collect(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if out.result == "skipped" {
        // Why a push built nothing belongs in the record.
        let why: String = out.message.chars().take(300).collect();
        format!("skipped: {why}")
    } else if parts.is_empty() {
        out.result.clone()
    } else {
        format!("{}: {}", out.result, parts.join("; "))
    }
}

#[utoipa::path(
    post, path = "/api/v1/apps/{app}/trigger", tag = "webhooks",
    summary = "A new secret build-trigger URL for the app; any earlier one stops working (admin)",
    params(("app" = AppName, Path, description = "The app's name")),
    responses((status = 201, description = "The URL, shown once", body = TriggerUrl))
)]
pub(crate) async fn new_trigger(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiPath(app): ApiPath<String>,
) -> Result<(StatusCode, ApiJson<TriggerUrl>), ApiError> {
    // Never the URL: it is the credential.
    note.target(format!("new build-trigger URL of app {app}"));
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    let url = crate::webhooks::new_trigger_url(&t, &app).await?;
    tracing::info!(app = %app, by = %who.name, "build-trigger URL made");
    Ok((StatusCode::CREATED, ApiJson(TriggerUrl { url })))
}

/// The secret in the URL is the credential.
#[utoipa::path(
    post, path = "/api/v1/trigger/{secret}", tag = "webhooks",
    summary = "Build the app's branch, or the body's `git_ref` (the URL is the credential)",
    params(("secret" = String, Path, description = "The secret of a build-trigger URL")),
    request_body(content = Option<RequestBuild>, description = "Optional"),
    security(()),
    responses((status = 202, description = "Started", body = WebhookOutcome))
)]
pub(crate) async fn trigger(
    State(t): State<Tracker>,
    note: Note,
    ApiPath(secret): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<WebhookOutcome>), ApiError> {
    note.actor("build-trigger", "trigger");
    let req: RequestBuild = if body.iter().all(u8::is_ascii_whitespace) {
        RequestBuild::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))?
    };
    let (app, out) = crate::webhooks::trigger(&t, &secret, req.git_ref).await?;
    note.app(&app);
    note.target(started(&out));
    Ok((StatusCode::ACCEPTED, ApiJson(out)))
}
