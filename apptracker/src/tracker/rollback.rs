//! Undoing and redoing: rolling an app back to what its hosts ran before (with
//! a pin), rolling back the switched hosts of a failed rollout, and retrying a
//! deploy's failed hosts.

use super::*;

impl Tracker {
    /// Puts back, on every host the newest landed deploy of `app` to
    /// `cluster` replaced, the version it ran before, and pins the app
    /// there so auto-deploys do not undo it.
    pub async fn rollback_app(
        &self,
        app: &AppName,
        cluster: &Cluster,
        confirm: Option<&Cluster>,
        by: &str,
    ) -> Result<Deploy, Error> {
        self.app_or_404(app).await?;
        let origin = Origin {
            rollback: true,
            by: Some(by),
            ..Origin::default()
        };
        // Checked before the pin is set, so a refusal changes nothing.
        self.check_cluster(cluster, confirm, &origin).await?;
        self.refuse_if_active(app, cluster).await?;
        let nothing = |why: String| Error::refused(ErrorCode::NothingToRollBack, why);
        let Some((last, current)) = self.db().last_landed_deploy(app, cluster).await? else {
            return Err(nothing(format!(
                "`{app}` was never deployed to `{cluster}`"
            )));
        };
        let previous = self.db().previous_versions(cluster, app, &current).await?;
        let mut versions: Vec<&Version> = previous.iter().filter_map(|(_, v)| v.as_ref()).collect();
        versions.sort();
        versions.dedup();
        let version = match versions.as_slice() {
            [] => {
                return Err(nothing(format!(
                    "no host of `{cluster}` ran another version of `{app}` before {current}"
                )));
            }
            [one] => (*one).clone(),
            many => {
                let list: Vec<String> = many.iter().map(|v| v.to_string()).collect();
                return Err(Error::refused(
                    ErrorCode::AmbiguousRollback,
                    format!(
                        "before {current} the hosts ran different versions ({}); deploy one of them explicitly",
                        list.join(", ")
                    ),
                ));
            }
        };
        let hosts: Vec<HostName> = previous
            .into_iter()
            .filter(|(_, v)| v.as_ref() == Some(&version))
            .map(|(h, _)| h)
            .collect();
        self.db()
            .set_pin(&deploy::Pin {
                app: app.clone(),
                cluster: cluster.clone(),
                version: version.clone(),
                pinned_by: by.to_string(),
                reason: format!("rolled back from {current} (deploy {last})"),
                pinned_at: Timestamp::now(),
            })
            .await?;
        tracing::warn!(app = %app, %cluster, %version, from_deploy = %last, by, "rolling back and pinning");
        let req = CreateDeploy {
            app: app.clone(),
            version: Some(version),
            git_ref: None,
            cluster: cluster.clone(),
            hosts: None,
            strategy: Strategy::AllAtOnce,
            max_failures: Portion::default(),
            rollback_on_failure: false,
            confirm: confirm.cloned(),
            wait: false,
        };
        let origin = Origin {
            hosts: Some(hosts),
            ..origin
        };
        self.create_deploy_on(&req, origin).await
    }

    /// When a failed rollout asked for it: puts the version each host ran
    /// before back on the hosts of `failed` that switched, as a new deploy
    /// linked to it. Returns it, or None when no host switched.
    pub(super) async fn roll_back_switched(
        &self,
        failed: DeployId,
    ) -> anyhow::Result<Option<Deploy>> {
        let d = self.deploy(failed).await?;
        let Some(version) = d.version.clone() else {
            return Ok(None);
        };
        let switched: Vec<&HostName> = d
            .hosts
            .iter()
            .filter(|h| h.phase == HostPhase::Done)
            .map(|h| &h.host)
            .collect();
        let previous = self
            .db()
            .previous_versions(&d.cluster, &d.app, &version)
            .await?;
        // Hosts that ran nothing before keep the new version: there is
        // nothing to go back to. The hosts are grouped by what they ran; the
        // biggest group goes back (after one rollout they are one group).
        let mut groups: std::collections::BTreeMap<Version, Vec<HostName>> = Default::default();
        for (host, prev) in previous {
            if let Some(prev) = prev
                && switched.contains(&&host)
            {
                groups.entry(prev).or_default().push(host);
            }
        }
        let Some((back_to, hosts)) = groups.iter().max_by_key(|(_, h)| h.len()) else {
            tracing::warn!(deploy_id = %failed, app = %d.app, "rollback on failure: no switched host ran an earlier version");
            return Ok(None);
        };
        for (v, h) in groups.iter().filter(|(v, _)| *v != back_to) {
            tracing::warn!(deploy_id = %failed, app = %d.app, version = %v, hosts = ?h,
                "rollback on failure: these hosts ran another version before; left on the new one");
        }
        let req = CreateDeploy {
            app: d.app.clone(),
            version: Some(back_to.clone()),
            git_ref: None,
            cluster: d.cluster.clone(),
            hosts: Some(d.hosts_selector.clone()),
            strategy: Strategy::AllAtOnce,
            max_failures: Portion::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        };
        let origin = Origin {
            hosts: Some(hosts.clone()),
            rollback_of: Some(failed),
            rollback: true,
            automated: true,
            by: d.requested_by.as_deref(),
            ..Origin::default()
        };
        let back = self
            .create_deploy_on(&req, origin)
            .await
            .with_context(|| format!("cannot roll back deploy {failed}"))?;
        tracing::warn!(deploy_id = %failed, app = %d.app, rollback = %back.id, version = %back_to,
            hosts = hosts.len(), "rolling the switched hosts back");
        Ok(Some(back))
    }

    /// A new deploy of the same version to the hosts of deploy `id` that
    /// failed, timed out or were unreachable, linked to it. The original
    /// deploy's confirmation stands for a protected cluster; a freeze
    /// refuses it.
    pub async fn retry_deploy(&self, id: DeployId, by: &str) -> Result<Deploy, Error> {
        let d = self.deploy(id).await?;
        if !d.status.is_terminal() {
            return Err(Error::refused(
                ErrorCode::DeployInProgress,
                format!("deploy {id} is {}; retry it once it ends", d.status),
            ));
        }
        let failed: Vec<HostName> = d
            .hosts
            .iter()
            .filter(|h| h.phase.is_failure())
            .map(|h| h.host.clone())
            .collect();
        let Some(version) = d.version.clone() else {
            return Err(Error::refused(
                ErrorCode::NothingToRetry,
                format!("deploy {id} never had a build to deploy"),
            ));
        };
        if failed.is_empty() {
            return Err(Error::refused(
                ErrorCode::NothingToRetry,
                format!("no host of deploy {id} failed, timed out or was unreachable"),
            ));
        }
        let req = CreateDeploy {
            app: d.app.clone(),
            version: Some(version),
            git_ref: None,
            cluster: d.cluster.clone(),
            hosts: Some(d.hosts_selector.clone()),
            strategy: d.strategy,
            max_failures: d.max_failures,
            rollback_on_failure: d.rollback_on_failure,
            confirm: None,
            wait: false,
        };
        let origin = Origin {
            hosts: Some(failed),
            retry_of: Some(id),
            automated: true,
            by: Some(by),
            ..Origin::default()
        };
        self.create_deploy_on(&req, origin).await
    }
}
