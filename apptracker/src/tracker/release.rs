//! The release phase: a deploy of a build whose release has a `[release]
//! command` asks ONE host of its target (the first alive, by name) to run
//! it before the first batch goes out, and waits in `building` for the
//! answer (`POST /api/v1/deploys/{id}/release-phase/{host}`). Success
//! starts the rollout; a failure, or no answer by the deadline, fails the
//! deploy with the command's log, and no host is ever asked to switch. A
//! restart, stop or start (`DeployAction`), or a deploy whose hosts all
//! run the version already, skips it.

use deploy::{
    RELEASE_LOG_BYTES, ReleaseOutcome, ReleasePhase, ReleasePhaseMessage, ReleasePhaseResult,
    ReleasePhaseStatus, log_tail,
};

use super::*;

/// The most of a release phase's output the deploy's `error` repeats (its
/// end); the whole tail is in `release_phase.log`.
const ERROR_LOG_BYTES: usize = 2 << 10;
/// The most of a reported message kept.
const MAX_MESSAGE: usize = 4 << 10;

impl Tracker {
    /// Whether the rollout of deploy `id` may start: its build's release
    /// has no release command, the phase succeeded, or the hosts all run
    /// the version already. Otherwise asks a host to run the phase (once
    /// per deploy) or fails the deploy when none can, and says no.
    pub(super) async fn release_phase_passed(
        &self,
        id: DeployId,
        build: &StoredBuild,
    ) -> anyhow::Result<bool> {
        let Some(timeout_ms) = build.release_timeout_ms else {
            return Ok(true);
        };
        if let Some(p) = self.db().release_phase(id).await? {
            return Ok(p.status == ReleasePhaseStatus::Succeeded);
        }
        let Some(deploy) = self.db().deploy(id).await? else {
            return Ok(false);
        };
        // A restart, stop or start runs the release the hosts have: its
        // phase ran when it was deployed.
        if !deploy.action.is_deploy() {
            return Ok(true);
        }
        let hosts: Vec<HostName> = deploy.hosts.iter().map(|h| h.host.clone()).collect();
        let registered = self.db().hosts(Some(&deploy.cluster)).await?;
        let runs_it = |name: &HostName| {
            registered.iter().any(|h| {
                &h.name == name
                    && h.apps
                        .iter()
                        .any(|a| a.app == deploy.app && a.version.as_ref() == Some(&build.version))
            })
        };
        if hosts.iter().all(runs_it) {
            tracing::info!(deploy_id = %id, app = %deploy.app, version = %build.version,
                "every host runs this version already: no release phase");
            return Ok(true);
        }
        let alive_since = self.alive_since().0;
        let mut alive: Vec<&HostName> = registered
            .iter()
            .filter(|h| h.last_seen.0 >= alive_since && hosts.contains(&h.name))
            .map(|h| &h.name)
            .collect();
        alive.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let Some(host) = alive.first().map(|h| (*h).clone()) else {
            let why = format!(
                "release phase: no host of the deploy ({}) is alive to run `[release] command`",
                hosts
                    .iter()
                    .map(HostName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.fail_before_rollout(id, build, &why).await?;
            return Ok(false);
        };
        let wait_ms = timeout_ms.saturating_add(self.config().host_deadline.as_millis() as u64);
        let deadline = Timestamp(
            Timestamp::now()
                .0
                .saturating_add(i64::try_from(wait_ms).unwrap_or(i64::MAX)),
        );
        if !self.db().start_release_phase(id, &host, deadline).await? {
            return Ok(false); // another caller asked already
        }
        let release = self
            .phase_release(id, &deploy.app, deploy.config_version, deploy.action, build)
            .await?;
        tracing::info!(deploy_id = %id, app = %deploy.app, version = %build.version, host = %host,
            timeout_ms, "release phase asked");
        self.bus()
            .publish(
                &deploy.cluster,
                BusMessage::ReleasePhase(ReleasePhaseMessage {
                    release,
                    target: Target {
                        cluster: deploy.cluster.clone(),
                        hosts: deploy.hosts_selector.clone(),
                        only: Some(vec![host]),
                    },
                    issued_at: Timestamp::now(),
                }),
            )
            .await;
        Ok(false)
    }

    /// Deploy `id`, which must target `cluster` (the asking host's), and
    /// its release phase if it has one.
    async fn phase_of(
        &self,
        id: DeployId,
        cluster: &Cluster,
    ) -> Result<(DeployRow, Option<ReleasePhase>), Error> {
        let deploy = self
            .db()
            .deploy_row(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no deploy {id}")))?;
        if &deploy.cluster != cluster {
            return Err(Error::Invalid(format!(
                "deploy {id} targets cluster `{}`, not `{cluster}`",
                deploy.cluster
            )));
        }
        let phase = self.db().release_phase(id).await?;
        Ok((deploy, phase))
    }

    /// What `host` is to run as deploy `id`'s release phase, while that
    /// phase waits on it (`GET /api/v1/deploys/{id}/release-phase/{host}`).
    /// A grabber runs this, never what the bus message said: the message
    /// only rings, as a deploy's does, so who can publish on the bus
    /// cannot make a host run an old release's command. Refused
    /// (`conflict`) when the phase was asked of another host, has ended,
    /// or was never asked.
    pub async fn release_phase_asked(
        &self,
        id: DeployId,
        cluster: &Cluster,
        host: &HostName,
    ) -> Result<deploy::Release, Error> {
        let (deploy, phase) = self.phase_of(id, cluster).await?;
        let waits_here =
            phase.is_some_and(|p| &p.host == host && p.status == ReleasePhaseStatus::Running);
        if !waits_here {
            return Err(Error::Conflict(format!(
                "deploy {id} has no release phase waiting on `{host}`"
            )));
        }
        let build = self.build_of(&deploy).await?;
        Ok(self
            .phase_release(
                id,
                &deploy.app,
                deploy.config_version,
                deploy.action,
                &build,
            )
            .await?)
    }

    /// The release a deploy's release phase runs: its build, with the
    /// config the deploy brings.
    async fn phase_release(
        &self,
        id: DeployId,
        app: &AppName,
        config_version: u64,
        action: deploy::DeployAction,
        build: &StoredBuild,
    ) -> anyhow::Result<deploy::Release> {
        let artifact = build
            .artifact
            .as_ref()
            .with_context(|| format!("build {} succeeded without an artifact", build.id))?;
        Ok(deploy::Release {
            deploy_id: id,
            app: app.clone(),
            version: build.version.clone(),
            artifact: self.present_artifact(artifact).await?,
            config_version,
            action,
        })
    }

    /// The host that ran a deploy's release phase says how it went: the
    /// rollout starts, or the deploy fails with the command's log. A
    /// repeated report changes nothing.
    pub async fn release_phase_result(
        &self,
        id: DeployId,
        host: &HostName,
        result: &ReleasePhaseResult,
    ) -> Result<ReleasePhase, Error> {
        let (deploy, phase) = self.phase_of(id, &result.cluster).await?;
        let phase =
            phase.ok_or_else(|| Error::NotFound(format!("deploy {id} has no release phase")))?;
        if &phase.host != host {
            return Err(Error::Invalid(format!(
                "deploy {id}'s release phase was asked of `{}`, not `{host}`",
                phase.host
            )));
        }
        let status = match result.outcome {
            ReleaseOutcome::Succeeded => ReleasePhaseStatus::Succeeded,
            ReleaseOutcome::Failed | ReleaseOutcome::Unknown => ReleasePhaseStatus::Failed,
        };
        let message = first_bytes(&result.message, MAX_MESSAGE);
        let log = log_tail(&result.log, RELEASE_LOG_BYTES);
        if !self
            .db()
            .finish_release_phase(id, host, status, &message, &log)
            .await?
        {
            return Ok(phase);
        }
        let build = self.build_of(&deploy).await?;
        if status == ReleasePhaseStatus::Succeeded {
            tracing::info!(deploy_id = %id, app = %deploy.app, host = %host, %message,
                "release phase succeeded");
            self.start_rollout(id, &build).await?;
        } else {
            tracing::warn!(deploy_id = %id, app = %deploy.app, host = %host, %message,
                "release phase failed");
            let mut why = format!("release phase failed on {host}: {message}");
            if !log.trim().is_empty() {
                why.push_str(&format!(
                    "\n--- the end of its output (all of it: release_phase.log) ---\n{}",
                    log_tail(&log, ERROR_LOG_BYTES)
                ));
            }
            self.fail_before_rollout(id, &build, &why).await?;
        }
        self.db()
            .release_phase(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("deploy {id} has no release phase")))
    }

    /// Fails the release phases whose host never answered, and their
    /// deploys (the sweeper).
    pub(super) async fn sweep_release_phases(&self) -> anyhow::Result<()> {
        for (id, host) in self.db().overdue_release_phases(Timestamp::now()).await? {
            let Ok(host) = HostName::parse(host) else {
                continue;
            };
            let Some(deploy) = self.db().deploy_row(id).await? else {
                continue;
            };
            let why = format!(
                "release phase: {host} did not report within its deadline (`[release] timeout` plus \
                 host_deadline): its grabber is down, stuck, or too old to run release phases"
            );
            if !self
                .db()
                .finish_release_phase(id, &host, ReleasePhaseStatus::Failed, &why, "")
                .await?
            {
                continue;
            }
            tracing::warn!(deploy_id = %id, app = %deploy.app, host = %host, "release phase timed out");
            let build = self.build_of(&deploy).await?;
            self.fail_before_rollout(id, &build, &why).await?;
        }
        Ok(())
    }

    /// Ends a deploy that never started its rollout: every host is left
    /// untouched, the deploy fails with `why`.
    async fn fail_before_rollout(
        &self,
        id: DeployId,
        build: &StoredBuild,
        why: &str,
    ) -> anyhow::Result<()> {
        // The hosts first: a deploy seen ended has its hosts' end too (as
        // the halt and cancel paths do). A cancel meanwhile marks them the
        // same way.
        let untouched = self
            .db()
            .leave_unstarted(id, 0, "not started: the release phase failed")
            .await?;
        if !self
            .transition(
                id,
                &[DeployStatus::Building],
                DeployStatus::Failed,
                Some(&build.version),
                Some(why),
            )
            .await?
        {
            return Ok(()); // cancelled meanwhile
        }
        for row in untouched {
            self.bus()
                .emit(DeployEvent::Host {
                    deploy_id: id,
                    host: row,
                })
                .await;
        }
        Ok(())
    }
}

/// The start of `text`, at most `max` bytes, cut at a character boundary.
fn first_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}…", &text[..at])
}
