//! Drift, as the tracker sees it: every host's verdict now (the inputs of
//! the drift computation, read from the database), and a sync that deploys
//! the desired version to exactly the hosts that drifted (a normal deploy
//! through `create_deploy_on`).

use std::collections::BTreeMap;

use deploy::drift::{DriftState, SkippedHost, SyncOutcome};
use deploy::report::MAX_REPORT_INTERVAL_MS;

use super::*;
use crate::drift::{Fleet, Inputs, Registered, STALE_AFTER_INTERVALS};

impl Tracker {
    /// Every verdict, now.
    pub async fn fleet(&self) -> Result<Fleet, Error> {
        let now = Timestamp::now();
        let cfg = &self.config().drift;
        let mut inputs = Inputs::new(now, cfg.report_interval);
        // Activity older than three of the longest intervals cannot postdate a
        // report that is not stale, nor keep a silent host out of `stale`.
        let horizon = (STALE_AFTER_INTERVALS * MAX_REPORT_INTERVAL_MS)
            .max(STALE_AFTER_INTERVALS * cfg.report_interval.as_millis() as u64);
        inputs.changes = self
            .db()
            .deploy_changes(Timestamp(now.0 - horizon as i64))
            .await?;
        inputs.desired = self.db().all_desired().await?;
        inputs.in_flight = self.db().in_flight().await?;
        inputs.reports = self.db().reports().await?;
        inputs.registered = self
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
        inputs.known_apps = self
            .db()
            .apps()
            .await?
            .into_iter()
            .map(|a| a.name)
            .collect();
        inputs.limits = cfg.limits.clone();
        Ok(crate::drift::compute(&inputs))
    }

    /// Deploys the desired version to the hosts of `app` on `cluster` that
    /// drifted (drifted, not running or missing): a normal deploy, refused
    /// like any while another deploy of the app to the cluster runs.
    pub async fn sync_drift(
        &self,
        app: &AppName,
        cluster: &Cluster,
        by: &str,
    ) -> Result<SyncOutcome, Error> {
        if self.db().app(app).await?.is_none() {
            return Err(Error::NotFound(format!("unknown app `{app}`")));
        }
        // First: while a deploy runs its hosts show as deploying, and "nothing
        // to sync" would be the wrong answer.
        self.refuse_if_active(app, cluster).await?;
        let fleet = self.fleet().await?;
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
            return Err(Error::refused(
                ErrorCode::NothingToSync,
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
        let origin = Origin {
            hosts: Some(hosts.clone()),
            rollback: true,
            automated: true,
            by: Some(by),
            ..Default::default()
        };
        let deploy = self.create_deploy_on(&req, origin).await?;
        tracing::info!(%app, %cluster, version = %target, deploy_id = %deploy.id, hosts = hosts.len(),
            "drift sync: redeploying the drifted hosts");
        Ok(SyncOutcome {
            deploy,
            hosts,
            left,
        })
    }
}
