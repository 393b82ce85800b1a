//! Drift over HTTP: versionchecker reports come in (`POST
//! /api/v1/hosts/report`), the table of what each host should run against
//! what it reports goes out (`GET /api/v1/drift`), and a sync deploys the
//! desired version to exactly the hosts that drifted (`POST
//! /api/v1/drift/sync`). The tracker reads the inputs and syncs
//! (`tracker/sync.rs`); the computation is `crate::drift`.

use axum::extract::State;
use axum::http::StatusCode;
use deploy::drift::{DriftReport, DriftState, SyncOutcome, SyncRequest};
use deploy::report::{HostReport, ReportReceipt};
use deploy::{AppName, Cluster, DriftQuery, Timestamp};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

/// A versionchecker reports its host. Agents of the host's cluster only
/// (of that host, for a host-bound token).
#[utoipa::path(
    post, path = "/api/v1/hosts/report", tag = "drift",
    summary = "A versionchecker reports what its host runs (agent of the host's cluster)",
    request_body = HostReport,
    responses((status = 200, description = "When the report counts as observed", body = ReportReceipt),
              (status = 400, description = "`invalid_input`", body = deploy::ErrorBody))
)]
pub(crate) async fn report(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(r): ApiJson<HostReport>,
) -> Result<ApiJson<ReportReceipt>, ApiError> {
    who.require_host(&r.cluster, &r.host)?;
    Ok(ApiJson(t.store_report(&r).await?))
}

/// The parsed filters of `GET /api/v1/drift`.
struct Filters {
    app: Option<AppName>,
    cluster: Option<Cluster>,
    states: Vec<DriftState>,
}

impl Filters {
    fn parse(q: &DriftQuery) -> Result<Self, ApiError> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        let app = nonempty(&q.app)
            .map(AppName::parse)
            .transpose()
            .map_err(|e| ApiError::Invalid(format!("`app`: {e}")))?;
        let cluster = nonempty(&q.cluster)
            .map(Cluster::parse)
            .transpose()
            .map_err(|e| ApiError::Invalid(format!("`cluster`: {e}")))?;
        let mut states = Vec::new();
        for s in nonempty(&q.state).iter().flat_map(|s| s.split(',')) {
            let s = s.trim();
            let state = DriftState::parse(s).ok_or_else(|| {
                let names: Vec<&str> = DriftState::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::Invalid(format!(
                    "`state`: unknown state `{s}`; use one or more (comma-separated) of {}",
                    names.join(", ")
                ))
            })?;
            states.push(state);
        }
        Ok(Self {
            app,
            cluster,
            states,
        })
    }
}

/// The drift table, filtered by app, cluster and state; the summary
/// counts every state of what the app and cluster filters keep.
pub(crate) async fn drift_report(t: &Tracker, q: &DriftQuery) -> Result<DriftReport, ApiError> {
    let f = Filters::parse(q)?;
    let fleet = t.fleet().await?;
    let hosts: Vec<_> = fleet
        .hosts
        .into_iter()
        .filter(|h| f.app.as_ref().is_none_or(|a| &h.app == a))
        .filter(|h| f.cluster.as_ref().is_none_or(|c| &h.cluster == c))
        .collect();
    let summary = crate::drift::summarize(&hosts);
    let hosts = hosts
        .into_iter()
        .filter(|h| f.states.is_empty() || f.states.contains(&h.state))
        .collect();
    let agents = fleet
        .agents
        .into_iter()
        .filter(|a| f.cluster.as_ref().is_none_or(|c| &a.cluster == c))
        .collect();
    Ok(DriftReport {
        generated_at: Timestamp::now(),
        summary,
        hosts,
        agents,
    })
}

#[utoipa::path(
    get, path = "/api/v1/drift", tag = "drift",
    summary = "What runs where against what should: per host, with a summary per app and cluster",
    params(DriftQuery),
    responses((status = 200, description = "The drift table", body = DriftReport),
              (status = 400, description = "`invalid_input`: an unknown state or a bad name", body = deploy::ErrorBody))
)]
pub(crate) async fn drift(
    State(t): State<Tracker>,
    who: Principal,
    ApiQuery(q): ApiQuery<DriftQuery>,
) -> Result<ApiJson<DriftReport>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(drift_report(&t, &q).await?))
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
pub(crate) async fn sync(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_parsed_with_clear_errors() {
        let q = DriftQuery {
            app: Some("hello".into()),
            cluster: Some(String::new()),
            state: Some("drifted, not-running".into()),
        };
        let f = Filters::parse(&q).unwrap();
        assert_eq!(f.app.unwrap().as_str(), "hello");
        assert!(f.cluster.is_none(), "an empty filter is no filter");
        assert_eq!(f.states, [DriftState::Drifted, DriftState::NotRunning]);
        let bad = DriftQuery {
            state: Some("sideways".into()),
            ..DriftQuery::default()
        };
        let e = Filters::parse(&bad).err().unwrap().to_string();
        assert!(e.contains("sideways") && e.contains("in-sync"), "{e}");
        let bad = DriftQuery {
            app: Some("Not An App".into()),
            ..DriftQuery::default()
        };
        assert!(Filters::parse(&bad).is_err());
    }
}
