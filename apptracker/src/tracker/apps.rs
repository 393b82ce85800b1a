//! Changing and removing apps, and forgetting retired hosts: the
//! lifecycle's end, refused while it would leave hosts running something
//! AppTracker no longer tracks.

use std::collections::BTreeMap;

use deploy::{App, RemovedApp, RemovedHost, UpdateApp};

use super::*;
use crate::db::{AppRemoval, HostRemoval, RunningOn};

/// Most hosts a refusal names one by one; the rest are counted.
const HOSTS_NAMED: usize = 5;

impl Tracker {
    /// Changes an app's branch, auto-deploy rule or new-host policy, checked
    /// as registration checks them; fields left out stay. Everything that
    /// reads the branch (pushes, the monorepo filter, builds without a ref)
    /// reads it from the app's row, so the change counts from the next
    /// request on.
    pub async fn update_app(&self, app: &AppName, change: &UpdateApp) -> Result<App, Error> {
        if let Some(branch) = &change.branch {
            GitRef::parse_branch(branch.as_str())
                .map_err(|e| Error::Invalid(format!("`branch`: {e}")))?;
        }
        let updated = self
            .db()
            .update_app(app, change)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown app `{app}`")))?;
        tracing::info!(
            app = %app,
            branch = change.branch.as_deref(),
            auto_deploy = ?change.auto_deploy,
            new_hosts = change.new_hosts.map(deploy::NewHostPolicy::as_str),
            "app changed"
        );
        Ok(updated)
    }

    /// Removes an app and what only it owns (see `Db::delete_app`), keeping
    /// the audit log and the artifacts in the store. Refused while a deploy
    /// of it is queued or under way (`deploy_in_progress`), or while a host
    /// runs it or should (`app_running`): removing it then would leave
    /// processes nobody deploys, stops or watches. A stopped app (`deploy
    /// stop`) can be removed; its files stay on the hosts.
    pub async fn remove_app(&self, app: &AppName) -> Result<RemovedApp, Error> {
        match self.db().delete_app(app).await? {
            AppRemoval::NotFound => Err(Error::NotFound(format!("unknown app `{app}`"))),
            AppRemoval::UnderWay(deploys) => Err(Error::refused(
                ErrorCode::DeployInProgress,
                under_way_message(app, &deploys),
            )),
            AppRemoval::Running(hosts) => Err(Error::refused(
                ErrorCode::AppRunning,
                running_message(app, &hosts),
            )),
            AppRemoval::Removed(removed) => {
                tracing::warn!(
                    app = %app,
                    builds = removed.builds,
                    deploys = removed.deploys,
                    "app removed"
                );
                Ok(removed)
            }
        }
    }

    /// Forgets a retired host: its registration, reports, desired state and
    /// drift alerts, so the drift table no longer shows it stale or
    /// missing. Refused while a deploy under way has it in a phase that is
    /// not over. Its agents reporting again bring it back, as a new host.
    pub async fn remove_host(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> Result<RemovedHost, Error> {
        match self.db().delete_host(cluster, host).await? {
            HostRemoval::NotFound => Err(Error::NotFound(format!(
                "no host `{host}` in cluster `{cluster}`"
            ))),
            HostRemoval::UnderWay(deploys) => {
                let list: Vec<String> = deploys
                    .iter()
                    .map(|(id, app)| format!("deploy {id} of `{app}`"))
                    .collect();
                Err(Error::refused(
                    ErrorCode::DeployInProgress,
                    format!(
                        "`{host}` of `{cluster}` is in {} under way: wait for it to end, or cancel it \
                         (`deploy cancel {}`)",
                        list.join(", "),
                        deploys[0].0
                    ),
                ))
            }
            HostRemoval::Removed(removed) => {
                tracing::warn!(%cluster, %host, apps = removed.apps.len(), "host removed");
                Ok(removed)
            }
        }
    }
}

/// Why an app with deploys under way cannot go, and what to do first.
fn under_way_message(app: &AppName, deploys: &[(DeployId, Cluster, DeployStatus)]) -> String {
    let list: Vec<String> = deploys
        .iter()
        .map(|(id, cluster, status)| format!("deploy {id} to `{cluster}` is {status}"))
        .collect();
    let cancels: Vec<String> = deploys
        .iter()
        .map(|(id, _, _)| format!("`deploy cancel {id}`"))
        .collect();
    format!(
        "`{app}` cannot be removed while deploys of it are under way ({}): wait for them to end or \
         cancel them ({}), then stop it where it runs",
        list.join("; "),
        cancels.join(", ")
    )
}

/// Why a running app cannot go: per cluster, the hosts, and the commands
/// that free them.
fn running_message(app: &AppName, hosts: &[RunningOn]) -> String {
    let mut by_cluster: BTreeMap<&Cluster, Vec<&RunningOn>> = BTreeMap::new();
    for h in hosts {
        by_cluster.entry(&h.cluster).or_default().push(h);
    }
    let parts: Vec<String> = by_cluster
        .iter()
        .map(|(cluster, on)| {
            let mut names: Vec<String> = on
                .iter()
                .take(HOSTS_NAMED)
                .map(|h| {
                    if h.desired {
                        h.host.to_string()
                    } else {
                        format!("{} (its last report shows a process)", h.host)
                    }
                })
                .collect();
            if on.len() > HOSTS_NAMED {
                names.push(format!("and {} more", on.len() - HOSTS_NAMED));
            }
            let noun = if on.len() == 1 { "host" } else { "hosts" };
            format!(
                "{} {noun} of `{cluster}` ({}): `deploy stop {app} --cluster {cluster}`",
                on.len(),
                names.join(", ")
            )
        })
        .collect();
    format!(
        "`{app}` still runs on {}. Stop it first; a host that is gone for good is removed with \
         `DELETE /api/v1/hosts/{{cluster}}/{{host}}`; a host that stopped it shows so at its next \
         report",
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_where_and_what_to_run() {
        let app = AppName::parse("hello").unwrap();
        let prod = Cluster::parse("prod").unwrap();
        let on = |host: &str, desired| RunningOn {
            cluster: prod.clone(),
            host: HostName::parse(host).unwrap(),
            desired,
            reported: true,
        };
        let m = running_message(
            &app,
            &[on("web-1", true), on("web-2", true), on("web-3", false)],
        );
        assert!(
            m.starts_with("`hello` still runs on 3 hosts of `prod` (web-1, web-2, web-3 (its last"),
            "{m}"
        );
        assert!(m.contains("`deploy stop hello --cluster prod`"), "{m}");
        let many: Vec<_> = (0..7).map(|i| on(&format!("web-{i}"), true)).collect();
        assert!(running_message(&app, &many).contains("and 2 more"));
        let m = under_way_message(&app, &[(DeployId(12), prod.clone(), DeployStatus::Running)]);
        assert!(m.contains("deploy 12 to `prod` is running"), "{m}");
        assert!(m.contains("`deploy cancel 12`"), "{m}");
    }
}
