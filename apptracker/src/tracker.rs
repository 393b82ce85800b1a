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
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Config;
use crate::db::{Db, NewDeploy};
use crate::error::ApiError;
use crate::store::{ArtifactStore, LocalStore};

/// How a deploy came to be, beyond what its request says.
#[derive(Default)]
pub(crate) struct Origin<'a> {
    /// The exact hosts (a retry, a rollback, a drift sync) instead of those
    /// the request selects.
    pub hosts: Option<Vec<HostName>>,
    pub retry_of: Option<DeployId>,
    pub rollback_of: Option<DeployId>,
    /// Puts a version back that the hosts should run (a rollback, a drift
    /// sync): allowed during a freeze and past a pin.
    pub rollback: bool,
    /// Set up or confirmed in advance (auto-deploys, retries of a confirmed
    /// deploy, rollbacks on failure, syncs to the desired version): no typed
    /// confirmation for protected clusters.
    pub automated: bool,
    /// The token name of whoever asked.
    pub by: Option<&'a str>,
    /// The build to deploy, already requested (a webhook's push), instead
    /// of resolving the request's `git_ref` again; the ref is its label.
    pub build: Option<Build>,
}

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
    /// Wakes long-lived streams to check their token when one is revoked
    /// here (other replicas' revocations are seen at `token_recheck`).
    token_revoked: Notify,
    /// Cancelled when the server stops, so long-lived streams end and the
    /// graceful shutdown does not wait on them.
    stopping: CancellationToken,
    /// The URL this server is reached at.
    base_url: String,
    /// Seals and opens the secrets kept in the database (webhook secrets).
    secrets: crate::secrets::SecretsKey,
    /// One lock per app, held while a push decides whether it deploys and
    /// creates its build, so two pushes of one app cannot both pass the
    /// "nothing newer is built" check (see `webhooks.rs`).
    push_locks: std::sync::Mutex<std::collections::HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
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
    /// Seals the secrets kept in the database.
    pub secrets: crate::secrets::SecretsKey,
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
            secrets,
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
                secrets,
                push_locks: Default::default(),
                packer,
                public_key,
                build_queued: Notify::new(),
                token_revoked: Notify::new(),
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

    pub fn secrets(&self) -> &crate::secrets::SecretsKey {
        &self.inner.secrets
    }

    /// The lock pushes of `app` take turns on (see `push_locks`).
    pub(crate) fn push_lock(&self, app: &AppName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .push_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Locks nobody holds or waits on are dropped, so the map stays as
        // small as the number of apps being pushed right now.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(app.clone()).or_default().clone()
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }

    pub fn build_queued(&self) -> &Notify {
        &self.inner.build_queued
    }

    /// Resolves once the token `p` authenticated with is revoked: checked
    /// every `token_recheck`, and at once when it is revoked through this
    /// replica. Long-lived streams end with it.
    pub fn until_revoked(
        &self,
        p: &crate::auth::Principal,
    ) -> impl std::future::Future<Output = ()> + Send + use<> {
        let t = self.clone();
        let (id, name) = (p.id, p.name.clone());
        async move {
            let every = t.config().token_recheck;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = t.inner.token_revoked.notified() => {}
                }
                match t.db().token_exists(id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(token = %name, "token revoked: ending its stream");
                        return;
                    }
                    // A database hiccup is no revocation: ask again later.
                    Err(e) => {
                        tracing::warn!(error = %e, token = %name, "cannot check a stream's token")
                    }
                }
            }
        }
    }

    /// Revokes a token; false when there is none of that name. Streams
    /// authenticated by it end.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, ApiError> {
        let gone = self.db().delete_token(name).await?;
        if gone {
            self.inner.token_revoked.notify_waiters();
        }
        Ok(gone)
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
        crate::auth::mint(self.db(), name, role, cluster, None).await
    }

    /// Makes the token `req` asks for (a host-bound agent token too) and
    /// returns its only plaintext copy.
    pub async fn create_token_for(&self, req: &deploy::CreateToken) -> Result<String, ApiError> {
        crate::auth::mint(
            self.db(),
            &req.name,
            &req.role,
            req.cluster.as_ref(),
            req.host.as_ref(),
        )
        .await
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
        self.build_commit(app, git_ref.as_str(), &commit).await
    }

    /// A build of `commit` (a full sha, already known to be in the
    /// repository), labelled `label` (the ref it was asked by): reused
    /// when one exists, else queued. Returns it and whether it is new.
    pub async fn build_commit(
        &self,
        app: &AppName,
        label: &str,
        commit: &str,
    ) -> Result<(Build, bool), ApiError> {
        if let Some(build) = self.db().reusable_build(app, commit).await? {
            return Ok((build, false));
        }
        let build = self.db().insert_build(app, label, commit).await?;
        tracing::info!(app = %app, build_id = %build.id, version = %build.version, "build queued");
        self.build_queued().notify_one();
        Ok((build, true))
    }

    /// Marks an ended build bad: never reused (the next deploy of its
    /// commit by ref builds it again), and deploys naming its version are
    /// refused. Marking a build twice changes nothing.
    pub async fn mark_build_bad(
        &self,
        id: BuildId,
        by: &str,
        reason: &str,
    ) -> Result<Build, ApiError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
            return Err(ApiError::Invalid(
                "`reason` must say why the build is bad (1 to 500 printable characters)".into(),
            ));
        }
        let build = self
            .db()
            .build(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
        if !build.status.is_terminal() {
            return Err(ApiError::Conflict(format!(
                "build {id} ({}) is {:?}: mark it bad once it has ended",
                build.version, build.status
            )));
        }
        if self.db().mark_build_bad(id, by, reason).await? {
            tracing::warn!(build_id = %id, app = %build.app, version = %build.version, by, reason,
                "build marked bad");
        }
        let build = self
            .db()
            .build(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
        self.present_build(build).await
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

    /// A deploy someone asked for.
    pub async fn create_deploy(&self, req: &CreateDeploy, by: &str) -> Result<Deploy, ApiError> {
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
        build: Option<Build>,
    ) -> Result<Deploy, ApiError> {
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
    async fn check_cluster(
        &self,
        cluster: &Cluster,
        confirm: Option<&Cluster>,
        origin: &Origin<'_>,
    ) -> Result<(), ApiError> {
        let Some(c) = self.db().cluster_settings(cluster).await? else {
            return Ok(());
        };
        if !origin.rollback
            && let Some(until) = c.frozen_at(Timestamp::now())
        {
            return Err(ApiError::conflict(
                "cluster_frozen",
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
            return Err(ApiError::unprocessable(
                "confirmation_required",
                format!(
                    "cluster `{cluster}` is protected: confirm by naming it{given}: `\"confirm\": \"{cluster}\"` \
                     in the request, `--yes-i-mean-{cluster}` on the command line"
                ),
            ));
        }
        Ok(())
    }

    /// Puts back, on every host the newest landed deploy of `app` to
    /// `cluster` replaced, the version it ran before, and pins the app
    /// there so auto-deploys do not undo it.
    pub async fn rollback_app(
        &self,
        app: &AppName,
        cluster: &Cluster,
        confirm: Option<&Cluster>,
        by: &str,
    ) -> Result<Deploy, ApiError> {
        self.app_or_404(app).await?;
        let origin = Origin {
            rollback: true,
            by: Some(by),
            ..Origin::default()
        };
        // Checked before the pin is set, so a refusal changes nothing.
        self.check_cluster(cluster, confirm, &origin).await?;
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
    async fn roll_back_switched(&self, failed: DeployId) -> anyhow::Result<Option<Deploy>> {
        let d = self
            .deploy(failed)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
            .map_err(|e| anyhow::anyhow!("cannot roll back deploy {failed}: {e}"))?;
        tracing::warn!(deploy_id = %failed, app = %d.app, rollback = %back.id, version = %back_to,
            hosts = hosts.len(), "rolling the switched hosts back");
        Ok(Some(back))
    }

    /// A new deploy of the same version to the hosts of deploy `id` that
    /// failed, timed out or were unreachable, linked to it. The original
    /// deploy's confirmation stands for a protected cluster; a freeze
    /// refuses it.
    pub async fn retry_deploy(&self, id: DeployId, by: &str) -> Result<Deploy, ApiError> {
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
            .filter(|h| h.phase.is_failure())
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

    /// Creates a deploy of `req`, to `origin.hosts` when given (a retry, a
    /// rollback), else to the hosts `req` selects. Queued behind the active
    /// deploy of the app to the cluster when `req.wait`, refused otherwise.
    pub(crate) async fn create_deploy_on(
        &self,
        req: &CreateDeploy,
        origin: Origin<'_>,
    ) -> Result<Deploy, ApiError> {
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
            .map_err(|e| ApiError::Invalid(format!("strategy: {e}")))?;
        let (build, git_ref) = match (&req.version, &req.git_ref) {
            (Some(v), None) => {
                let build = self.db().build_by_version(&req.app, v).await?;
                if let Some(b) = &build
                    && let Some(bad) = &b.bad
                {
                    return Err(bad_build(b, bad));
                }
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
            (None, Some(r)) => match origin.build {
                Some(ref b) => (b.clone(), Some(r.as_str())),
                None => {
                    let (b, _) = self.request_build(&req.app, Some(r)).await?;
                    (b, Some(r.as_str()))
                }
            },
            _ => {
                return Err(ApiError::Invalid(
                    "give exactly one of `version` and `git_ref`".into(),
                ));
            }
        };
        if !origin.rollback
            && let Some(pin) = self.db().pin(&app.name, &req.cluster).await?
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
    async fn supersede_queued(
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
    async fn start_next_queued(&self, app: &AppName, cluster: &Cluster) -> anyhow::Result<()> {
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

    /// Lets a deploy waiting for a human (a manual canary) start its next
    /// batch.
    pub async fn continue_deploy(&self, id: DeployId) -> Result<Deploy, ApiError> {
        let d = self.deploy(id).await?;
        if d.paused_at.is_none() {
            return Err(ApiError::conflict(
                "not_paused",
                format!("deploy {id} is {} and not waiting to continue", d.status),
            ));
        }
        if self.db().continue_deploy(id, d.current_batch + 1).await? {
            tracing::info!(deploy_id = %id, app = %d.app, batch = d.current_batch + 2, "deploy continued");
            self.advance(id).await?;
        }
        self.deploy(id).await
    }

    pub async fn deploy(&self, id: DeployId) -> Result<Deploy, ApiError> {
        self.db()
            .deploy(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no deploy {id}")))
    }

    /// Moves the deploy to `running` and starts its first batch; fails it
    /// instead when its build was marked bad while it waited.
    async fn start_rollout(&self, id: DeployId, build: &Build) -> anyhow::Result<()> {
        if let Some(bad) = self.db().build(build.id).await?.and_then(|b| b.bad) {
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
                    release: deploy::Release {
                        deploy_id: id,
                        app: deploy.app.clone(),
                        version: build.version.clone(),
                        artifact,
                    },
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

    /// Moves a running deploy on when a host ends or a bake is over: halts
    /// it when the failures pass `max_failures` (the hosts of batches not
    /// started stay untouched; it ends once the hosts under way are done),
    /// waits for a human or a bake, starts the next batch (as many as fit
    /// beside the hosts under way, with overlapping batches), or ends it.
    async fn advance(&self, id: DeployId) -> anyhow::Result<()> {
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
            // Ends first (the rollback needs the app's deploy slot), then
            // says what undoes it.
            self.finish(id, Some(&reason)).await?;
            reason = match self.roll_back_switched(id).await {
                Ok(Some(back)) => format!(
                    "{reason}; the {} host(s) that switched are rolled back by deploy {}",
                    back.hosts.len(),
                    back.id
                ),
                Ok(None) => format!("{reason}; no host switched: nothing to roll back"),
                Err(e) => {
                    tracing::error!(deploy_id = %id, app = %deploy.app, error = %e, "rollback on failure failed");
                    format!("{reason}; the rollback could not start: {e}")
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
    async fn next_batch(&self, deploy: &Deploy, in_flight: usize) -> anyhow::Result<()> {
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

    async fn build_of(&self, deploy: &Deploy) -> anyhow::Result<Build> {
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
    async fn finish(&self, id: DeployId, error: Option<&str>) -> anyhow::Result<()> {
        let tally = Tally(self.db().batch_phases(id).await?);
        let ok = tally.count(|_, p| p.is_success());
        let status = if ok == tally.count(|_, _| true) {
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
            let d = self.db().deploy_row(id).await?;
            self.bus()
                .emit(DeployEvent::Status {
                    deploy_id: id,
                    status: to,
                    version: d.as_ref().and_then(|d| d.version.clone()),
                    error: d.as_ref().and_then(|d| d.error.clone()),
                })
                .await;
            // The slot is free: the next queued deploy of the app goes.
            if to.is_terminal()
                && let Some(d) = d
            {
                Box::pin(self.start_next_queued(&d.app, &d.cluster)).await?;
            }
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
        let deploy = self
            .db()
            .deploy_row(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no deploy {id}")))?;
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
        for (app, cluster) in self.db().stalled_queues().await? {
            self.start_next_queued(&app, &cluster).await?;
        }
        let silent = self.config().host_unreachable;
        let since = Timestamp(Timestamp::now().0 - silent.as_millis() as i64);
        for (id, host) in self.db().unreachable_hosts(since).await? {
            let Ok(host) = HostName::parse(host) else {
                continue;
            };
            let Some(deploy) = self.db().deploy(id).await? else {
                continue;
            };
            tracing::warn!(deploy_id = %id, host = %host, app = %deploy.app, "host unreachable");
            let ev = HostEvent {
                cluster: deploy.cluster.clone(),
                phase: HostPhase::Unreachable,
                failed_phase: None,
                rolled_back: false,
                message: Some(format!(
                    "its grabber has not heartbeated for {}: the host or its agent is down",
                    humantime::format_duration(silent)
                )),
                log_tail: None,
            };
            self.host_event(id, &host, &ev)
                .await
                .map_err(|e| anyhow::anyhow!("cannot mark host {host} unreachable: {e}"))?;
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

/// The refusal of a deploy of a build marked bad.
fn bad_build(b: &Build, bad: &deploy::BadMark) -> ApiError {
    ApiError::unprocessable(
        "build_marked_bad",
        format!(
            "build {} ({}) of `{}` was marked bad by {} at {}: {}; deploy another version, or \
             deploy its commit by ref to build it again",
            b.id, b.version, b.app, bad.by, bad.at, bad.reason
        ),
    )
}

/// A deploy's hosts counted per batch and phase (`Db::batch_phases`).
struct Tally(Vec<(u32, HostPhase, u64)>);

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
