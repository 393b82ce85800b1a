//! The HTTP layer: the API under `/api/v1`, the SSE relays and artifact
//! serving. Handlers (`http/routes/`, one module per resource) parse input
//! into domain types, check who asks (`http/auth.rs`) and call the tracker;
//! [`api_routes`] is the one list of routes, from which both the router and
//! the OpenAPI document are built.
//!
//! This layer may use storage, orchestration and the model; none of them
//! may use it.

mod audit;
mod auth;
pub(crate) mod error;
mod extract;
mod limits;
mod openapi;
mod page;
mod routes;
mod stream;

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::tracker::Tracker;
use error::ApiError;
use routes::{
    agents, apps, artifacts, builds, clusters, config, deploys, drift, events, hosts, metrics,
    notifications, pins, sessions, tokens, webhooks, workers,
};

/// Every route, each registered with the operation its `#[utoipa::path]`
/// annotation describes: the router and the OpenAPI document are built
/// from the same calls, so a route cannot be served undocumented or
/// documented unserved (the test in `http/tests.rs` checks it anyway). Add
/// routes only through `.routes(routes!(..))`.
pub(crate) fn api_routes() -> OpenApiRouter<Tracker> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(apps::register_app, apps::list_apps))
        .routes(routes!(apps::show_app, apps::update_app, apps::remove_app))
        .routes(routes!(builds::request_build, builds::list_builds))
        .routes(routes!(builds::recent_builds))
        .routes(routes!(builds::show_build))
        .routes(routes!(builds::mark_build_bad))
        .routes(routes!(workers::claim_build))
        .routes(routes!(workers::renew_lease))
        .routes(routes!(workers::append_build_log, builds::build_log))
        .routes(routes!(workers::release_build))
        .routes(routes!(workers::upload_artifact))
        .routes(routes!(workers::upload_index))
        // A worker's result carries its build log (which it cuts to fit,
        // `packer::worker::fit_log`): more room than the default 2 MB.
        .routes(
            routes!(workers::build_result).layer(axum::extract::DefaultBodyLimit::max(
                deploy::BUILD_RESULT_BODY_LIMIT,
            )),
        )
        .routes(routes!(deploys::create_deploy, deploys::list_deploys))
        .routes(routes!(deploys::show_deploy))
        .routes(routes!(deploys::cancel_deploy))
        .routes(routes!(deploys::retry_deploy))
        .routes(routes!(deploys::continue_deploy))
        .routes(routes!(clusters::list_clusters))
        .routes(routes!(clusters::show_cluster, clusters::set_cluster))
        .routes(routes!(clusters::freeze_cluster, clusters::thaw_cluster))
        .routes(routes!(config::show_config, config::set_config))
        .routes(routes!(config::unset_config))
        .routes(routes!(config::restart_app))
        .routes(routes!(config::stop_app))
        .routes(routes!(config::start_app))
        .routes(routes!(config::host_config))
        .routes(routes!(config::read_log))
        .routes(routes!(config::answer_log))
        .routes(routes!(
            notifications::create_notification,
            notifications::list_notifications
        ))
        .routes(routes!(notifications::delete_notification))
        .routes(routes!(notifications::list_deliveries))
        .routes(routes!(pins::list_all_pins))
        .routes(routes!(deploys::preview_targets))
        .routes(routes!(pins::rollback_app))
        .routes(routes!(pins::list_pins))
        .routes(routes!(pins::delete_pin))
        .routes(routes!(events::deploy_events))
        .routes(routes!(events::deploy_stream))
        // A failed host's report carries up to 1 MiB of log, which JSON
        // escaping can grow: more room than the default 2 MB.
        .routes(routes!(agents::host_event).layer(axum::extract::DefaultBodyLimit::max(8 << 20)))
        // 100,000 sha256s are about 6.7 MB of JSON.
        .routes(routes!(agents::sources).layer(axum::extract::DefaultBodyLimit::max(8 << 20)))
        .routes(
            routes!(agents::release_phase_asked, agents::release_phase_result)
                .layer(axum::extract::DefaultBodyLimit::max(8 << 20)),
        )
        // GitHub accepts push payloads up to 25 MB: a big push must not
        // be a 413 that silently builds nothing.
        .routes(
            routes!(webhooks::webhook).layer(axum::extract::DefaultBodyLimit::max(
                webhooks::WEBHOOK_BODY_LIMIT,
            )),
        )
        .routes(routes!(webhooks::webhook_without_app))
        .routes(routes!(webhooks::list_webhook_secrets))
        .routes(routes!(
            webhooks::set_webhook_secret,
            webhooks::delete_webhook_secret
        ))
        .routes(routes!(webhooks::new_trigger))
        .routes(routes!(webhooks::trigger))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::delete_token))
        .routes(routes!(routes::audit::list_audit))
        .routes(routes!(hosts::list_hosts))
        .routes(routes!(hosts::remove_host))
        .routes(routes!(agents::heartbeat))
        .routes(routes!(agents::desired))
        .routes(routes!(agents::bus_stream))
        .routes(routes!(artifacts::artifact))
        .routes(routes!(artifacts::blob))
        .routes(routes!(healthz))
        .routes(routes!(openapi_json))
        .routes(routes!(drift::report))
        .routes(routes!(drift::drift))
        .routes(routes!(drift::sync))
        .routes(routes!(metrics::metrics))
        .routes(routes!(sessions::create_session))
        .routes(routes!(sessions::delete_session))
        .routes(routes!(sessions::whoami))
}

/// What the API's middleware and handlers keep beyond the tracker, one
/// per router (so per server, and per test).
#[derive(Default)]
pub(crate) struct Shared {
    /// Anonymous requests counted, and which of them the audit log keeps.
    pub(crate) anonymous: Arc<audit::Anonymous>,
    /// What `/metrics` last read from the database, and when.
    pub(crate) metrics: routes::metrics::Cache,
}

/// The API's router: every route, JSON errors for the rest, the audit log
/// around it all, and around that the request timeout and concurrency
/// limit (`[http]`, `http/limits.rs`).
pub fn api(tracker: Tracker) -> Router {
    let (router, _doc) = api_routes().split_for_parts();
    let shared = Arc::new(Shared::default());
    router
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::Extension(shared.clone()))
        // Around every route and the fallback.
        .layer(axum::middleware::from_fn_with_state(
            (tracker.clone(), shared.anonymous.clone()),
            audit::record,
        ))
        // Outermost: a request over the limit costs nothing further (not
        // even an audit entry).
        .layer(axum::middleware::from_fn_with_state(
            limits::Limits::new(&tracker.config().http),
            limits::limit,
        ))
        .with_state(tracker)
}

/// The whole OpenAPI document, as built from the routes.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(api_routes().into_openapi())
}

/// The document as served (and printed by `apptracker openapi`): generated
/// once.
pub(crate) fn document_json() -> String {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the document: {e}\"}}"))
    });
    JSON.clone()
}

// ---------------------------------------------------------------- meta

/// Liveness: answers while the server runs.
#[utoipa::path(
    get, path = "/healthz", tag = "meta",
    security(()),
    responses((status = 200, content_type = "text/plain", body = String, description = "`ok`"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// This API's OpenAPI 3.1 document, generated from the code that serves it.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    security(()),
    responses((status = 200, description = "The document", body = serde_json::Value))
)]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
