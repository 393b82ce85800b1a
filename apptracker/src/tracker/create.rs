//! Creating deploys: every check first (app, cluster controls, the active
//! deploy, targets, strategy, build, pin), so a refused request changes
//! nothing; then the row, queued behind the active deploy or started. The
//! per-app deploy queue lives here too.

use super::*;
use deploy::Source;

impl Tracker {
    /// Refuses a deploy while another of the same app to the same cluster
    /// is building or running, naming it.
    pub(crate) async fn refuse_if_active(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> Result<(), Error> {
        match self.db().active_deploy(app, cluster).await? {
            None => Ok(()),
            Some((id, status)) => Err(Error::refused(
                ErrorCode::DeployInProgress,
                format!(
                    "deploy {id} of `{app}` to `{cluster}` is {status}; wait for it to end or cancel it \
                     (POST /api/v1/deploys/{id}/cancel)"
                ),
            )),
        }
    }

    /// The hosts a deploy to `cluster` with `selector` touches: registered,
    /// matching, and alive (heartbeat within `host_alive`). None is an
    /// error that lists what there is.
    pub async fn targets(
        &self,
        cluster: &Cluster,
        selector: &HostSelector,
    ) -> Result<deploy::Targets, Error> {
        let registered = self.db().hosts(Some(cluster)).await?;
        let alive_since = self.alive_since().0;
        let (mut hosts, mut excluded) = (Vec::new(), Vec::new());
        for h in registered.iter().filter(|h| selector.matches(&h.name)) {
            if h.last_seen.0 >= alive_since {
                hosts.push(h.clone());
            } else {
                excluded.push(deploy::ExcludedHost {
                    host: h.name.clone(),
                    reason: format!("no heartbeat since {}", h.last_seen),
                });
            }
        }
        if hosts.is_empty() {
            let names: Vec<&str> = registered.iter().map(|h| h.name.as_str()).collect();
            return Err(Error::refused(
                ErrorCode::NoMatchingHosts,
                if names.is_empty() {
                    format!("cluster `{cluster}` has no registered hosts")
                } else if !excluded.is_empty() {
                    let silent: Vec<&str> = excluded.iter().map(|e| e.host.as_str()).collect();
                    format!(
                        "every host of cluster `{cluster}` matching `{selector}` is silent: {}",
                        silent.join(", ")
                    )
                } else {
                    format!(
                        "no host of cluster `{cluster}` matches `{selector}` (hosts: {})",
                        names.join(", ")
                    )
                },
            ));
        }
        Ok(deploy::Targets {
            cluster: cluster.clone(),
            hosts_selector: selector.clone(),
            hosts,
            excluded,
        })
    }

    /// A deploy someone asked for.
    pub async fn create_deploy(&self, req: &CreateDeploy, by: &str) -> Result<Deploy, Error> {
        let origin = Origin {
            by: Some(by),
            ..Origin::default()
        };
        self.create_deploy_on(req, origin).await
    }

    /// A deploy an automation set up in advance asked for (a webhook's
    /// auto-deploy): a protected cluster needs no typed confirmation, a
    /// frozen one still refuses it.
    pub async fn create_automated_deploy(
        &self,
        req: &CreateDeploy,
        by: &str,
        build: Option<StoredBuild>,
    ) -> Result<Deploy, Error> {
        let origin = Origin {
            by: Some(by),
            automated: true,
            build,
            ..Origin::default()
        };
        self.create_deploy_on(req, origin).await
    }

    /// Refuses a deploy a cluster's controls forbid: a freeze (except for
    /// rollbacks, the way out of an incident), or a protected cluster
    /// without its name typed back.
    pub(super) async fn check_cluster(
        &self,
        cluster: &Cluster,
        confirm: Option<&Cluster>,
        origin: &Origin<'_>,
    ) -> Result<(), Error> {
        let Some(c) = self.db().cluster_settings(cluster).await? else {
            return Ok(());
        };
        if !origin.rollback
            && let Some(until) = c.frozen_at(Timestamp::now())
        {
            return Err(Error::refused(
                ErrorCode::ClusterFrozen,
                format!(
                    "cluster `{cluster}` is frozen until {until} by {}: {}; rollbacks are still allowed \
                     (thaw it with DELETE /api/v1/clusters/{cluster}/freeze)",
                    c.frozen_by.as_deref().unwrap_or("?"),
                    c.freeze_reason.as_deref().unwrap_or("no reason given"),
                ),
            ));
        }
        if c.protected && !origin.automated && confirm != Some(cluster) {
            let given = match confirm {
                Some(other) => format!(" (the confirmation names `{other}`)"),
                None => String::new(),
            };
            return Err(Error::refused(
                ErrorCode::ConfirmationRequired,
                format!(
                    "cluster `{cluster}` is protected: confirm by naming it{given}: `\"confirm\": \"{cluster}\"` \
                     in the request, `--yes-i-mean-{cluster}` on the command line"
                ),
            ));
        }
        Ok(())
    }

    /// Creates a deploy of `req`, to `origin.hosts` when given (a retry, a
    /// rollback), else to the hosts `req` selects. Queued behind the active
    /// deploy of the app to the cluster when `req.wait`, refused otherwise.
    pub(crate) async fn create_deploy_on(
        &self,
        req: &CreateDeploy,
        origin: Origin<'_>,
    ) -> Result<Deploy, Error> {
        let app = self.app_or_404(&req.app).await?;
        self.check_cluster(&req.cluster, req.confirm.as_ref(), &origin)
            .await?;
        let mut queue = false;
        if req.wait {
            queue = self
                .db()
                .active_deploy(&app.name, &req.cluster)
                .await?
                .is_some();
        } else {
            self.refuse_if_active(&app.name, &req.cluster).await?;
        }
        let selector = req.hosts.clone().unwrap_or_else(HostSelector::all);
        let targets: Vec<HostName> = match origin.hosts {
            Some(h) => h,
            None => self
                .targets(&req.cluster, &selector)
                .await?
                .hosts
                .into_iter()
                .map(|h| h.name)
                .collect(),
        };
        req.strategy
            .check(targets.len())
            .map_err(|e| Error::Invalid(format!("strategy: {e}")))?;
        let source = req.source().map_err(|e| Error::Invalid(e.to_string()))?;
        let (build, git_ref) = match &source {
            Source::Version(v) => {
                let build = self.db().build_by_version(&req.app, v).await?;
                if let Some(b) = &build
                    && let Some(bad) = &b.bad
                {
                    return Err(bad_build(b, bad));
                }
                match build {
                    Some(b) if b.status == BuildStatus::Succeeded => (b, None),
                    Some(b) => {
                        return Err(Error::refused(
                            ErrorCode::BuildNotReady,
                            format!(
                                "build {} of `{}` is {:?}, not succeeded",
                                v, req.app, b.status
                            ),
                        ));
                    }
                    None => {
                        return Err(Error::NotFound(format!(
                            "app `{}` has no build with version `{v}`",
                            req.app
                        )));
                    }
                }
            }
            Source::Ref(r) => match origin.build {
                Some(ref b) => (b.clone(), Some(r.as_str())),
                None => {
                    let (b, _) = self.build_of_ref(&req.app, Some(r)).await?;
                    (b, Some(r.as_str()))
                }
            },
        };
        if !origin.rollback
            && let Some(pin) = self.db().pin(&app.name, &req.cluster).await?
            && pin.version != build.version
        {
            return Err(Error::refused(
                ErrorCode::Pinned,
                format!(
                    "`{}` on `{}` is pinned to {} by {} since {} ({}); unpin it first \
                     (DELETE /api/v1/apps/{}/pins/{})",
                    app.name,
                    req.cluster,
                    pin.version,
                    pin.pinned_by,
                    pin.pinned_at,
                    pin.reason,
                    app.name,
                    req.cluster
                ),
            ));
        }
        let ready = build.status == BuildStatus::Succeeded;
        // Every deploy runs the app's newest config: a release deploy
        // brings the config set since, a restart is how a change applies.
        let config_version = self.db().config_version(&app.name).await?;
        let new = |status| NewDeploy {
            app: &app.name,
            version: ready.then_some(&build.version),
            git_ref,
            build_id: Some(build.id),
            cluster: &req.cluster,
            selector: &selector,
            status,
            hosts: &targets,
            strategy: req.strategy,
            max_failures: req.max_failures,
            retry_of: origin.retry_of,
            rollback_on_failure: req.rollback_on_failure,
            rollback_of: origin.rollback_of,
            requested_by: origin.by,
            action: origin.action,
            config_version,
        };
        let status = if queue {
            DeployStatus::Queued
        } else {
            DeployStatus::Building
        };
        let id = match self.db().insert_deploy(&new(status)).await {
            Ok(id) => id,
            // Two requests raced past the check: the unique index on active
            // deploys let one in; this one queues behind it if it may wait,
            // else is told which.
            Err(_) if req.wait && !queue => {
                queue = true;
                self.db().insert_deploy(&new(DeployStatus::Queued)).await?
            }
            Err(e) => {
                self.refuse_if_active(&app.name, &req.cluster).await?;
                return Err(e.into());
            }
        };
        tracing::info!(deploy_id = %id, app = %app.name, cluster = %req.cluster, hosts = targets.len(),
            queued = queue, by = origin.by.unwrap_or("-"), "deploy created");
        if queue {
            self.supersede_queued(id, &app.name, &req.cluster, &selector)
                .await?;
            // The active deploy may have ended since the check.
            self.start_next_queued(&app.name, &req.cluster).await?;
            return self.deploy(id).await;
        }
        if ready {
            self.start_rollout(id, &build).await?;
        } else if let Some(b) = self.db().build(build.id).await? {
            // The build may have finished between the lookup and the insert.
            if b.status.is_terminal() {
                self.on_build_finished(b.id).await?;
            }
        }
        self.deploy(id).await
    }

    /// Cancels the deploys queued before `newer` for the same app, cluster
    /// and hosts: the newest request wins (a burst of pushes deploys once).
    pub(super) async fn supersede_queued(
        &self,
        newer: DeployId,
        app: &AppName,
        cluster: &Cluster,
        selector: &HostSelector,
    ) -> anyhow::Result<()> {
        for id in self.db().queued_deploys(app, cluster).await? {
            if id >= newer {
                continue;
            }
            let Some(old) = self.db().deploy(id).await? else {
                continue;
            };
            if old.hosts_selector.as_str() != selector.as_str() {
                continue;
            }
            self.db()
                .leave_unstarted(id, 0, "not started: superseded by a newer queued deploy")
                .await?;
            let why = format!("superseded by deploy {newer}");
            if self
                .transition(
                    id,
                    &[DeployStatus::Queued],
                    DeployStatus::Cancelled,
                    None,
                    Some(&why),
                )
                .await?
            {
                tracing::info!(deploy_id = %id, app = %app, %cluster, by = %newer, "queued deploy superseded");
            }
        }
        Ok(())
    }

    /// Starts the oldest deploy queued for `app` on `cluster` once nothing
    /// else is active there (and the cluster is not frozen: it waits for
    /// the thaw).
    pub(super) async fn start_next_queued(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> anyhow::Result<()> {
        if self.db().active_deploy(app, cluster).await?.is_some() {
            return Ok(());
        }
        if let Some(c) = self.db().cluster_settings(cluster).await?
            && c.frozen_at(Timestamp::now()).is_some()
        {
            return Ok(());
        }
        let Some(&id) = self.db().queued_deploys(app, cluster).await?.first() else {
            return Ok(());
        };
        // The unique index on active deploys refuses the move when another
        // deploy took the slot first: that one runs, this one keeps waiting.
        match self
            .transition(
                id,
                &[DeployStatus::Queued],
                DeployStatus::Building,
                None,
                None,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                tracing::info!(deploy_id = %id, app = %app, %cluster, error = %e, "queued deploy keeps waiting");
                return Ok(());
            }
        }
        tracing::info!(deploy_id = %id, app = %app, %cluster, "queued deploy starting");
        let build = match self.db().deploy(id).await?.and_then(|d| d.build_id) {
            Some(b) => self.db().build(b).await?,
            None => None,
        };
        match build {
            Some(b) if b.status == BuildStatus::Succeeded => self.start_rollout(id, &b).await,
            Some(b) if b.status.is_terminal() => self.on_build_finished(b.id).await,
            // Started by `on_build_finished` when its build ends.
            _ => Ok(()),
        }
    }

    /// Starts what waited on `cluster`'s freeze.
    pub async fn wake_queues(&self, cluster: &Cluster) -> anyhow::Result<()> {
        for (app, c) in self.db().stalled_queues().await? {
            if &c == cluster {
                self.start_next_queued(&app, &c).await?;
            }
        }
        Ok(())
    }
}

/// The refusal of a deploy of a build marked bad.
pub(super) fn bad_build(b: &Build, bad: &deploy::BadMark) -> Error {
    Error::refused(
        ErrorCode::BuildMarkedBad,
        format!(
            "build {} ({}) of `{}` was marked bad by {} at {}: {}; deploy another version, or \
             deploy its commit by ref to build it again",
            b.id, b.version, b.app, bad.by, bad.at, bad.reason
        ),
    )
}
