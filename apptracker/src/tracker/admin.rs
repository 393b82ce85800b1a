//! What the API changes besides builds, deploys and tokens: apps, cluster
//! controls (protection and freezes, with the rules a freeze obeys), pins,
//! hosts' heartbeats and version reports, dashboard sessions and the audit
//! log; and [`Queries`], the read-only view of the state the API shows.
//!
//! Handlers call these instead of the database: every state change goes
//! through the tracker, and a handler holds no handle that can write.

use std::time::Duration;

use deploy::report::{HostReport, MAX_REPORT_INTERVAL_MS, MIN_REPORT_INTERVAL_MS, ReportReceipt};
use deploy::{
    App, AppName, BuildId, Cluster, ClusterSettings, CreatedSession, Deploy, DeployId, Freeze,
    GitRef, Heartbeat, Host, HostName, RegisterApp, Timestamp,
};

use crate::db::{AuditRecord, Db};
use crate::model::{Origin, Principal, StoredBuild};
use crate::tracker::tokens::{generate_with, hash};
use crate::tracker::{DEFAULT_BRANCH, Error, Tracker};

/// How a dashboard session id starts; API tokens start with `slp_`.
pub(crate) const SESSION_PREFIX: &str = "sls_";

/// Whether a credential is a dashboard session id rather than a token.
pub(crate) fn is_session(credential: &str) -> bool {
    credential.starts_with(SESSION_PREFIX)
}

/// Longest freeze one request sets: a forgotten freeze should not block
/// deploys for years.
const MAX_FREEZE: Duration = Duration::from_secs(90 * 24 * 3600);

/// The most apps one version report may list: a host is not a package
/// mirror.
const MAX_APPS_PER_REPORT: usize = 1_000;

/// Who the deploys that bring a new host up to date are by.
pub const NEW_HOST_ACTOR: &str = "slipway: new host";

impl Tracker {
    // ------------------------------------------------------------ apps

    /// Registers an app. Its `git_url` must not be empty nor carry
    /// credentials (an app's URL is shown to every viewer and sent to every
    /// build worker), and its branch (`main` when absent) must name a
    /// branch (not a commit like `main~1`, nor `HEAD`, which stands for
    /// it); a taken name is a conflict.
    pub async fn register_app(&self, req: RegisterApp) -> Result<App, Error> {
        if req.git_url.trim().is_empty() {
            return Err(Error::Invalid("`git_url` must not be empty".into()));
        }
        if let Some(what) = packer::url_credentials(&req.git_url) {
            // Never echo the URL: it holds the secret.
            return Err(Error::Invalid(format!(
                "`git_url` must not carry credentials, and this one holds {what}: an app's URL is \
                 shown to every viewer and sent to every build worker. Register the URL without them \
                 (`https://git.example.com/team/app.git`) and give the credentials to packer: \
                 `[git] username` and `password_file` (or `ssh_key_file`) in AppTracker's config, \
                 `--git-username` and `--git-password-file` on `packer worker`"
            )));
        }
        let branch = req.branch.unwrap_or_else(|| DEFAULT_BRANCH.to_string());
        GitRef::parse_branch(branch.as_str())
            .map_err(|e| Error::Invalid(format!("`branch`: {e}")))?;
        let root = req
            .root
            .as_deref()
            .map(deploy::AppRoot::parse)
            .transpose()
            .map_err(|e| Error::Invalid(format!("`root`: {e}")))?;
        let app = App {
            name: req.name.clone(),
            git_url: req.git_url,
            branch,
            auto_deploy: req.auto_deploy,
            new_hosts: req.new_hosts,
            root: root.map(String::from),
            created_at: Timestamp::now(),
        };
        match self.db().insert_app(&app).await? {
            Some(app) => {
                tracing::info!(app = %app.name, root = app.root.as_deref().unwrap_or("."), "app registered");
                Ok(app)
            }
            None => Err(Error::Conflict(format!(
                "app `{}` is already registered",
                req.name
            ))),
        }
    }

    // ------------------------------------------------------------ cluster controls

    /// Marks a cluster protected (deploys must name it back) or not.
    pub async fn set_protected(
        &self,
        cluster: &Cluster,
        protected: bool,
        by: &str,
    ) -> Result<ClusterSettings, Error> {
        self.db().set_protected(cluster, protected, by).await?;
        tracing::info!(%cluster, protected, by = %by, "cluster protection set");
        self.controls_of(cluster).await
    }

    /// Freezes a cluster: no deploy starts there until the freeze ends or
    /// is lifted (rollbacks still do). A freeze says why (1 to 500
    /// characters) and ends at `until` or after `duration` (exactly one of
    /// them), in the future and at most [`MAX_FREEZE`] away; a longer
    /// `duration` is cut to it.
    pub async fn freeze_cluster(
        &self,
        cluster: &Cluster,
        req: &Freeze,
        by: &str,
    ) -> Result<ClusterSettings, Error> {
        let reason = req.reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(Error::Invalid(
                "`reason` must say why the cluster is frozen (1 to 500 characters)".into(),
            ));
        }
        let now = Timestamp::now();
        let until = match (req.until, req.duration.as_deref()) {
            (Some(until), None) => until,
            (None, Some(d)) => {
                let d = humantime::parse_duration(d).map_err(|e| {
                    Error::Invalid(format!(
                        "`duration` `{d}` is not a duration like 2h or 30m: {e}"
                    ))
                })?;
                let ms = i64::try_from(d.as_millis().min(MAX_FREEZE.as_millis())).unwrap_or(0);
                Timestamp(now.0.saturating_add(ms))
            }
            _ => {
                return Err(Error::Invalid(
                    "give exactly one of `until` (ms since the epoch) and `duration` (like 2h)"
                        .into(),
                ));
            }
        };
        if until <= now {
            return Err(Error::Invalid(format!(
                "`until` {until} is not in the future"
            )));
        }
        if until.0 - now.0 > MAX_FREEZE.as_millis() as i64 {
            return Err(Error::Invalid(format!(
                "a freeze lasts at most {}; freeze again to extend it",
                humantime::format_duration(MAX_FREEZE)
            )));
        }
        self.db()
            .set_freeze(cluster, Some(until), Some(reason), by)
            .await?;
        tracing::warn!(%cluster, %until, reason, by = %by, "cluster frozen");
        self.controls_of(cluster).await
    }

    /// Lifts a cluster's freeze; the deploys queued behind it start.
    pub async fn thaw_cluster(
        &self,
        cluster: &Cluster,
        by: &str,
    ) -> Result<ClusterSettings, Error> {
        self.db().set_freeze(cluster, None, None, by).await?;
        tracing::info!(%cluster, by = %by, "cluster thawed");
        self.wake_queues(cluster).await?;
        self.controls_of(cluster).await
    }

    /// A cluster's controls just after they were set.
    async fn controls_of(&self, cluster: &Cluster) -> Result<ClusterSettings, Error> {
        self.db()
            .cluster_settings(cluster)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("cluster `{cluster}` vanished")))
    }

    // ------------------------------------------------------------ pins

    /// Unpins `app` on `cluster`: other versions may be deployed there
    /// again. Not pinned there is not found.
    pub async fn unpin(&self, app: &AppName, cluster: &Cluster, by: &str) -> Result<(), Error> {
        if !self.db().delete_pin(app, cluster).await? {
            return Err(Error::NotFound(format!(
                "`{app}` is not pinned on `{cluster}`"
            )));
        }
        tracing::info!(%app, %cluster, by = %by, "unpinned");
        Ok(())
    }

    // ------------------------------------------------------------ hosts

    /// A grabber's heartbeat: registers its host, or says it is alive.
    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<Host, Error> {
        if let Some(peer) = &hb.peer {
            peer.check().map_err(Error::Invalid)?;
        }
        let mut host = self.db().upsert_host(hb).await?;
        host.peer_ticket_key = Some(self.peer_ticket_public_key().to_string());
        host.desired_fingerprint =
            Some(self.db().desired_fingerprint(&hb.cluster, &hb.host).await?);
        // The first heartbeat of a host (its row was just made: registered
        // and last seen at the same instant) gets what its cluster runs.
        if host.registered_at == host.last_seen {
            self.converge_new_host(&hb.cluster, &hb.host).await;
        }
        Ok(host)
    }

    /// Gives a host that joined `cluster` the version of every app the
    /// cluster's last landed deploy of it installed (the pinned version,
    /// where a pin holds), each as a deploy to that host alone, so everyone
    /// sees it happen. An app the cluster never ran, or one with a deploy
    /// under way (which started without this host), is left for the next
    /// deploy; refusals are logged, never the heartbeat's failure.
    async fn converge_new_host(&self, cluster: &Cluster, host: &HostName) {
        let apps = match self.db().apps().await {
            Ok(apps) => apps,
            Err(e) => {
                tracing::error!(%cluster, %host, error = %e, "cannot list apps for a new host");
                return;
            }
        };
        for app in apps {
            if app.new_hosts == deploy::NewHostPolicy::Manual {
                tracing::info!(app = %app.name, %cluster, %host, "new host: app waits for a deploy (new_hosts = manual)");
                continue;
            }
            let version = match self.db().pin(&app.name, cluster).await {
                Ok(Some(pin)) => Some(pin.version),
                Ok(None) => match self.db().last_landed_deploy(&app.name, cluster).await {
                    // Stopped on the cluster (`deploy stop`): it stays
                    // stopped, here too, until a start or a deploy.
                    Ok(Some((id, _))) if self.was_stop(id).await => None,
                    Ok(landed) => landed.map(|(_, v)| v),
                    Err(e) => {
                        tracing::error!(app = %app.name, %cluster, %host, error = %e, "cannot read what the cluster runs");
                        None
                    }
                },
                Err(e) => {
                    tracing::error!(app = %app.name, %cluster, %host, error = %e, "cannot read the app's pin");
                    None
                }
            };
            let Some(version) = version else {
                continue;
            };
            let req = deploy::CreateDeploy {
                app: app.name.clone(),
                version: Some(version.clone()),
                git_ref: None,
                cluster: cluster.clone(),
                hosts: None,
                strategy: deploy::Strategy::AllAtOnce,
                max_failures: deploy::Portion::default(),
                rollback_on_failure: false,
                confirm: None,
                wait: false,
            };
            let origin = Origin {
                hosts: Some(vec![host.clone()]),
                automated: true,
                by: Some(NEW_HOST_ACTOR),
                ..Origin::default()
            };
            match self.create_deploy_on(&req, origin).await {
                Ok(d) => {
                    tracing::info!(deploy_id = %d.id, app = %app.name, %cluster, %host, %version, "new host gets its cluster's version");
                }
                Err(e) => {
                    tracing::warn!(app = %app.name, %cluster, %host, %version, error = %e, "new host not given its cluster's version");
                }
            }
        }
    }

    /// Whether deploy `id` stopped its app (`deploy stop`).
    async fn was_stop(&self, id: DeployId) -> bool {
        matches!(
            self.db().deploy_row(id).await,
            Ok(Some(d)) if d.action == deploy::DeployAction::Stop
        )
    }

    /// Stores a versionchecker's report, dated by this server's clock (host
    /// clocks never matter): its `age_ms` counts back at most one interval,
    /// so a confused agent cannot date a report earlier. The interval must
    /// be within the protocol's bounds, the apps at most
    /// [`MAX_APPS_PER_REPORT`].
    pub async fn store_report(&self, r: &HostReport) -> Result<ReportReceipt, Error> {
        if !(MIN_REPORT_INTERVAL_MS..=MAX_REPORT_INTERVAL_MS).contains(&r.interval_ms) {
            return Err(Error::Invalid(format!(
                "`interval_ms` must be between {MIN_REPORT_INTERVAL_MS} and {MAX_REPORT_INTERVAL_MS}, not {}",
                r.interval_ms
            )));
        }
        if r.apps.len() > MAX_APPS_PER_REPORT {
            return Err(Error::Invalid(format!(
                "a report lists at most {MAX_APPS_PER_REPORT} apps, not {}",
                r.apps.len()
            )));
        }
        let age = r.age_ms.min(r.interval_ms) as i64;
        let observed_at = Timestamp(Timestamp::now().0 - age);
        self.db().store_report(r, observed_at).await?;
        tracing::debug!(cluster = %r.cluster, host = %r.host, apps = r.apps.len(), "host reported");
        Ok(ReportReceipt { observed_at })
    }

    // ------------------------------------------------------------ credentials and sessions

    /// Who a credential (an API token, or a dashboard session id) acts
    /// for; `None` when it is unknown, revoked or expired. A session acts
    /// for its token while both live: a revoked token has no row, so its
    /// sessions find no principal. Records when the token was last used.
    pub async fn authenticate(&self, credential: &str) -> Result<Option<Principal>, Error> {
        let token_hash = if is_session(credential) {
            match self
                .db()
                .session_token(&hash(credential), Timestamp::now())
                .await?
            {
                Some(token_hash) => token_hash,
                None => return Ok(None),
            }
        } else {
            hash(credential)
        };
        Ok(self.db().principal_by_hash(&token_hash).await?)
    }

    /// Opens a dashboard session for `token`, an API token (never another
    /// session, or a stolen session could be renewed for ever: the caller
    /// refuses those), expiring after `session_ttl`; returns its only
    /// plaintext copy.
    pub async fn open_session(
        &self,
        token: &str,
        who: &Principal,
    ) -> Result<CreatedSession, Error> {
        let (session, session_hash) = generate_with(SESSION_PREFIX)?;
        let now = Timestamp::now();
        let ttl = i64::try_from(self.config().session_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at = Timestamp(now.0.saturating_add(ttl));
        self.db()
            .insert_session(&session_hash, &hash(token), now, expires_at)
            .await?;
        tracing::info!(token = %who.name, role = %who.role, "dashboard session opened");
        Ok(CreatedSession {
            session,
            expires_at,
        })
    }

    /// Closes a dashboard session (signing out).
    pub async fn close_session(&self, session: &str, who: &Principal) -> Result<(), Error> {
        self.db().delete_session(&hash(session)).await?;
        tracing::info!(token = %who.name, "dashboard session closed");
        Ok(())
    }

    // ------------------------------------------------------------ audit

    /// Appends one entry to the audit log.
    pub async fn record_audit(&self, r: &AuditRecord) -> sqlx::Result<()> {
        self.db().insert_audit(r).await
    }

    /// Keeps the newest `keep` audit entries of `actor` (the anonymous
    /// ones), deleting the older.
    pub async fn prune_audit_of(&self, actor: &str, keep: i64) -> sqlx::Result<u64> {
        self.db().prune_audit_of(actor, keep).await
    }

    /// The reads the API serves; see [`Queries`].
    pub fn queries(&self) -> Queries<'_> {
        Queries { db: self.db() }
    }
}

/// The reads the API serves, and only reads: what handlers get instead of
/// the database, so that none of them can change state except through the
/// tracker's methods.
#[derive(Clone, Copy)]
pub struct Queries<'a> {
    db: &'a Db,
}

impl Queries<'_> {
    pub async fn app(&self, name: &AppName) -> sqlx::Result<Option<App>> {
        self.db.app(name).await
    }

    pub async fn apps_page(&self, after: Option<&AppName>, limit: i64) -> sqlx::Result<Vec<App>> {
        self.db.apps_page(after, limit).await
    }

    pub async fn build(&self, id: BuildId) -> sqlx::Result<Option<StoredBuild>> {
        self.db.build(id).await
    }

    /// Builds newest first, of one app when given.
    pub async fn builds(
        &self,
        app: Option<&AppName>,
        before: Option<i64>,
        limit: i64,
    ) -> sqlx::Result<Vec<StoredBuild>> {
        self.db.builds(app, before, limit).await
    }

    /// Deploys newest first, those `filter` keeps.
    pub async fn deploys(
        &self,
        before: Option<i64>,
        limit: i64,
        filter: &crate::db::DeployFilter<'_>,
    ) -> anyhow::Result<Vec<Deploy>> {
        self.db.deploys_filtered(before, limit, filter).await
    }

    pub async fn host_events(
        &self,
        id: DeployId,
        after: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<(i64, deploy::HostEventRecord)>> {
        self.db.host_events(id, after, limit).await
    }

    pub async fn pins_page(
        &self,
        app: &AppName,
        after: Option<&Cluster>,
        limit: i64,
    ) -> anyhow::Result<Vec<deploy::Pin>> {
        self.db.pins_page(app, after, limit).await
    }

    pub async fn all_pins(&self) -> anyhow::Result<Vec<deploy::Pin>> {
        self.db.all_pins().await
    }

    pub async fn clusters(&self) -> anyhow::Result<Vec<ClusterSettings>> {
        self.db.clusters().await
    }

    pub async fn cluster_settings(
        &self,
        cluster: &Cluster,
    ) -> anyhow::Result<Option<ClusterSettings>> {
        self.db.cluster_settings(cluster).await
    }

    pub async fn hosts_page(
        &self,
        after: Option<&(Cluster, HostName)>,
        limit: i64,
    ) -> anyhow::Result<Vec<Host>> {
        self.db.hosts_page(after, limit).await
    }

    pub async fn tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<deploy::TokenInfo>> {
        self.db.tokens(after, limit).await
    }

    pub async fn audit(
        &self,
        limit: i64,
        before: Option<i64>,
        actor: Option<&str>,
        app: Option<&AppName>,
    ) -> sqlx::Result<Vec<deploy::AuditEntry>> {
        self.db.audit(limit, before, actor, app).await
    }

    pub async fn deploy_counts(&self) -> anyhow::Result<Vec<(AppName, Cluster, String, i64)>> {
        self.db.deploy_counts().await
    }

    /// Finished builds per app and outcome, for a duration histogram:
    /// `(app, outcome, count, sum_ms, buckets)`, the buckets counting the
    /// builds at or under each bound of `BUILD_BUCKETS_MS`.
    pub async fn build_durations(
        &self,
    ) -> anyhow::Result<Vec<(AppName, String, i64, i64, Vec<i64>)>> {
        let rows = self.db.build_durations().await?;
        Ok(rows
            .into_iter()
            .map(|b| (b.app, b.outcome, b.count, b.sum_ms, b.buckets))
            .collect())
    }
}
