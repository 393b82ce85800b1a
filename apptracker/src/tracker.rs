//! Deploy orchestration: the state machine of builds, deploys and hosts.
//! Routes parse input and call in here; everything that writes desired state
//! goes through this module.

use std::sync::Arc;

use anyhow::Context;
use deploy::{
    AppName, Build, BuildId, BuildStatus, BusMessage, Cluster, CreateDeploy, Deploy, DeployEvent,
    DeployHost, DeployId, DeployMessage, DeployStatus, GitRef, HostEvent, HostName, HostPhase,
    HostSelector, Portion, Strategy, Target, Timestamp, Version,
};
use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Config;
use crate::db::{Db, NewDeploy};
use crate::error::ApiError;
use crate::store::{ArtifactStore, LocalStore};

/// The branch built when a request names no ref.
pub const DEFAULT_BRANCH: &str = "main";

/// Shared state of one AppTracker; cheap to clone.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    bus: Bus,
    store: Arc<dyn ArtifactStore>,
    /// The local directory store, when it is the store: AppTracker serves it.
    local: Option<Arc<LocalStore>>,
    config: Config,
    /// Wakes the in-process builder when a build is queued.
    build_queued: Notify,
    /// Cancelled when the server stops, so long-lived streams end and the
    /// graceful shutdown does not wait on them.
    stopping: CancellationToken,
    /// The URL this server is reached at.
    base_url: String,
    /// Verifies VCS webhooks; webhooks are refused when unset.
    webhook_secret: Option<SecretString>,
    /// Git credentials, the build cache and the signing key, for ref
    /// resolution and the in-process builder.
    packer: packer::Settings,
    /// The public half of `packer.signing_key`.
    public_key: deploy::signing::PublicKey,
}

/// What a tracker is made of (see `startup.rs`).
pub struct Parts {
    pub db: Db,
    pub bus: Bus,
    pub store: Arc<dyn ArtifactStore>,
    pub local: Option<Arc<LocalStore>>,
    pub config: Config,
    pub base_url: String,
    pub webhook_secret: Option<SecretString>,
    pub packer: packer::Settings,
    /// Signs what the in-process builder builds (replaces whatever key
    /// `packer` holds).
    pub signing_key: deploy::signing::SigningKey,
}

impl Tracker {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            db,
            bus,
            store,
            local,
            config,
            base_url,
            webhook_secret,
            mut packer,
            signing_key,
        } = parts;
        let public_key = signing_key.public_key();
        packer.signing_key = Some(signing_key);
        Self {
            inner: Arc::new(Inner {
                db,
                bus,
                store,
                local,
                config,
                base_url,
                webhook_secret,
                packer,
                public_key,
                build_queued: Notify::new(),
                stopping: CancellationToken::new(),
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    pub fn store(&self) -> &dyn ArtifactStore {
        self.inner.store.as_ref()
    }

    pub fn local_store(&self) -> Option<&LocalStore> {
        self.inner.local.as_deref()
    }

    /// Swaps a stored artifact's key for a fresh download URL.
    pub async fn present_artifact(
        &self,
        mut a: deploy::ArtifactRef,
    ) -> anyhow::Result<deploy::ArtifactRef> {
        a.url = self.store().download_url(&a.url).await?;
        Ok(a)
    }

    /// A build as the API shows it: with a download URL, not the key.
    pub async fn present_build(&self, mut b: Build) -> Result<Build, ApiError> {
        if let Some(a) = b.artifact.take() {
            b.artifact = Some(self.present_artifact(a).await?);
        }
        Ok(b)
    }

    /// What a host should run, with fresh download URLs.
    pub async fn desired(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> Result<Vec<deploy::DesiredApp>, ApiError> {
        let mut apps = self.db().desired(cluster, host).await?;
        for a in &mut apps {
            a.artifact = self.present_artifact(a.artifact.clone()).await?;
        }
        Ok(apps)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The public half of the in-process builder's signing key.
    pub fn public_key(&self) -> deploy::signing::PublicKey {
        self.inner.public_key
    }

    pub fn packer_settings(&self) -> &packer::Settings {
        &self.inner.packer
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub fn webhook_secret(&self) -> Option<&SecretString> {
        self.inner.webhook_secret.as_ref()
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }

    pub fn build_queued(&self) -> &Notify {
        &self.inner.build_queued
    }

    async fn app_or_404(&self, app: &AppName) -> Result<deploy::App, ApiError> {
        self.db().app(app).await?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "unknown app `{app}`: register it first (POST /api/v1/apps)"
            ))
        })
    }

    // ------------------------------------------------------------ tokens

    /// Makes a token and returns its only plaintext copy.
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        cluster: Option<&Cluster>,
    ) -> Result<String, ApiError> {
        crate::auth::mint(self.db(), name, role, cluster).await
    }

    // ------------------------------------------------------------ builds

    /// Resolves `git_ref` in the app's repository to a full commit sha.
    async fn resolve(&self, git_url: &str, git_ref: &GitRef) -> Result<String, ApiError> {
        let url = git_url.to_string();
        let r = git_ref.to_string();
        let settings = self.inner.packer.clone();
        tokio::task::spawn_blocking(move || packer::resolve_ref(&settings, &url, &r))
            .await
            .context("ref resolution task panicked")?
            .map_err(|e| {
                ApiError::unprocessable("bad_ref", format!("cannot resolve `{git_ref}`: {e}"))
            })
    }

    /// A build of `git_ref`: a finished or in-flight build of the same
    /// commit is reused, never repeated. Returns the build and whether it is
    /// new.
    pub async fn request_build(
        &self,
        app: &AppName,
        git_ref: Option<&GitRef>,
    ) -> Result<(Build, bool), ApiError> {
        let registered = self.app_or_404(app).await?;
        let default_ref = GitRef::parse(DEFAULT_BRANCH)?;
        let git_ref = git_ref.unwrap_or(&default_ref);
        let commit = self.resolve(&registered.git_url, git_ref).await?;
        if let Some(build) = self.db().reusable_build(app, &commit).await? {
            return Ok((build, false));
        }
        let build = self
            .db()
            .insert_build(app, git_ref.as_str(), &commit)
            .await?;
        tracing::info!(app = %app, build_id = %build.id, version = %build.version, "build queued");
        self.build_queued().notify_one();
        Ok((build, true))
    }

    /// Starts the deploys that waited on `build`, or fails them.
    pub async fn on_build_finished(&self, build: BuildId) -> anyhow::Result<()> {
        let Some(b) = self.db().build(build).await? else {
            return Ok(());
        };
        for id in self.db().deploys_waiting_on(build).await? {
            match b.status {
                BuildStatus::Succeeded => self.start_rollout(id, &b).await?,
                _ => {
                    let error = format!(
                        "build #{} ({}) failed: {}",
                        b.number,
                        b.version,
                        b.error.as_deref().unwrap_or("see the build log")
                    );
                    self.transition(
                        id,
                        &[DeployStatus::Building],
                        DeployStatus::Failed,
                        None,
                        Some(&error),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ deploys

    /// Creates a deploy: checks everything first, so a bad request changes
    /// nothing, then publishes it or waits for its build.
    /// Refuses a deploy while another of the same app to the same cluster
    /// is building or running, naming it.
    pub(crate) async fn refuse_if_active(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> Result<(), ApiError> {
        match self.db().active_deploy(app, cluster).await? {
            None => Ok(()),
            Some((id, status)) => Err(ApiError::conflict(
                "deploy_in_progress",
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
    ) -> Result<deploy::Targets, ApiError> {
        let registered = self.db().hosts(Some(cluster)).await?;
        let alive_since = Timestamp::now().0 - self.config().host_alive.as_millis() as i64;
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
            return Err(ApiError::unprocessable(
                "no_matching_hosts",
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

    pub async fn create_deploy(&self, req: &CreateDeploy) -> Result<Deploy, ApiError> {
        self.create_deploy_on(req, None, None).await
    }

    /// Puts back, on every host the newest landed deploy of `app` to
    /// `cluster` replaced, the version it ran before, and pins the app
    /// there so auto-deploys do not undo it.
    pub async fn rollback_app(
        &self,
        app: &AppName,
        cluster: &Cluster,
        by: &str,
    ) -> Result<Deploy, ApiError> {
        self.app_or_404(app).await?;
        self.refuse_if_active(app, cluster).await?;
        let nothing = |why: String| ApiError::unprocessable("nothing_to_roll_back", why);
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
                return Err(ApiError::unprocessable(
                    "ambiguous_rollback",
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
        };
        self.create_deploy_on(&req, Some(hosts), None).await
    }

    /// A new deploy of the same version to the hosts of deploy `id` that
    /// failed or timed out, linked to it.
    pub async fn retry_deploy(&self, id: DeployId) -> Result<Deploy, ApiError> {
        let d = self.deploy(id).await?;
        if !d.status.is_terminal() {
            return Err(ApiError::conflict(
                "deploy_in_progress",
                format!("deploy {id} is {}; retry it once it ends", d.status),
            ));
        }
        let failed: Vec<HostName> = d
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Failed | HostPhase::TimedOut))
            .map(|h| h.host.clone())
            .collect();
        let Some(version) = d.version.clone() else {
            return Err(ApiError::unprocessable(
                "nothing_to_retry",
                format!("deploy {id} never had a build to deploy"),
            ));
        };
        if failed.is_empty() {
            return Err(ApiError::unprocessable(
                "nothing_to_retry",
                format!("no host of deploy {id} failed or timed out"),
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
        };
        self.create_deploy_on(&req, Some(failed), Some(id)).await
    }

    /// Creates a deploy of `req`, to `hosts` when given (a retry, a
    /// rollback, a drift sync), else to the hosts `req` selects.
    pub(crate) async fn create_deploy_on(
        &self,
        req: &CreateDeploy,
        hosts: Option<Vec<HostName>>,
        retry_of: Option<DeployId>,
    ) -> Result<Deploy, ApiError> {
        let app = self.app_or_404(&req.app).await?;
        self.refuse_if_active(&app.name, &req.cluster).await?;
        let selector = req.hosts.clone().unwrap_or_else(HostSelector::all);
        let targets: Vec<HostName> = match hosts {
            Some(h) => h,
            None => self
                .targets(&req.cluster, &selector)
                .await?
                .hosts
                .into_iter()
                .map(|h| h.name)
                .collect(),
        };
        let (build, git_ref) = match (&req.version, &req.git_ref) {
            (Some(v), None) => {
                let build = self.db().build_by_version(&req.app, v).await?;
                match build {
                    Some(b) if b.status == BuildStatus::Succeeded => (b, None),
                    Some(b) => {
                        return Err(ApiError::unprocessable(
                            "build_not_ready",
                            format!(
                                "build {} of `{}` is {:?}, not succeeded",
                                v, req.app, b.status
                            ),
                        ));
                    }
                    None => {
                        return Err(ApiError::NotFound(format!(
                            "app `{}` has no build with version `{v}`",
                            req.app
                        )));
                    }
                }
            }
            (None, Some(r)) => {
                let (b, _) = self.request_build(&req.app, Some(r)).await?;
                (b, Some(r.as_str()))
            }
            _ => {
                return Err(ApiError::Invalid(
                    "give exactly one of `version` and `git_ref`".into(),
                ));
            }
        };
        if let Some(pin) = self.db().pin(&app.name, &req.cluster).await?
            && pin.version != build.version
        {
            return Err(ApiError::conflict(
                "pinned",
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
        let inserted = self
            .db()
            .insert_deploy(&NewDeploy {
                app: &app.name,
                version: ready.then_some(&build.version),
                git_ref,
                build_id: Some(build.id),
                cluster: &req.cluster,
                selector: &selector,
                status: DeployStatus::Building,
                hosts: &targets,
                strategy: req.strategy,
                max_failures: req.max_failures,
                retry_of,
            })
            .await;
        let id = match inserted {
            Ok(id) => id,
            Err(e) => {
                // Two requests raced past the check: the unique index on
                // active deploys let one in; the other is told which.
                self.refuse_if_active(&app.name, &req.cluster).await?;
                return Err(e.into());
            }
        };
        tracing::info!(deploy_id = %id, app = %app.name, cluster = %req.cluster, hosts = targets.len(), "deploy created");
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

    pub async fn deploy(&self, id: DeployId) -> Result<Deploy, ApiError> {
        self.db()
            .deploy(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no deploy {id}")))
    }

    /// Moves the deploy to `running` and starts its first batch.
    async fn start_rollout(&self, id: DeployId, build: &Build) -> anyhow::Result<()> {
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
        self.publish_batch(id, build, 0).await
    }

    /// Records the desired version for the hosts of `batch` and rings the
    /// bus for exactly them.
    async fn publish_batch(&self, id: DeployId, build: &Build, batch: u32) -> anyhow::Result<()> {
        let deploy = self.deploy(id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let artifact = build
            .artifact
            .clone()
            .with_context(|| format!("build {} succeeded without an artifact", build.id))?;
        let artifact = self.present_artifact(artifact).await?;
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
        tracing::info!(deploy_id = %id, app = %deploy.app, version = %build.version,
            batch = batch + 1, batches, hosts = hosts.len(), "rollout batch published");
        self.bus()
            .publish(
                &deploy.cluster,
                BusMessage::Deploy(DeployMessage {
                    deploy_id: id,
                    app: deploy.app.clone(),
                    version: build.version.clone(),
                    artifact,
                    target: Target {
                        cluster: deploy.cluster.clone(),
                        hosts: deploy.hosts_selector.clone(),
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

    /// Moves a running deploy on once its current batch is over: halts it
    /// when the failures pass `max_failures` (the hosts of later batches
    /// stay untouched), bakes, starts the next batch, or ends it.
    async fn advance(&self, id: DeployId) -> anyhow::Result<()> {
        let Some(deploy) = self.db().deploy(id).await? else {
            return Ok(());
        };
        if deploy.status != DeployStatus::Running {
            return Ok(());
        }
        let current = deploy.current_batch;
        let in_batch = |b: u32| deploy.hosts.iter().filter(move |h| h.batch == b);
        if in_batch(current).any(|h| !h.phase.is_terminal()) {
            return Ok(());
        }
        let last = deploy.hosts.iter().map(|h| h.batch).max().unwrap_or(0);
        let failed = deploy
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Failed | HostPhase::TimedOut))
            .count();
        let allowed = deploy.max_failures.of(deploy.hosts.len());
        if current < last && failed > allowed {
            let reason = format!(
                "halted after batch {} of {}: {failed} host(s) failed, more than max_failures {} allows ({allowed})",
                current + 1,
                last + 1,
                deploy.max_failures
            );
            tracing::warn!(deploy_id = %id, app = %deploy.app, %reason, "rollout halted");
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
            return self.finish(id, Some(&reason)).await;
        }
        if current >= last {
            return self.finish(id, None).await;
        }
        let bake = deploy.strategy.bake_ms();
        if bake > 0 {
            let due = match self.db().next_batch_at(id).await? {
                Some(at) => at,
                None => {
                    let at = Timestamp(Timestamp::now().0 + bake as i64);
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
        let build = match deploy.build_id {
            Some(b) => self.db().build(b).await?,
            None => None,
        }
        .with_context(|| format!("deploy {id} has no build"))?;
        self.publish_batch(id, &build, current + 1).await
    }

    /// Ends a running deploy by how its hosts did.
    async fn finish(&self, id: DeployId, error: Option<&str>) -> anyhow::Result<()> {
        let hosts = self.db().deploy_hosts(id).await?;
        let ok = hosts.iter().filter(|h| h.phase.is_success()).count();
        let status = if ok == hosts.len() {
            DeployStatus::Succeeded
        } else if ok == 0 {
            DeployStatus::Failed
        } else {
            DeployStatus::Partial
        };
        self.transition(id, &[DeployStatus::Running], status, None, error)
            .await?;
        Ok(())
    }

    /// Stops a deploy: hosts not yet started stay untouched, hosts under
    /// way finish their install (a grabber never stops mid-step).
    pub async fn cancel_deploy(&self, id: DeployId) -> Result<Deploy, ApiError> {
        let d = self.deploy(id).await?;
        if d.status.is_terminal() {
            return Err(ApiError::conflict(
                "deploy_finished",
                format!("deploy {id} already ended: {}", d.status),
            ));
        }
        // While building nothing started; while running, the current
        // batch is under way.
        let from = if d.status == DeployStatus::Building {
            0
        } else {
            d.current_batch + 1
        };
        let untouched = self
            .db()
            .leave_unstarted(id, from, "not started: the deploy was cancelled")
            .await?;
        self.transition(
            id,
            &[DeployStatus::Building, DeployStatus::Running],
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
    async fn transition(
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
            let d = self.db().deploy(id).await?;
            self.bus()
                .emit(DeployEvent::Status {
                    deploy_id: id,
                    status: to,
                    version: d.as_ref().and_then(|d| d.version.clone()),
                    error: d.and_then(|d| d.error),
                })
                .await;
        }
        Ok(moved)
    }

    /// A grabber reports progress. Events for a host that already reached a
    /// terminal phase are kept in the history but change nothing.
    pub async fn host_event(
        &self,
        id: DeployId,
        host: &HostName,
        ev: &HostEvent,
    ) -> Result<DeployHost, ApiError> {
        let deploy = self.deploy(id).await?;
        if deploy.cluster != ev.cluster {
            return Err(ApiError::Invalid(format!(
                "deploy {id} targets cluster `{}`, not `{}`",
                deploy.cluster, ev.cluster
            )));
        }
        let (row, changed) = self
            .db()
            .record_host_event(id, host, ev)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("host `{host}` is not part of deploy {id}"))
            })?;
        if !changed {
            return Ok(row);
        }
        if row.phase == HostPhase::Failed {
            tracing::warn!(deploy_id = %id, host = %host, app = %deploy.app,
                failed_phase = ?row.failed_phase, rolled_back = row.rolled_back, "host failed");
            self.db()
                .revert_desired(&deploy.cluster, host, &deploy.app, id)
                .await?;
        }
        self.bus()
            .emit(DeployEvent::Host {
                deploy_id: id,
                host: row.clone(),
            })
            .await;
        if row.phase.is_terminal() {
            self.advance(id).await?;
        }
        Ok(row)
    }

    /// Marks hosts silent past the deadline as `timed_out`, and starts the
    /// batches whose bake is over.
    pub async fn sweep(&self) -> anyhow::Result<()> {
        for id in self.db().deploys_due(Timestamp::now()).await? {
            self.advance(id).await?;
        }
        let deadline = self.config().host_deadline;
        let before = Timestamp(Timestamp::now().0 - deadline.as_millis() as i64);
        for (id, host) in self.db().silent_hosts(before).await? {
            let Ok(host) = HostName::parse(host) else {
                continue;
            };
            let Some(deploy) = self.db().deploy(id).await? else {
                continue;
            };
            tracing::warn!(deploy_id = %id, host = %host, app = %deploy.app, "host timed out");
            let ev = HostEvent {
                cluster: deploy.cluster.clone(),
                phase: HostPhase::TimedOut,
                failed_phase: None,
                rolled_back: false,
                message: Some(format!(
                    "no progress report for {}",
                    humantime::format_duration(deadline)
                )),
                log_tail: None,
            };
            self.host_event(id, &host, &ev)
                .await
                .map_err(|e| anyhow::anyhow!("cannot time out host {host}: {e}"))?;
        }
        Ok(())
    }
}
