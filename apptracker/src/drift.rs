//! Drift: versionchecker reports come in (`POST /api/v1/hosts/report`),
//! the table of what each host should run against what it reports goes out
//! (`GET /api/v1/drift`, computed by `versionchecker::drift`), and a sync
//! deploys the desired version to exactly the hosts that drifted (`POST
//! /api/v1/drift/sync`, a normal deploy through the tracker).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use deploy::drift::{DriftReport, DriftState, SkippedHost, SyncOutcome, SyncRequest};
use deploy::report::{HostReport, MAX_REPORT_INTERVAL_MS, MIN_REPORT_INTERVAL_MS, ReportReceipt};
use deploy::{AppName, Cluster, CreateDeploy, DriftQuery, HostName, Portion, Strategy, Timestamp};
use serde::Deserialize;
use versionchecker::drift::{Fleet, Inputs, Registered, ResourceLimits, STALE_AFTER_INTERVALS};

use crate::audit::Note;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson};
use crate::tracker::Tracker;

/// The most apps one report may list: a host is not a package mirror.
const MAX_APPS_PER_REPORT: usize = 1_000;

/// `[drift]` in AppTracker's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// The reporting interval assumed for a host whose versionchecker never
    /// reported (a reporting host says its own): three of them without a
    /// report make a host `stale`.
    #[serde(deserialize_with = "duration")]
    pub report_interval: Duration,
    /// Per-app disk and memory limits (`[drift.limits.default]`,
    /// `[drift.limits.apps.<app>]`): hosts over them are flagged in the
    /// drift table and in `/metrics`.
    pub limits: ResourceLimits,
    /// Serve `/metrics` without a token, as Prometheus scrapes usually
    /// are; when false it needs a viewer token (`bearer_token_file` in the
    /// scrape config).
    pub metrics_public: bool,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            report_interval: Duration::from_secs(60),
            limits: ResourceLimits::default(),
            metrics_public: true,
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The drift routes and `/metrics`, merged into the API router.
/// The drift routes, documented like every other (see `routes.rs`).
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

/// Every verdict, now.
pub async fn fleet(t: &Tracker) -> Result<Fleet, ApiError> {
    let now = Timestamp::now();
    let cfg = &t.config().drift;
    let mut inputs = Inputs::new(now, cfg.report_interval);
    // Activity older than three of the longest intervals cannot postdate a
    // report that is not stale, nor keep a silent host out of `stale`.
    let horizon = (STALE_AFTER_INTERVALS * MAX_REPORT_INTERVAL_MS)
        .max(STALE_AFTER_INTERVALS * cfg.report_interval.as_millis() as u64);
    inputs.changes = t
        .db()
        .deploy_changes(Timestamp(now.0 - horizon as i64))
        .await?;
    inputs.desired = t.db().all_desired().await?;
    inputs.in_flight = t.db().in_flight().await?;
    inputs.reports = t.db().reports().await?;
    inputs.registered = t
        .db()
        .hosts(None)
        .await?
        .into_iter()
        .map(|h| Registered {
            cluster: h.cluster,
            host: h.name,
            registered_at: h.registered_at,
        })
        .collect();
    inputs.known_apps = t.db().apps().await?.into_iter().map(|a| a.name).collect();
    inputs.limits = cfg.limits.clone();
    Ok(versionchecker::drift::compute(&inputs))
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
pub async fn drift_report(t: &Tracker, q: &DriftQuery) -> Result<DriftReport, ApiError> {
    let f = Filters::parse(q)?;
    let fleet = fleet(t).await?;
    let hosts: Vec<_> = fleet
        .hosts
        .into_iter()
        .filter(|h| f.app.as_ref().is_none_or(|a| &h.app == a))
        .filter(|h| f.cluster.as_ref().is_none_or(|c| &h.cluster == c))
        .collect();
    let summary = versionchecker::drift::summarize(&hosts);
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
async fn drift(
    State(t): State<Tracker>,
    who: Principal,
    crate::error::ApiQuery(q): crate::error::ApiQuery<DriftQuery>,
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
async fn sync(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<SyncRequest>,
) -> Result<(StatusCode, ApiJson<SyncOutcome>), ApiError> {
    note.app(&req.app);
    note.target(format!("drift sync on {}", req.cluster));
    who.require(Role::Deployer)?;
    let out = sync_drift(&t, &req.app, &req.cluster, &who.name).await?;
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

async fn sync_drift(
    t: &Tracker,
    app: &AppName,
    cluster: &Cluster,
    by: &str,
) -> Result<SyncOutcome, ApiError> {
    if t.db().app(app).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown app `{app}`")));
    }
    // First: while a deploy runs its hosts show as deploying, and "nothing
    // to sync" would be the wrong answer.
    t.refuse_if_active(app, cluster).await?;
    let fleet = fleet(t).await?;
    let rows: Vec<_> = fleet
        .hosts
        .into_iter()
        .filter(|h| &h.app == app && &h.cluster == cluster)
        .collect();
    let out_of_sync: Vec<_> = rows.iter().filter(|h| h.state.needs_sync()).collect();
    // The newest desired deploy's version; hosts that should run another
    // (a partial deploy) wait for the next sync: one deploy, one version.
    let Some(target) = out_of_sync
        .iter()
        .filter_map(|h| h.desired.as_ref().zip(h.desired_deploy))
        .max_by_key(|(_, d)| *d)
        .map(|(v, _)| v.clone())
    else {
        let mut counts: BTreeMap<DriftState, usize> = BTreeMap::new();
        for h in &rows {
            *counts.entry(h.state).or_default() += 1;
        }
        let states: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        return Err(ApiError::unprocessable(
            "nothing_to_sync",
            if rows.is_empty() {
                format!("no host runs or should run `{app}` on `{cluster}`")
            } else {
                format!(
                    "no host of `{app}` on `{cluster}` drifted ({})",
                    states.join(", ")
                )
            },
        ));
    };
    let mut hosts: Vec<HostName> = out_of_sync
        .iter()
        .filter(|h| h.desired.as_ref() == Some(&target))
        .map(|h| h.host.clone())
        .collect();
    hosts.sort();
    let left = rows
        .iter()
        .filter(|h| {
            (h.state.needs_sync() && !hosts.contains(&h.host)) || h.state == DriftState::Stale
        })
        .map(|h| SkippedHost {
            host: h.host.clone(),
            state: h.state,
            reason: if h.state == DriftState::Stale {
                format!("not synced, what it runs is not known: {}", h.reason)
            } else {
                format!("sync again once this deploy ends: {}", h.reason)
            },
        })
        .collect();
    let req = CreateDeploy {
        app: app.clone(),
        version: Some(target.clone()),
        git_ref: None,
        cluster: cluster.clone(),
        hosts: None,
        strategy: Strategy::AllAtOnce,
        max_failures: Portion::default(),
        rollback_on_failure: false,
        confirm: None,
        wait: false,
    };
    // The version they should run, confirmed when it was deployed: no
    // typed confirmation, and a freeze lets it through like a rollback.
    let origin = crate::tracker::Origin {
        hosts: Some(hosts.clone()),
        rollback: true,
        automated: true,
        by: Some(by),
        ..Default::default()
    };
    let deploy = t.create_deploy_on(&req, origin).await?;
    tracing::info!(%app, %cluster, version = %target, deploy_id = %deploy.id, hosts = hosts.len(),
        "drift sync: redeploying the drifted hosts");
    Ok(SyncOutcome {
        deploy,
        hosts,
        left,
    })
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

    #[test]
    fn config_reads_limits_and_durations() {
        let c: DriftConfig = toml::from_str(
            "report_interval = \"30s\"\nmetrics_public = false\n[limits.default]\ndisk = \"2GiB\"\n[limits.apps.hello]\nmemory = \"256MiB\"\n",
        )
        .unwrap();
        assert_eq!(c.report_interval, Duration::from_secs(30));
        assert!(!c.metrics_public);
        let hello = AppName::parse("hello").unwrap();
        assert_eq!(c.limits.for_app(&hello).memory.unwrap().0, 256 << 20);
        assert_eq!(c.limits.for_app(&hello).disk.unwrap().0, 2 << 30);
        assert!(toml::from_str::<DriftConfig>("colour = 1").is_err());
    }
}
