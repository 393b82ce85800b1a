//! Deploy orchestration: the state machine of builds, deploys and hosts,
//! one stage per file (`tracker/{builds,create,release,rollback,rollout,
//! sweep,sync,tokens}.rs`; `notify.rs` and `drift_watch.rs` send events),
//! with the build queue in `queue.rs` and webhooks in `webhooks.rs`. The HTTP layer parses input and calls in here;
//! everything that writes desired state goes through this module.
//!
//! This layer knows no HTTP: it returns its own [`Error`] (a refusal
//! carries its `deploy::ErrorCode`), which the HTTP layer turns into an
//! answer in one place. It reads and writes through `db`, in `model`'s
//! internal rows, and makes the wire types on the way out
//! (`present_build`, `present_artifact`, `desired`).

use std::sync::Arc;

use anyhow::Context;
use deploy::{
    AppName, ArtifactRef, Build, BuildId, BuildStatus, BusMessage, Cluster, CreateDeploy, Deploy,
    DeployEvent, DeployHost, DeployId, DeployMessage, DeployStatus, ErrorCode, GitRef, HostEvent,
    HostName, HostPhase, HostSelector, Portion, Strategy, Target, Timestamp, Version,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Config;
use crate::db::{Db, NewDeploy};
pub(crate) use crate::model::Origin;
use crate::model::{DeployRow, StoredArtifact, StoredBuild};
use crate::store::{ArtifactStore, LocalStore};

// One `impl Tracker` block per stage of a deploy's life.
pub(crate) mod admin;
mod apps;
mod builds;
mod config;
mod create;
pub(crate) mod drift_watch;
mod error;
mod logs;
pub(crate) mod notify;
pub(crate) mod peers;
mod release;
mod rollback;
mod rollout;
mod sources;
mod sweep;
mod sync;
pub(crate) mod tokens;

pub use error::Error;

use create::bad_build;

/// The branch an app follows when its registration names none.
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
    /// Wakes the notification sender when a delivery is queued.
    delivery_queued: Notify,
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
    /// Signs peer tickets (`deploy::peer`); its public half goes to every
    /// grabber in the heartbeat's answer.
    peer_ticket_key: deploy::signing::SigningKey,
    /// How often each host of a deploy was handed out as a peer, to spread
    /// the fetching hosts over the holders (`peers.rs`).
    peer_uses: std::sync::Mutex<peers::PeerUses>,
    /// When the sweeper last published each unreported host's deploy again
    /// (`sweep.rs`).
    republished: std::sync::Mutex<std::collections::HashMap<(DeployId, HostName), Timestamp>>,
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
    /// Signs peer tickets (`[peers] ticket_key_file`).
    pub peer_ticket_key: deploy::signing::SigningKey,
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
            peer_ticket_key,
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
                peer_ticket_key,
                peer_uses: Default::default(),
                republished: Default::default(),
                build_queued: Notify::new(),
                token_revoked: Notify::new(),
                delivery_queued: Notify::new(),
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

    /// A stored artifact as hosts and clients see it: with a fresh
    /// download URL in place of its key. The one way out for an artifact.
    pub async fn present_artifact(&self, a: &StoredArtifact) -> anyhow::Result<ArtifactRef> {
        let index = match &a.index {
            Some(i) => Some(deploy::IndexRef {
                url: self.store().download_url(i.key.as_str()).await?,
                sha256: i.sha256.clone(),
                size: i.size,
                signature: i.signature.clone(),
            }),
            None => None,
        };
        Ok(ArtifactRef {
            url: self.store().download_url(a.key.as_str()).await?,
            sha256: a.sha256.clone(),
            size: a.size,
            signature: a.signature.clone(),
            index,
        })
    }

    /// A build as the API shows it: with a download URL, not the key.
    pub async fn present_build(&self, b: StoredBuild) -> Result<Build, Error> {
        let (mut build, artifact) = b.into_parts();
        if let Some(a) = artifact {
            build.artifact = Some(self.present_artifact(&a).await?);
        }
        Ok(build)
    }

    /// What a host should run, with fresh download URLs.
    pub async fn desired(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> Result<Vec<deploy::DesiredApp>, Error> {
        let mut apps = Vec::new();
        for row in self.db().desired(cluster, host).await? {
            apps.push(deploy::DesiredApp {
                artifact: self.present_artifact(&row.artifact).await?,
                app: row.app,
                version: row.version,
                deploy_id: row.deploy_id,
                config_version: row.config_version,
                action: row.action,
            });
        }
        Ok(apps)
    }

    /// The oldest heartbeat of a host still alive (`host_alive` ago).
    pub(crate) fn alive_since(&self) -> Timestamp {
        Timestamp(Timestamp::now().0 - self.config().host_alive.as_millis() as i64)
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

    pub fn delivery_queued(&self) -> &Notify {
        &self.inner.delivery_queued
    }

    pub fn build_queued(&self) -> &Notify {
        &self.inner.build_queued
    }

    /// Resolves once the token `p` authenticated with is revoked: checked
    /// every `token_recheck`, and at once when it is revoked through this
    /// replica. Long-lived streams end with it.
    pub fn until_revoked(
        &self,
        p: &crate::model::Principal,
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

    pub(super) async fn app_or_404(&self, app: &AppName) -> Result<deploy::App, Error> {
        self.db().app(app).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "unknown app `{app}`: register it first (POST /api/v1/apps)"
            ))
        })
    }
}
