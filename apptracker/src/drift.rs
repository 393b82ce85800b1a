//! Drift: every host's verdict of what it should run against what its
//! versionchecker reports ([`fleet`], computed by `versionchecker::drift`),
//! and a sync, which deploys the desired version to exactly the hosts that
//! drifted ([`sync_drift`], a normal deploy through the tracker). The
//! routes are `http/routes/drift.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use deploy::drift::{DriftState, SkippedHost, SyncOutcome};
use deploy::report::MAX_REPORT_INTERVAL_MS;
use deploy::{AppName, Cluster, CreateDeploy, HostName, Portion, Strategy, Timestamp};
use serde::Deserialize;
use versionchecker::drift::{Fleet, Inputs, Registered, ResourceLimits, STALE_AFTER_INTERVALS};

use crate::error::ApiError;
use crate::tracker::Tracker;

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

pub(crate) async fn sync_drift(
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
