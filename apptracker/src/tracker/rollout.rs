//! Rollouts: moving a deploy through its statuses, publishing batches to the
//! bus, advancing on each host's end or bake, halting on too many failures,
//! cancelling and continuing.

use super::*;

impl Tracker {
    /// Lets a deploy waiting for a human (a manual canary) start its next
    /// batch.
    pub async fn continue_deploy(&self, id: DeployId) -> Result<Deploy, Error> {
        let d = self.deploy(id).await?;
        if d.paused_at.is_none() {
            return Err(Error::refused(
                ErrorCode::NotPaused,
                format!("deploy {id} is {} and not waiting to continue", d.status),
            ));
        }
        if self.db().continue_deploy(id, d.current_batch + 1).await? {
            tracing::info!(deploy_id = %id, app = %d.app, batch = d.current_batch + 2, "deploy continued");
            self.advance(id).await?;
        }
        self.deploy(id).await
    }

    pub async fn deploy(&self, id: DeployId) -> Result<Deploy, Error> {
        self.db()
            .deploy(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no deploy {id}")))
    }

    /// Moves the deploy to `running` and starts its first batch; fails it
    /// instead when its build was marked bad while it waited.
    pub(super) async fn start_rollout(
        &self,
        id: DeployId,
        build: &StoredBuild,
    ) -> anyhow::Result<()> {
        if let Some(bad) = self.db().build(build.id).await?.and_then(|b| b.bad.clone()) {
            self.transition(
                id,
                &[DeployStatus::Building],
                DeployStatus::Failed,
                None,
                Some(&bad_build(build, &bad).to_string()),
            )
            .await?;
            return Ok(());
        }
        // A release command runs once before any host switches
        // (`release.rs`); this is called again when it succeeded.
        if !self.release_phase_passed(id, build).await? {
            return Ok(());
        }
        if !self
            .transition(
                id,
                &[DeployStatus::Building],
                DeployStatus::Running,
                Some(&build.version),
                None,
            )
            .await?
        {
            return Ok(()); // cancelled or already started by another path
        }
        self.publish_batch(id, build, 0).await?;
        // Overlapping batches: more may start beside the first.
        Box::pin(self.advance(id)).await
    }

    /// Records the desired version for the hosts of `batch` and rings the
    /// bus for exactly them.
    pub(super) async fn publish_batch(
        &self,
        id: DeployId,
        build: &StoredBuild,
        batch: u32,
    ) -> anyhow::Result<()> {
        let deploy = self.deploy(id).await?;
        let hosts: Vec<HostName> = deploy
            .hosts
            .iter()
            .filter(|h| h.batch == batch)
            .map(|h| h.host.clone())
            .collect();
        let batches = deploy.hosts.iter().map(|h| h.batch).max().unwrap_or(0) + 1;
        self.db()
            .set_desired(&deploy.cluster, &hosts, &deploy.app, &build.version, id)
            .await?;
        // Their deadlines count from now, not from when the deploy was
        // created: a build or a queue longer than `host_deadline` must not
        // time them out before they were asked.
        self.db().mark_asked(id, batch).await?;
        tracing::info!(deploy_id = %id, app = %deploy.app, version = %build.version,
            batch = batch + 1, batches, hosts = hosts.len(), "rollout batch published");
        self.publish_to(Ask::from(&deploy), build, hosts).await
    }

    /// Asks `hosts` to install deploy `deploy`'s release (the bus message;
    /// their desired state already says so).
    pub(super) async fn publish_to(
        &self,
        deploy: Ask<'_>,
        build: &StoredBuild,
        hosts: Vec<HostName>,
    ) -> anyhow::Result<()> {
        let artifact = build
            .artifact
            .as_ref()
            .with_context(|| format!("build {} succeeded without an artifact", build.id))?;
        let artifact = self.present_artifact(artifact).await?;
        self.bus()
            .publish(
                deploy.cluster,
                BusMessage::Deploy(DeployMessage {
                    release: deploy::Release {
                        deploy_id: deploy.id,
                        app: deploy.app.clone(),
                        version: build.version.clone(),
                        artifact,
                        config_version: deploy.config_version,
                        action: deploy.action,
                    },
                    target: Target {
                        cluster: deploy.cluster.clone(),
                        hosts: deploy.hosts.clone(),
                        // Always the exact list: a retry's hosts, a batch,
                        // and never a host registered after the deploy.
                        only: Some(hosts),
                    },
                    issued_at: Timestamp::now(),
                }),
            )
            .await;
        Ok(())
    }

    /// Moves a running deploy on when a host ends or a bake is over: halts
    /// it when the failures pass `max_failures` (the hosts of batches not
    /// started stay untouched; it ends once the hosts under way are done),
    /// waits for a human or a bake, starts the next batch (as many as fit
    /// beside the hosts under way, with overlapping batches), or ends it.
    pub(super) async fn advance(&self, id: DeployId) -> anyhow::Result<()> {
        let Some(deploy) = self.db().deploy_row(id).await? else {
            return Ok(());
        };
        if deploy.status != DeployStatus::Running {
            return Ok(());
        }
        // Counts, not rows: this runs on every host that ends.
        let tally = Tally(self.db().batch_phases(id).await?);
        let current = deploy.current_batch;
        let hosts = tally.count(|_, _| true);
        let last = tally.last_batch();
        let in_flight = tally.count(|b, p| b <= current && !p.is_terminal());
        let window = deploy.strategy.window(hosts);
        let failed = tally.count(|_, p| p.is_failure());
        let allowed = deploy.max_failures.of(hosts);
        // The last batch's failures count as much as the first's.
        if failed > allowed {
            let over = format!(
                "{failed} host(s) failed, more than max_failures {} allows ({allowed})",
                deploy.max_failures
            );
            let untouched = self
                .db()
                .leave_unstarted(id, current + 1, "not started: the rollout halted")
                .await?;
            for row in untouched {
                self.bus()
                    .emit(DeployEvent::Host {
                        deploy_id: id,
                        host: row,
                    })
                    .await;
            }
            if in_flight > 0 {
                return Ok(()); // ends when the hosts under way are done
            }
            let mut reason = if current < last {
                format!("halted after batch {} of {}: {over}", current + 1, last + 1)
            } else {
                format!("failed: {over}")
            };
            tracing::warn!(deploy_id = %id, app = %deploy.app, %reason, "rollout halted");
            if !deploy.rollback_on_failure {
                return self.finish(id, Some(&reason)).await;
            }
            // Ends first (the rollback needs the app's deploy slot) but
            // keeps the slot from the deploys queued behind it until the
            // rollback holds it: a queued deploy must not go first and make
            // the rollback be refused. Only the report that ended it rolls
            // back (the last hosts' reports race here).
            if !self.finish_holding_slot(id, Some(&reason)).await? {
                return Ok(());
            }
            let back = self.roll_back_switched(id).await;
            Box::pin(self.start_next_queued(&deploy.app, &deploy.cluster)).await?;
            reason = match back {
                Ok(Some(back)) => format!(
                    "{reason}; the {} host(s) that switched are rolled back by deploy {}",
                    back.hosts.len(),
                    back.id
                ),
                Ok(None) => format!("{reason}; no host switched: nothing to roll back"),
                Err(e) => {
                    tracing::error!(deploy_id = %id, app = %deploy.app, error = format!("{e:#}"), "rollback on failure failed");
                    format!("{reason}; the rollback could not start: {e:#}")
                }
            };
            self.db().set_deploy_error(id, &reason).await?;
            if let Some(d) = self.db().deploy(id).await? {
                self.bus()
                    .emit(DeployEvent::Status {
                        deploy_id: id,
                        status: d.status,
                        version: d.version,
                        error: d.error,
                    })
                    .await;
            }
            return Ok(());
        }
        if current >= last {
            if in_flight == 0 {
                return self.finish(id, None).await;
            }
            return Ok(());
        }
        let Some(window) = window else {
            return self.next_batch(&deploy, in_flight).await;
        };
        // Overlapping batches: start every batch that fits beside the hosts
        // under way.
        let size = |batch: u32| tally.count(|b, _| b == batch);
        let (mut to, mut busy) = (current, in_flight);
        while to < last && busy + size(to + 1) <= window {
            to += 1;
            busy += size(to);
        }
        if to == current || !self.db().start_batch(id, current, to).await? {
            return Ok(());
        }
        let build = self.build_of(&deploy).await?;
        for batch in current + 1..=to {
            self.publish_batch(id, &build, batch).await?;
        }
        Ok(())
    }

    /// Batches one after another: once the current one is over, waits for a
    /// human (manual canary) or the bake, then starts the next.
    pub(super) async fn next_batch(
        &self,
        deploy: &DeployRow,
        in_flight: usize,
    ) -> anyhow::Result<()> {
        let (id, current) = (deploy.id, deploy.current_batch);
        if in_flight > 0 {
            return Ok(());
        }
        if deploy.strategy.waits_for_continue(current + 1)
            && self.db().continued_batch(id).await? < current + 1
        {
            if self.db().pause_deploy(id, Timestamp::now()).await? {
                tracing::info!(deploy_id = %id, app = %deploy.app, batch = current + 1,
                    "batch done; waiting for someone to continue the deploy");
                self.bus()
                    .emit(DeployEvent::Status {
                        deploy_id: id,
                        status: deploy.status,
                        version: deploy.version.clone(),
                        error: None,
                    })
                    .await;
            }
            return Ok(());
        }
        let bake = deploy.strategy.bake_ms();
        if bake > 0 {
            let due = match self.db().next_batch_at(id).await? {
                Some(at) => at,
                None => {
                    // `bake_ms` is the client's: a huge one bakes forever, never overflows.
                    let bake_ms = i64::try_from(bake).unwrap_or(i64::MAX);
                    let at = Timestamp(Timestamp::now().0.saturating_add(bake_ms));
                    self.db().bake_until(id, at).await?;
                    tracing::info!(deploy_id = %id, batch = current + 1, bake_ms = bake, "batch done; baking");
                    return Ok(());
                }
            };
            if due > Timestamp::now() {
                return Ok(());
            }
        }
        if !self.db().start_batch(id, current, current + 1).await? {
            return Ok(()); // another caller started it
        }
        let build = self.build_of(deploy).await?;
        self.publish_batch(id, &build, current + 1).await
    }

    pub(super) async fn build_of(&self, deploy: &DeployRow) -> anyhow::Result<StoredBuild> {
        match deploy.build_id {
            Some(b) => self.db().build(b).await?,
            None => None,
        }
        .with_context(|| format!("deploy {} has no build", deploy.id))
    }

    /// Ends a running deploy by how its hosts did.
    ///
    /// Counts, not rows: when the last hosts of a big deploy end together,
    /// every one of their reports may get here before the first has ended
    /// the deploy (all but one then change nothing).
    pub(super) async fn finish(&self, id: DeployId, error: Option<&str>) -> anyhow::Result<()> {
        if self.finish_holding_slot(id, error).await?
            && let Some(d) = self.db().deploy_row(id).await?
        {
            Box::pin(self.start_next_queued(&d.app, &d.cluster)).await?;
        }
        Ok(())
    }

    /// [`Tracker::finish`], leaving the deploys queued for the app where
    /// they are: the caller starts the next. Whether this call ended it.
    async fn finish_holding_slot(&self, id: DeployId, error: Option<&str>) -> anyhow::Result<bool> {
        let tally = Tally(self.db().batch_phases(id).await?);
        let ok = tally.count(|_, p| p.is_success());
        let status = if ok == tally.count(|_, _| true) {
            DeployStatus::Succeeded
        } else if ok == 0 {
            DeployStatus::Failed
        } else {
            DeployStatus::Partial
        };
        self.transition_holding_slot(id, &[DeployStatus::Running], status, None, error)
            .await
    }

    /// Stops a deploy: hosts not yet started stay untouched, hosts under
    /// way finish their install (a grabber never stops mid-step).
    pub async fn cancel_deploy(&self, id: DeployId) -> Result<Deploy, Error> {
        let d = self.deploy(id).await?;
        if d.status.is_terminal() {
            return Err(Error::refused(
                ErrorCode::DeployFinished,
                format!("deploy {id} already ended: {}", d.status),
            ));
        }
        // While queued or building nothing started; while running, the
        // current batch is under way.
        let from = if d.status == DeployStatus::Running {
            d.current_batch + 1
        } else {
            0
        };
        let untouched = self
            .db()
            .leave_unstarted(id, from, "not started: the deploy was cancelled")
            .await?;
        self.transition(
            id,
            &[
                DeployStatus::Queued,
                DeployStatus::Building,
                DeployStatus::Running,
            ],
            DeployStatus::Cancelled,
            None,
            Some("cancelled"),
        )
        .await?;
        for row in untouched {
            self.bus()
                .emit(DeployEvent::Host {
                    deploy_id: id,
                    host: row,
                })
                .await;
        }
        tracing::info!(deploy_id = %id, app = %d.app, "deploy cancelled");
        self.deploy(id).await
    }

    /// Moves a deploy between statuses and tells the watchers.
    pub(super) async fn transition(
        &self,
        id: DeployId,
        from: &[DeployStatus],
        to: DeployStatus,
        version: Option<&Version>,
        error: Option<&str>,
    ) -> anyhow::Result<bool> {
        let moved = self
            .transition_holding_slot(id, from, to, version, error)
            .await?;
        // The slot is free: the next queued deploy of the app goes.
        if moved
            && to.is_terminal()
            && let Some(d) = self.db().deploy_row(id).await?
        {
            Box::pin(self.start_next_queued(&d.app, &d.cluster)).await?;
        }
        Ok(moved)
    }

    /// [`Tracker::transition`] without starting the next queued deploy when
    /// this one ends.
    async fn transition_holding_slot(
        &self,
        id: DeployId,
        from: &[DeployStatus],
        to: DeployStatus,
        version: Option<&Version>,
        error: Option<&str>,
    ) -> anyhow::Result<bool> {
        let moved = self
            .db()
            .transition_deploy(id, from, to, version, error)
            .await?;
        if moved {
            if to.is_terminal() {
                tracing::info!(deploy_id = %id, status = %to, "deploy finished");
            }
            let d = self.db().deploy_row(id).await?;
            if let Some(d) = &d {
                // Queued for the sender: never holds up the deploy.
                self.notify_deploy(d, to).await;
            }
            self.bus()
                .emit(DeployEvent::Status {
                    deploy_id: id,
                    status: to,
                    version: d.as_ref().and_then(|d| d.version.clone()),
                    error: d.as_ref().and_then(|d| d.error.clone()),
                })
                .await;
        }
        Ok(moved)
    }
}

/// A deploy's hosts counted per batch and phase (`Db::batch_phases`).
pub(super) struct Tally(Vec<(u32, HostPhase, u64)>);

impl Tally {
    /// Hosts whose batch and phase `keep` accepts.
    fn count(&self, keep: impl Fn(u32, HostPhase) -> bool) -> usize {
        self.0
            .iter()
            .filter(|(b, p, _)| keep(*b, *p))
            .map(|(_, _, n)| *n as usize)
            .sum()
    }

    fn last_batch(&self) -> u32 {
        self.0.iter().map(|(b, _, _)| *b).max().unwrap_or(0)
    }
}

/// What a deploy message says of its deploy: read from the whole record
/// (a batch) or from its row alone (the sweeper asking again).
pub(super) struct Ask<'a> {
    id: DeployId,
    cluster: &'a deploy::Cluster,
    app: &'a deploy::AppName,
    hosts: &'a deploy::HostSelector,
    config_version: u64,
    action: deploy::DeployAction,
}

impl<'a> From<&'a Deploy> for Ask<'a> {
    fn from(d: &'a Deploy) -> Self {
        Ask {
            id: d.id,
            cluster: &d.cluster,
            app: &d.app,
            hosts: &d.hosts_selector,
            config_version: d.config_version,
            action: d.action,
        }
    }
}

impl<'a> From<&'a DeployRow> for Ask<'a> {
    fn from(d: &'a DeployRow) -> Self {
        Ask {
            id: d.id,
            cluster: &d.cluster,
            app: &d.app,
            hosts: &d.hosts_selector,
            config_version: d.config_version,
            action: d.action,
        }
    }
}
