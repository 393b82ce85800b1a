//! The drift routes: versionchecker reports come in (`POST
//! /api/v1/hosts/report`), the table of what each host should run against
//! what it reports goes out (`GET /api/v1/drift`), and a sync deploys the
//! desired version to exactly the hosts that drifted (`POST
//! /api/v1/drift/sync`). The tracker does the work (`tracker/sync.rs`).

use axum::extract::State;
use axum::http::StatusCode;
use deploy::drift::{DriftReport, SyncOutcome, SyncRequest};
use deploy::report::{HostReport, MAX_REPORT_INTERVAL_MS, MIN_REPORT_INTERVAL_MS, ReportReceipt};
use deploy::{DriftQuery, Timestamp};

use crate::audit::Note;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson};
use crate::tracker::Tracker;

/// The most apps one report may list: a host is not a package mirror.
const MAX_APPS_PER_REPORT: usize = 1_000;

/// The drift routes and `/metrics`, merged into the API router and
/// documented like every other (see `routes.rs`).
pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<Tracker> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(report))
        .routes(routes!(drift))
        .routes(routes!(sync))
        .routes(routes!(crate::metrics::metrics))
}

/// A versionchecker reports its host. Agents of the host's cluster only
/// (of that host, for a host-bound token).
#[utoipa::path(
    post, path = "/api/v1/hosts/report", tag = "drift",
    summary = "A versionchecker reports what its host runs (agent of the host's cluster)",
    request_body = HostReport,
    responses((status = 200, description = "When the report counts as observed", body = ReportReceipt),
              (status = 400, description = "`invalid_input`", body = deploy::ErrorBody))
)]
async fn report(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(r): ApiJson<HostReport>,
) -> Result<ApiJson<ReportReceipt>, ApiError> {
    who.require_host(&r.cluster, &r.host)?;
    if !(MIN_REPORT_INTERVAL_MS..=MAX_REPORT_INTERVAL_MS).contains(&r.interval_ms) {
        return Err(ApiError::Invalid(format!(
            "`interval_ms` must be between {MIN_REPORT_INTERVAL_MS} and {MAX_REPORT_INTERVAL_MS}, not {}",
            r.interval_ms
        )));
    }
    if r.apps.len() > MAX_APPS_PER_REPORT {
        return Err(ApiError::Invalid(format!(
            "a report lists at most {MAX_APPS_PER_REPORT} apps, not {}",
            r.apps.len()
        )));
    }
    // Dated by this server's clock: host clocks never matter. An age past
    // an interval is a confused agent; it cannot date a report earlier.
    let age = r.age_ms.min(r.interval_ms) as i64;
    let observed_at = Timestamp(Timestamp::now().0 - age);
    t.db().store_report(&r, observed_at).await?;
    tracing::debug!(cluster = %r.cluster, host = %r.host, apps = r.apps.len(), "host reported");
    Ok(ApiJson(ReportReceipt { observed_at }))
}

#[utoipa::path(
    get, path = "/api/v1/drift", tag = "drift",
    summary = "What runs where against what should: per host, with a summary per app and cluster",
    params(DriftQuery),
    responses((status = 200, description = "The drift table", body = DriftReport),
              (status = 400, description = "`invalid_input`: an unknown state or a bad name", body = deploy::ErrorBody))
)]
async fn drift(
    State(t): State<Tracker>,
    who: Principal,
    crate::error::ApiQuery(q): crate::error::ApiQuery<DriftQuery>,
) -> Result<ApiJson<DriftReport>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.drift_report(&q).await?))
}

/// Deploys the desired version to the hosts of the app on the cluster that
/// drifted (drifted, not running or missing): a normal deploy, refused like
/// any while another deploy of the app to the cluster runs.
#[utoipa::path(
    post, path = "/api/v1/drift/sync", tag = "drift",
    summary = "Deploy the desired version to exactly the drifted hosts of an app on a cluster (deployer)",
    request_body = SyncRequest,
    responses((status = 201, description = "The sync's deploy and its hosts", body = SyncOutcome),
              (status = 409, description = "`deploy_in_progress`", body = deploy::ErrorBody),
              (status = 422, description = "`nothing_to_sync`", body = deploy::ErrorBody))
)]
async fn sync(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<SyncRequest>,
) -> Result<(StatusCode, ApiJson<SyncOutcome>), ApiError> {
    note.app(&req.app);
    note.target(format!("drift sync on {}", req.cluster));
    who.require(Role::Deployer)?;
    let out = t.sync_drift(&req.app, &req.cluster, &who.name).await?;
    let version = out
        .deploy
        .version
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default();
    let names: Vec<&str> = out.hosts.iter().map(|h| h.as_str()).collect();
    note.target(format!(
        "deploy {} of {version} to {} drifted host(s) of {}: {}",
        out.deploy.id,
        out.hosts.len(),
        req.cluster,
        names.join(", ")
    ));
    Ok((StatusCode::CREATED, ApiJson(out)))
}
