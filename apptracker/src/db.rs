//! State in SQL through sqlx's `Any` driver: the same queries on SQLite (the
//! embedded default) and PostgreSQL. Times are unix milliseconds and
//! booleans 0/1 integers, which `Any` decodes on both backends.
//!
//! Artifacts are stored by key: an `ArtifactRef` read from or written to this
//! module carries the store key in `url`; the tracker swaps in a signed
//! download URL before anything leaves the process.

use std::str::FromStr;

use anyhow::Context;
use deploy::{
    App, AppName, ArtifactRef, Build, BuildId, BuildStatus, BuildType, Cluster, Deploy, DeployHost,
    DeployId, DeployStatus, DesiredApp, Host, HostName, HostPhase, HostSelector, InstalledApp,
    Portion, Sha256, Strategy, Timestamp, Version,
};
use sqlx::any::{AnyPoolOptions, AnyRow};

use crate::auth::{Principal, Role};
use crate::queue::{Holder, Upload};
use sqlx::{AnyPool, Row};

/// The columns every build query selects (a macro so `concat!` can build
/// static query strings from it).
macro_rules! build_columns {
    () => {
        "id, app, number, git_ref, commit_sha, version, status, build_type, \
         artifact_key, sha256, size, signature, error, worker, created_at, finished_at, \
         bad_at, bad_by, bad_reason"
    };
}

macro_rules! app_columns {
    () => {
        "name, git_url, branch, auto_deploy_cluster, auto_deploy_hosts, created_at"
    };
}

/// The columns `deploy_host_from_row` reads.
macro_rules! deploy_host_columns {
    () => {
        "host, phase, failed_phase, rolled_back, message, log_tail, updated_at, batch"
    };
}

/// The phases after which a host's row in a deploy no longer changes, for
/// SQL; the same set as `HostPhase::is_terminal` (a test checks).
macro_rules! terminal_phases {
    () => {
        "('done', 'skipped', 'failed', 'timed_out', 'unreachable', 'not_started')"
    };
}

macro_rules! deploy_columns {
    () => {
        "id, app, version, git_ref, build_id, cluster, hosts_selector, status, error, created_at, finished_at, \
         strategy, max_failures, current_batch, retry_of, rollback_on_failure, rollback_of, paused_at, \
         requested_by"
    };
}

// Reports, drift and metrics queries; after the macros, which they use.
mod reports;
pub use reports::BUILD_BUCKETS_MS;
mod sessions;
mod webhooks;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database handle; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
}

impl Db {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL lets readers go on while a writer commits; the
                        // busy timeout turns write contention into waiting.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot open database {}", redact(url)))?;
        let migrator = if sqlite {
            &SQLITE_MIGRATIONS
        } else {
            &POSTGRES_MIGRATIONS
        };
        migrator
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    // ------------------------------------------------------------ apps

    /// Inserts an app; `Ok(None)` when the name is taken.
    pub async fn insert_app(&self, app: &App) -> sqlx::Result<Option<App>> {
        let res = sqlx::query(
            "INSERT INTO apps (name, git_url, branch, auto_deploy_cluster, auto_deploy_hosts, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(app.name.as_str())
        .bind(&app.git_url)
        .bind(&app.branch)
        .bind(app.auto_deploy.as_ref().map(|a| a.cluster.to_string()))
        .bind(
            app.auto_deploy
                .as_ref()
                .and_then(|a| a.hosts.as_ref())
                .map(|h| h.to_string()),
        )
        .bind(app.created_at.0)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(app.clone()))
    }

    pub async fn apps(&self) -> sqlx::Result<Vec<App>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    /// A page of apps by name: up to `limit` named after `after`.
    pub async fn apps_page(&self, after: Option<&AppName>, limit: i64) -> sqlx::Result<Vec<App>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE name > $1 ORDER BY name LIMIT $2"
        ))
        .bind(after.map(AppName::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    pub async fn app(&self, name: &AppName) -> sqlx::Result<Option<App>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE name = $1"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// Stores the hash of an app's build-trigger secret (replacing any).
    pub async fn set_trigger_hash(&self, app: &AppName, hash: &str) -> sqlx::Result<bool> {
        let res = sqlx::query("UPDATE apps SET trigger_hash = $2 WHERE name = $1")
            .bind(app.as_str())
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The app whose build-trigger secret hashes to `hash`.
    pub async fn app_by_trigger_hash(&self, hash: &str) -> sqlx::Result<Option<App>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE trigger_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    // ------------------------------------------------------------ builds

    /// Queues a build of `commit`, numbering it and naming its version.
    pub async fn insert_build(
        &self,
        app: &AppName,
        git_ref: &str,
        commit: &str,
    ) -> anyhow::Result<Build> {
        let mut tx = self.pool.begin().await?;
        let number: i64 = sqlx::query(
            "UPDATE apps SET next_build_number = next_build_number + 1 WHERE name = $1 RETURNING next_build_number - 1",
        )
        .bind(app.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let version = Version::for_build(number, commit)?;
        let now = Timestamp::now();
        let id: i64 = sqlx::query(
            "INSERT INTO builds (app, number, git_ref, commit_sha, version, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6) RETURNING id",
        )
        .bind(app.as_str())
        .bind(number)
        .bind(git_ref)
        .bind(commit)
        .bind(version.as_str())
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        tx.commit().await?;
        self.build(BuildId(id))
            .await?
            .context("build vanished right after insert")
    }

    pub async fn build(&self, id: BuildId) -> sqlx::Result<Option<Build>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            ", log FROM builds WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| build_from_row(r, true)).transpose()
    }

    /// A page of the app's builds, newest first: up to `limit` older than
    /// `before`.
    pub async fn builds(
        &self,
        app: &AppName,
        before: Option<i64>,
        limit: i64,
    ) -> sqlx::Result<Vec<Build>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            " FROM builds WHERE app = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(app.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| build_from_row(r, false)).collect()
    }

    /// The newest build of `commit` that succeeded or may still succeed.
    /// A build from before artifacts were signed is not reused: grabbers
    /// would refuse it, so the commit is built (and signed) again; nor is
    /// one an admin marked bad.
    pub async fn reusable_build(&self, app: &AppName, commit: &str) -> sqlx::Result<Option<Build>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            " FROM builds WHERE app = $1 AND commit_sha = $2 \
             AND (status IN ('queued', 'running') OR (status = 'succeeded' AND signature IS NOT NULL)) \
             AND bad_at IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .bind(commit)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| build_from_row(r, false)).transpose()
    }

    pub async fn build_by_version(
        &self,
        app: &AppName,
        version: &Version,
    ) -> sqlx::Result<Option<Build>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            " FROM builds WHERE app = $1 AND version = $2"
        ))
        .bind(app.as_str())
        .bind(version.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| build_from_row(r, false)).transpose()
    }

    /// Claims the oldest queued build for `holder` until `lease_until`.
    /// Safe when several workers race: the `status = 'queued'` guard lets
    /// exactly one of them win. What an earlier holder uploaded is
    /// forgotten.
    pub async fn claim_build(
        &self,
        holder: &Holder,
        lease_until: Timestamp,
    ) -> sqlx::Result<Option<(Build, String)>> {
        let row = sqlx::query(concat!(
            "UPDATE builds SET status = 'running', started_at = $1, worker = $2, holder = $3, lease_until = $4, \
             log = '', signature = NULL, upload_sha256 = NULL, upload_size = NULL \
             WHERE id = (SELECT id FROM builds WHERE status = 'queued' ORDER BY id LIMIT 1) \
             AND status = 'queued' \
             RETURNING ",
            build_columns!(),
            ", (SELECT git_url FROM apps WHERE apps.name = builds.app) AS git_url"
        ))
        .bind(Timestamp::now().0)
        .bind(holder.worker())
        .bind(holder.key())
        .bind(lease_until.0)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((build_from_row(&r, false)?, r.try_get("git_url")?))),
        }
    }

    /// Appends to the log of a running build `holder` holds, while the log
    /// is under `cap` bytes (the final result carries the whole log); false
    /// when the build is not (or no longer) its own.
    pub async fn append_build_log(
        &self,
        id: BuildId,
        holder: &Holder,
        text: &str,
        cap: i64,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET log = CASE WHEN length(log) < $5 THEN log || $4 ELSE log END \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(text)
        .bind(cap)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Extends `holder`'s lease on a running build; false when the build is
    /// not (or no longer) its own: the lease ran out and someone else took
    /// it, or another token holds it.
    pub async fn renew_lease(
        &self,
        id: BuildId,
        holder: &Holder,
        lease_until: Timestamp,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET lease_until = $4 \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(lease_until.0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Records the artifact `holder` just stored for a running build it
    /// holds: the signature it sent, and the sha256 and size AppTracker
    /// measured; false when it no longer holds the build. A new claim
    /// clears them, so a result is only accepted after an upload.
    pub async fn record_upload(
        &self,
        id: BuildId,
        holder: &Holder,
        upload: &Upload,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET signature = $4, upload_sha256 = $5, upload_size = $6 \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(upload.signature.to_string())
        .bind(upload.sha256.as_str())
        .bind(upload.size as i64)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// What was recorded with a build's artifact (see `record_upload`), if
    /// anything: (signature, measured sha256, measured size).
    pub async fn build_upload(
        &self,
        id: BuildId,
    ) -> sqlx::Result<Option<(String, Option<Sha256>, Option<u64>)>> {
        let row =
            sqlx::query("SELECT signature, upload_sha256, upload_size FROM builds WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        let Some(r) = row else { return Ok(None) };
        let Some(signature) = r.try_get::<Option<String>, _>("signature")? else {
            return Ok(None);
        };
        let sha = r
            .try_get::<Option<String>, _>("upload_sha256")?
            .map(|s| decode(Sha256::parse(s)))
            .transpose()?;
        let size = r
            .try_get::<Option<i64>, _>("upload_size")?
            .map(|n| n as u64);
        Ok(Some((signature, sha, size)))
    }

    /// Records a successful build `holder` holds; false when it no longer
    /// holds it.
    pub async fn finish_build_ok(
        &self,
        id: BuildId,
        holder: &Holder,
        build_type: BuildType,
        // `url` holds the store key here, as everywhere in this module.
        artifact: &ArtifactRef,
        log: &str,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET status = 'succeeded', build_type = $4, artifact_key = $5, sha256 = $6, \
             size = $7, log = $8, finished_at = $9, signature = $10, lease_until = NULL \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(build_type.as_str())
        .bind(&artifact.url)
        .bind(artifact.sha256.as_str())
        .bind(artifact.size as i64)
        .bind(log)
        .bind(Timestamp::now().0)
        .bind(&artifact.signature)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Records a failed build `holder` holds; false when it no longer holds
    /// it.
    pub async fn finish_build_failed(
        &self,
        id: BuildId,
        holder: &Holder,
        error: &str,
        log: &str,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET status = 'failed', error = $4, log = $5, finished_at = $6, lease_until = NULL \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(error)
        .bind(log)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Puts a build `holder` holds back in the queue (its worker handed it
    /// back); this does not count as a requeue.
    pub async fn requeue_build(&self, id: BuildId, holder: &Holder) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET status = 'queued', worker = NULL, holder = NULL, lease_until = NULL \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Builds whose worker stopped renewing its lease: those already
    /// requeued `max_requeues` times fail with `error` (their ids are
    /// returned, to fail the deploys waiting on them); the others go back
    /// to the queue (how many is returned).
    pub async fn requeue_expired_leases(
        &self,
        now: Timestamp,
        max_requeues: u32,
        error: &str,
    ) -> sqlx::Result<(u64, Vec<BuildId>)> {
        let failed = sqlx::query(
            "UPDATE builds SET status = 'failed', error = $3, finished_at = $1, lease_until = NULL \
             WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1) AND requeues >= $2 \
             RETURNING id",
        )
        .bind(now.0)
        .bind(i64::from(max_requeues))
        .bind(error)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0).map(BuildId))
        .collect::<sqlx::Result<Vec<_>>>()?;
        let res = sqlx::query(
            "UPDATE builds SET status = 'queued', worker = NULL, holder = NULL, lease_until = NULL, \
             requeues = requeues + 1 \
             WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok((res.rows_affected(), failed))
    }

    /// Marks an ended build bad (never reused, never deployed again);
    /// false when it is not ended, or was marked already.
    pub async fn mark_build_bad(&self, id: BuildId, by: &str, reason: &str) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET bad_at = $2, bad_by = $3, bad_reason = $4 \
             WHERE id = $1 AND status IN ('succeeded', 'failed') AND bad_at IS NULL",
        )
        .bind(id.0)
        .bind(Timestamp::now().0)
        .bind(by)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    // ------------------------------------------------------------ deploys

    /// Inserts a deploy and one `pending` row per target host.
    pub async fn insert_deploy(&self, new: &NewDeploy<'_>) -> anyhow::Result<DeployId> {
        let mut tx = self.pool.begin().await?;
        let now = Timestamp::now();
        let id: i64 = sqlx::query(
            "INSERT INTO deploys (app, version, git_ref, build_id, cluster, hosts_selector, status, created_at, \
             strategy, max_failures, retry_of, rollback_on_failure, rollback_of, requested_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(new.app.as_str())
        .bind(new.version.map(|v| v.as_str().to_string()))
        .bind(new.git_ref.map(str::to_string))
        .bind(new.build_id.map(|b| b.0))
        .bind(new.cluster.as_str())
        .bind(new.selector.as_str())
        .bind(new.status.as_str())
        .bind(now.0)
        .bind(serde_json::to_string(&new.strategy)?)
        .bind(new.max_failures.to_string())
        .bind(new.retry_of.map(|d| d.0))
        .bind(i64::from(new.rollback_on_failure))
        .bind(new.rollback_of.map(|d| d.0))
        .bind(new.requested_by.map(str::to_string))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        for (batch, hosts) in new.strategy.batches(new.hosts).iter().enumerate() {
            for host in hosts {
                sqlx::query(
                    "INSERT INTO deploy_hosts (deploy_id, host, phase, updated_at, batch) \
                     VALUES ($1, $2, 'pending', $3, $4)",
                )
                .bind(id)
                .bind(host.as_str())
                .bind(now.0)
                .bind(batch as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(DeployId(id))
    }

    pub async fn deploy(&self, id: DeployId) -> anyhow::Result<Option<Deploy>> {
        let Some(mut deploy) = self.deploy_row(id).await? else {
            return Ok(None);
        };
        deploy.hosts = self.deploy_hosts(id).await?;
        Ok(Some(deploy))
    }

    /// The deploy without its host rows (`hosts` is empty): what a host's
    /// report needs, read once per report, so a deploy to N hosts does not
    /// read N² rows.
    pub async fn deploy_row(&self, id: DeployId) -> anyhow::Result<Option<Deploy>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deploy_from_row).transpose()
    }

    /// How many of the deploy's hosts are in each phase, per batch: what
    /// moving a deploy on needs, without reading every host row.
    pub async fn batch_phases(&self, id: DeployId) -> anyhow::Result<Vec<(u32, HostPhase, u64)>> {
        let rows = sqlx::query(
            "SELECT batch, phase, COUNT(*) AS n FROM deploy_hosts WHERE deploy_id = $1 \
             GROUP BY batch, phase",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    u32::try_from(r.try_get::<i64, _>("batch")?)?,
                    HostPhase::from_name(&r.try_get::<String, _>("phase")?),
                    u64::try_from(r.try_get::<i64, _>("n")?)?,
                ))
            })
            .collect()
    }

    pub async fn deploy_hosts(&self, id: DeployId) -> anyhow::Result<Vec<DeployHost>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            deploy_host_columns!(),
            " \
             FROM deploy_hosts WHERE deploy_id = $1 ORDER BY batch, host"
        ))
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deploy_host_from_row).collect()
    }

    /// Recent deploys, newest first, with their host rows.
    /// A page of deploys, newest first: up to `limit` older than `before`.
    pub async fn deploys(&self, before: Option<i64>, limit: i64) -> anyhow::Result<Vec<Deploy>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut d = deploy_from_row(row)?;
            d.hosts = self.deploy_hosts(d.id).await?;
            out.push(d);
        }
        Ok(out)
    }

    /// Deploys waiting on a build.
    pub async fn deploys_waiting_on(&self, build: BuildId) -> sqlx::Result<Vec<DeployId>> {
        let rows =
            sqlx::query("SELECT id FROM deploys WHERE build_id = $1 AND status = 'building'")
                .bind(build.0)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map(DeployId))
            .collect()
    }

    /// The deploy of `app` to `cluster` that is building or running.
    pub async fn active_deploy(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> sqlx::Result<Option<(DeployId, DeployStatus)>> {
        let row = sqlx::query(
            "SELECT id, status FROM deploys WHERE app = $1 AND cluster = $2 \
             AND status IN ('building', 'running') ORDER BY id LIMIT 1",
        )
        .bind(app.as_str())
        .bind(cluster.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                DeployId(r.try_get(0)?),
                deploy_status(&r.try_get::<String, _>(1)?),
            ))
        })
        .transpose()
    }

    /// Makes `batch` the deploy's current batch, if the current one is
    /// still `from` (a compare-and-set: of two callers finishing the same
    /// batch, one starts the next). The clocks of the hosts of the batches
    /// after `from` up to `batch` start now.
    pub async fn start_batch(&self, id: DeployId, from: u32, batch: u32) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE deploys SET current_batch = $3, next_batch_at = NULL \
             WHERE id = $1 AND current_batch = $2 AND status = 'running'",
        )
        .bind(id.0)
        .bind(i64::from(from))
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            sqlx::query(
                "UPDATE deploy_hosts SET updated_at = $4 WHERE deploy_id = $1 AND batch > $2 AND batch <= $3 \
                 AND phase = 'pending'",
            )
            .bind(id.0)
            .bind(i64::from(from))
            .bind(i64::from(batch))
            .bind(Timestamp::now().0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Starts a finished batch's bake: the next batch is due at `at`.
    /// False when the bake was already set.
    pub async fn bake_until(&self, id: DeployId, at: Timestamp) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE deploys SET next_batch_at = $2 WHERE id = $1 AND next_batch_at IS NULL AND status = 'running'",
        )
        .bind(id.0)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// When the deploy's next batch is due, while it bakes.
    pub async fn next_batch_at(&self, id: DeployId) -> sqlx::Result<Option<Timestamp>> {
        let row = sqlx::query("SELECT next_batch_at FROM deploys WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<i64>, _>(0))
            .transpose()?
            .flatten()
            .map(Timestamp))
    }

    /// Running deploys whose bake is over.
    pub async fn deploys_due(&self, now: Timestamp) -> sqlx::Result<Vec<DeployId>> {
        let rows = sqlx::query(
            "SELECT id FROM deploys WHERE status = 'running' AND next_batch_at IS NOT NULL AND next_batch_at <= $1",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map(DeployId))
            .collect()
    }

    /// Marks the still-pending hosts of batch `from` and later as never
    /// started; returns their rows.
    pub async fn leave_unstarted(
        &self,
        id: DeployId,
        batch: u32,
        message: &str,
    ) -> anyhow::Result<Vec<DeployHost>> {
        let now = Timestamp::now();
        sqlx::query(
            "UPDATE deploy_hosts SET phase = 'not_started', message = $3, updated_at = $4 \
             WHERE deploy_id = $1 AND batch >= $2 AND phase = 'pending'",
        )
        .bind(id.0)
        .bind(i64::from(batch))
        .bind(message)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            concat!(
            "SELECT ",
            deploy_host_columns!(),
            " \
             FROM deploy_hosts WHERE deploy_id = $1 AND batch >= $2 AND phase = 'not_started' ORDER BY host"
        ))
        .bind(id.0)
        .bind(i64::from(batch))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deploy_host_from_row).collect()
    }

    /// Moves a deploy from `from` to `to`; false when another writer got
    /// there first.
    pub async fn transition_deploy(
        &self,
        id: DeployId,
        from: &[DeployStatus],
        to: DeployStatus,
        version: Option<&Version>,
        error: Option<&str>,
    ) -> sqlx::Result<bool> {
        let finished = to.is_terminal().then(|| Timestamp::now().0);
        let from_list = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let res = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deploys SET status = $2, version = COALESCE($3, version), error = COALESCE($4, error), \
             finished_at = $5 WHERE id = $1 AND status IN ({from_list})"
        )))
        .bind(id.0)
        .bind(to.as_str())
        .bind(version.map(|v| v.as_str().to_string()))
        .bind(error.map(str::to_string))
        .bind(finished)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Replaces an ended deploy's error (to say what followed it).
    pub async fn set_deploy_error(&self, id: DeployId, error: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE deploys SET error = $2 WHERE id = $1")
            .bind(id.0)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a host event, unless the host already reached a terminal
    /// phase in this deploy: appends it to the history and updates the
    /// host's row. Events for a terminal host change nothing and are not
    /// kept (a grabber's converge reports `skipped` to the last deploy on
    /// every reconcile; kept, they would grow the history without end).
    /// Returns the row as it now stands and whether it changed.
    pub async fn record_host_event(
        &self,
        id: DeployId,
        host: &HostName,
        ev: &deploy::HostEvent,
    ) -> anyhow::Result<Option<(DeployHost, bool)>> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        // Written first (a read first would make SQLite's later upgrade to a
        // write lock fail under concurrent reports), and only for a host of
        // this deploy that has not ended.
        let open = sqlx::query(
            concat!(
                "INSERT INTO host_events (deploy_id, host, phase, failed_phase, rolled_back, message, log_tail, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE EXISTS (SELECT 1 FROM deploy_hosts WHERE deploy_id = $1 AND host = $2 \
                 AND phase NOT IN ",
                terminal_phases!(),
                ")"
            ),
        )
        .bind(id.0)
        .bind(host.as_str())
        .bind(ev.phase.as_str())
        .bind(ev.failed_phase.map(|p| p.as_str().to_string()))
        .bind(ev.rolled_back as i64)
        .bind(ev.message.clone())
        .bind(ev.log_tail.clone())
        .bind(now.0)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let res = if !open {
            None
        } else {
            Some(
                sqlx::query(
            concat!(
                "UPDATE deploy_hosts SET phase = $3, failed_phase = $4, rolled_back = $5, message = $6, \
                 log_tail = $7, updated_at = $8 \
                 WHERE deploy_id = $1 AND host = $2 AND phase NOT IN ",
                terminal_phases!()
            ),
        )
        .bind(id.0)
        .bind(host.as_str())
        .bind(ev.phase.as_str())
        .bind(ev.failed_phase.map(|p| p.as_str().to_string()))
        .bind(ev.rolled_back as i64)
        .bind(ev.message.clone())
        .bind(ev.log_tail.clone())
        .bind(now.0)
        .execute(&mut *tx)
        .await?,
            )
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            deploy_host_columns!(),
            " \
             FROM deploy_hosts WHERE deploy_id = $1 AND host = $2"
        ))
        .bind(id.0)
        .bind(host.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                deploy_host_from_row(&r)?,
                res.is_some_and(|res| res.rows_affected() == 1),
            ))),
        }
    }

    /// The version each host of `cluster` ran of `app` before `version`,
    /// for the hosts that should run `version` now.
    pub async fn previous_versions(
        &self,
        cluster: &Cluster,
        app: &AppName,
        version: &Version,
    ) -> anyhow::Result<Vec<(HostName, Option<Version>)>> {
        let rows = sqlx::query(
            "SELECT host, previous_version FROM desired WHERE cluster = $1 AND app = $2 AND version = $3 \
             ORDER BY host",
        )
        .bind(cluster.as_str())
        .bind(app.as_str())
        .bind(version.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    HostName::parse(r.try_get::<String, _>(0)?)?,
                    r.try_get::<Option<String>, _>(1)?
                        .map(Version::parse)
                        .transpose()?,
                ))
            })
            .collect()
    }

    /// The newest deploy of `app` to `cluster` that changed some host.
    pub async fn last_landed_deploy(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> anyhow::Result<Option<(DeployId, Version)>> {
        let row = sqlx::query(
            "SELECT id, version FROM deploys WHERE app = $1 AND cluster = $2 AND version IS NOT NULL \
             AND status IN ('succeeded', 'partial', 'cancelled') ORDER BY id DESC LIMIT 1",
        )
        .bind(app.as_str())
        .bind(cluster.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                DeployId(r.try_get::<i64, _>(0)?),
                Version::parse(r.try_get::<String, _>(1)?)?,
            ))
        })
        .transpose()
    }

    pub async fn set_pin(&self, pin: &deploy::Pin) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO pins (app, cluster, version, pinned_by, reason, pinned_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (app, cluster) DO UPDATE SET version = $3, pinned_by = $4, reason = $5, pinned_at = $6",
        )
        .bind(pin.app.as_str())
        .bind(pin.cluster.as_str())
        .bind(pin.version.as_str())
        .bind(&pin.pinned_by)
        .bind(&pin.reason)
        .bind(pin.pinned_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn pin(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> anyhow::Result<Option<deploy::Pin>> {
        Ok(self
            .pins(app)
            .await?
            .into_iter()
            .find(|p| &p.cluster == cluster))
    }

    pub async fn pins(&self, app: &AppName) -> anyhow::Result<Vec<deploy::Pin>> {
        self.pins_page(app, None, i64::MAX).await
    }

    /// A page of the app's pins by cluster: up to `limit` after `after`.
    pub async fn pins_page(
        &self,
        app: &AppName,
        after: Option<&Cluster>,
        limit: i64,
    ) -> anyhow::Result<Vec<deploy::Pin>> {
        let rows = sqlx::query(
            "SELECT app, cluster, version, pinned_by, reason, pinned_at FROM pins \
             WHERE app = $1 AND cluster > $2 ORDER BY cluster LIMIT $3",
        )
        .bind(app.as_str())
        .bind(after.map(Cluster::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pin_from_row).collect()
    }

    /// Every pin, by app and cluster.
    pub async fn all_pins(&self) -> anyhow::Result<Vec<deploy::Pin>> {
        let rows = sqlx::query(
            "SELECT app, cluster, version, pinned_by, reason, pinned_at FROM pins ORDER BY app, cluster",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pin_from_row).collect()
    }

    /// Removes a pin; false when there was none.
    pub async fn delete_pin(&self, app: &AppName, cluster: &Cluster) -> sqlx::Result<bool> {
        let res = sqlx::query("DELETE FROM pins WHERE app = $1 AND cluster = $2")
            .bind(app.as_str())
            .bind(cluster.as_str())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// A page of the reported history of a deploy's hosts, oldest first:
    /// up to `limit` events after the one numbered `after`, each with its
    /// number.
    pub async fn host_events(
        &self,
        id: DeployId,
        after: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<(i64, deploy::HostEventRecord)>> {
        let rows = sqlx::query(
            "SELECT host, phase, failed_phase, message, created_at, id FROM host_events \
             WHERE deploy_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(id.0)
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let event = deploy::HostEventRecord {
                    host: HostName::parse(r.try_get::<String, _>(0)?)?,
                    phase: HostPhase::from_name(&r.try_get::<String, _>(1)?),
                    failed_phase: r
                        .try_get::<Option<String>, _>(2)?
                        .map(|p| HostPhase::from_name(&p)),
                    message: r.try_get(3)?,
                    at: Timestamp(r.try_get(4)?),
                };
                Ok((r.try_get(5)?, event))
            })
            .collect()
    }

    /// Hosts of running deploys with no progress since `before`.
    pub async fn silent_hosts(&self, before: Timestamp) -> sqlx::Result<Vec<(DeployId, String)>> {
        let rows = sqlx::query(
            concat!(
            "SELECT dh.deploy_id, dh.host FROM deploy_hosts dh JOIN deploys d ON d.id = dh.deploy_id \
             WHERE d.status = 'running' AND dh.updated_at < $1 AND dh.batch <= d.current_batch \
             AND d.next_batch_at IS NULL \
             AND dh.phase NOT IN ",
            terminal_phases!()
        ))
        .bind(before.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((DeployId(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }

    /// Hosts under way in a running deploy whose agent has not heartbeated
    /// since `before`, and that were asked (or last reported) before it
    /// too, so a host gets the whole window to show it is alive: the host
    /// or its grabber is down.
    pub async fn unreachable_hosts(
        &self,
        before: Timestamp,
    ) -> sqlx::Result<Vec<(DeployId, String)>> {
        let rows = sqlx::query(concat!(
            "SELECT dh.deploy_id, dh.host FROM deploy_hosts dh JOIN deploys d ON d.id = dh.deploy_id \
             JOIN hosts h ON h.cluster = d.cluster AND h.name = dh.host \
             WHERE d.status = 'running' AND h.last_seen < $1 AND dh.updated_at < $1 \
             AND dh.batch <= d.current_batch \
             AND d.next_batch_at IS NULL AND d.paused_at IS NULL \
             AND dh.phase NOT IN ",
            terminal_phases!()
        ))
        .bind(before.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((DeployId(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }

    // ------------------------------------------------------- rollout controls

    /// Holds a running deploy before its next batch until someone continues
    /// it. False when it already waits (or is not running).
    pub async fn pause_deploy(&self, id: DeployId, at: Timestamp) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE deploys SET paused_at = $2 WHERE id = $1 AND paused_at IS NULL AND status = 'running'",
        )
        .bind(id.0)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Lets a paused deploy start `batch`. False when it was not paused.
    pub async fn continue_deploy(&self, id: DeployId, batch: u32) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE deploys SET paused_at = NULL, continued_batch = $2 \
             WHERE id = $1 AND paused_at IS NOT NULL AND status = 'running'",
        )
        .bind(id.0)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The highest batch someone let start.
    pub async fn continued_batch(&self, id: DeployId) -> anyhow::Result<u32> {
        let row = sqlx::query("SELECT continued_batch FROM deploys WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(u32::try_from(r.try_get::<i64, _>(0)?)?),
            None => Ok(0),
        }
    }

    /// Deploys of `app` to `cluster` queued behind the active one, oldest
    /// first.
    pub async fn queued_deploys(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> sqlx::Result<Vec<DeployId>> {
        let rows = sqlx::query(
            "SELECT id FROM deploys WHERE app = $1 AND cluster = $2 AND status = 'queued' ORDER BY id",
        )
        .bind(app.as_str())
        .bind(cluster.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map(DeployId))
            .collect()
    }

    /// Every (app, cluster) with a queued deploy and no active one: what a
    /// lost wake-up left behind (the sweeper starts them).
    pub async fn stalled_queues(&self) -> anyhow::Result<Vec<(AppName, Cluster)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT q.app, q.cluster FROM deploys q WHERE q.status = 'queued' AND NOT EXISTS \
             (SELECT 1 FROM deploys a WHERE a.app = q.app AND a.cluster = q.cluster \
              AND a.status IN ('building', 'running'))",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    AppName::parse(r.try_get::<String, _>(0)?)?,
                    Cluster::parse(r.try_get::<String, _>(1)?)?,
                ))
            })
            .collect()
    }

    pub async fn cluster_settings(
        &self,
        cluster: &Cluster,
    ) -> anyhow::Result<Option<deploy::ClusterSettings>> {
        let row = sqlx::query(
            "SELECT name, protected, frozen_until, freeze_reason, frozen_by, updated_by, updated_at \
             FROM clusters WHERE name = $1",
        )
        .bind(cluster.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(cluster_from_row).transpose()
    }

    pub async fn clusters(&self) -> anyhow::Result<Vec<deploy::ClusterSettings>> {
        let rows = sqlx::query(
            "SELECT name, protected, frozen_until, freeze_reason, frozen_by, updated_by, updated_at \
             FROM clusters ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cluster_from_row).collect()
    }

    pub async fn set_protected(
        &self,
        cluster: &Cluster,
        protected: bool,
        by: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO clusters (name, protected, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET protected = $2, updated_by = $3, updated_at = $4",
        )
        .bind(cluster.as_str())
        .bind(i64::from(protected))
        .bind(by)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Freezes `cluster` until `until` (None thaws it).
    pub async fn set_freeze(
        &self,
        cluster: &Cluster,
        until: Option<Timestamp>,
        reason: Option<&str>,
        by: &str,
    ) -> sqlx::Result<()> {
        let frozen_by = until.map(|_| by);
        sqlx::query(
            "INSERT INTO clusters (name, frozen_until, freeze_reason, frozen_by, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET frozen_until = $2, freeze_reason = $3, frozen_by = $4, \
             updated_by = $5, updated_at = $6",
        )
        .bind(cluster.as_str())
        .bind(until.map(|t| t.0))
        .bind(reason.map(str::to_string))
        .bind(frozen_by.map(str::to_string))
        .bind(by)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ------------------------------------------------------------ tokens

    /// Stores a token's hash; `Ok(false)` when the name is taken.
    pub async fn insert_token(
        &self,
        name: &str,
        role: Role,
        cluster: Option<&Cluster>,
        host: Option<&HostName>,
        hash: &str,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO tokens (name, role, cluster, host, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(cluster.map(|c| c.as_str().to_string()))
        .bind(host.map(|h| h.as_str().to_string()))
        .bind(hash)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Removes a token; false when there was none of that name.
    pub async fn delete_token(&self, name: &str) -> sqlx::Result<bool> {
        let res = sqlx::query("DELETE FROM tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Whether the token with this id still exists (it was not revoked):
    /// long-lived streams ask again now and then.
    pub async fn token_exists(&self, id: i64) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// A page of tokens by name, as the API lists them (never the hash):
    /// up to `limit` named after `after`.
    pub async fn tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<deploy::TokenInfo>> {
        let rows = sqlx::query(
            "SELECT name, role, cluster, host, created_at, last_used_at FROM tokens \
             WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(deploy::TokenInfo {
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                    cluster: r
                        .try_get::<Option<String>, _>("cluster")?
                        .map(Cluster::parse)
                        .transpose()?,
                    host: r
                        .try_get::<Option<String>, _>("host")?
                        .map(HostName::parse)
                        .transpose()?,
                    created_at: Timestamp(r.try_get("created_at")?),
                    last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(Timestamp),
                })
            })
            .collect()
    }

    /// Who holds the token with this hash. Records when it was last used,
    /// at most once a minute so reads stay reads.
    pub async fn principal_by_hash(&self, hash: &str) -> sqlx::Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, name, role, cluster, host, last_used_at FROM tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get("role")?;
        let Some(role) = Role::parse(&role) else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let last: Option<i64> = r.try_get("last_used_at")?;
        if last.is_none_or(|t| now.0 - t > 60_000) {
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE hash = $2")
                .bind(now.0)
                .bind(hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Principal {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            role,
            cluster: r
                .try_get::<Option<String>, _>("cluster")?
                .map(Cluster::parse)
                .transpose()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            host: r
                .try_get::<Option<String>, _>("host")?
                .map(HostName::parse)
                .transpose()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        }))
    }

    // ------------------------------------------------------------ audit

    /// Appends one entry to the audit log.
    pub async fn insert_audit(&self, e: &AuditRecord) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, role, method, route, path, app, target, peer, status, error_code) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(e.at.0)
        .bind(&e.actor)
        .bind(e.role.clone())
        .bind(&e.method)
        .bind(e.route.clone())
        .bind(&e.path)
        .bind(e.app.as_ref().map(|a| a.as_str().to_string()))
        .bind(e.target.clone())
        .bind(e.peer.clone())
        .bind(i64::from(e.status))
        .bind(e.error_code.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit entries newest first: at most `limit`, with an id below
    /// `before`, of one actor and one app when given. Paging by id (not
    /// offset) keeps pages disjoint while new entries arrive.
    pub async fn audit(
        &self,
        limit: i64,
        before: Option<i64>,
        actor: Option<&str>,
        app: Option<&AppName>,
    ) -> sqlx::Result<Vec<deploy::AuditEntry>> {
        // Fixed fragments only; every value is bound.
        let mut sql = String::from(
            "SELECT id, at, actor, role, method, route, path, app, target, peer, status, error_code \
             FROM audit_log WHERE id < $1",
        );
        let mut n = 2;
        if actor.is_some() {
            sql.push_str(&format!(" AND actor = ${n}"));
            n += 1;
        }
        if app.is_some() {
            sql.push_str(&format!(" AND app = ${n}"));
            n += 1;
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${n}"));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before.unwrap_or(i64::MAX));
        if let Some(actor) = actor {
            q = q.bind(actor.to_string());
        }
        if let Some(app) = app {
            q = q.bind(app.as_str().to_string());
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    // ------------------------------------------------------------ hosts

    pub async fn upsert_host(&self, hb: &deploy::Heartbeat) -> anyhow::Result<Host> {
        let now = Timestamp::now();
        let apps = serde_json::to_string(&hb.apps)?;
        sqlx::query(
            "INSERT INTO hosts (cluster, name, root, apps_json, registered_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (cluster, name) DO UPDATE SET root = $3, apps_json = $4, last_seen = $5",
        )
        .bind(hb.cluster.as_str())
        .bind(hb.host.as_str())
        .bind(&hb.root)
        .bind(apps)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        self.host(&hb.cluster, &hb.host)
            .await?
            .context("host vanished right after upsert")
    }

    /// One host: what a heartbeat reads back, so it costs the same with a
    /// thousand hosts in the cluster as with one.
    pub async fn host(&self, cluster: &Cluster, name: &HostName) -> anyhow::Result<Option<Host>> {
        let row = sqlx::query(
            "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
             WHERE cluster = $1 AND name = $2",
        )
        .bind(cluster.as_str())
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(host_from_row).transpose()
    }

    pub async fn hosts(&self, cluster: Option<&Cluster>) -> anyhow::Result<Vec<Host>> {
        let rows =
            match cluster {
                Some(c) => sqlx::query(
                    "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
                     WHERE cluster = $1 ORDER BY cluster, name",
                )
                .bind(c.as_str())
                .fetch_all(&self.pool)
                .await?,
                None => sqlx::query(
                    "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
                     ORDER BY cluster, name",
                )
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter().map(host_from_row).collect()
    }

    /// A page of hosts by cluster and name: up to `limit` after `after`.
    pub async fn hosts_page(
        &self,
        after: Option<&(Cluster, HostName)>,
        limit: i64,
    ) -> anyhow::Result<Vec<Host>> {
        let (cluster, name) = after
            .map(|(c, h)| (c.as_str(), h.as_str()))
            .unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
             WHERE cluster > $1 OR (cluster = $1 AND name > $2) ORDER BY cluster, name LIMIT $3",
        )
        .bind(cluster)
        .bind(name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(host_from_row).collect()
    }

    /// Records what the hosts of a rollout should run, remembering what they
    /// ran before so a failed host can be pointed back at it.
    pub async fn set_desired(
        &self,
        cluster: &Cluster,
        hosts: &[HostName],
        app: &AppName,
        version: &Version,
        deploy: DeployId,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        for host in hosts {
            sqlx::query(
                "INSERT INTO desired (cluster, host, app, version, deploy_id) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (cluster, host, app) DO UPDATE SET \
                 previous_version = CASE WHEN desired.version = $4 THEN desired.previous_version ELSE desired.version END, \
                 previous_deploy_id = CASE WHEN desired.version = $4 THEN desired.previous_deploy_id ELSE desired.deploy_id END, \
                 version = $4, deploy_id = $5",
            )
            .bind(cluster.as_str())
            .bind(host.as_str())
            .bind(app.as_str())
            .bind(version.as_str())
            .bind(deploy.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// A host failed `deploy` and rolled back: it should run what it ran
    /// before, not retry the failed release at every restart.
    pub async fn revert_desired(
        &self,
        cluster: &Cluster,
        host: &HostName,
        app: &AppName,
        deploy: DeployId,
    ) -> sqlx::Result<()> {
        // With no previous version there is nothing to go back to: drop the row.
        sqlx::query(
            "DELETE FROM desired WHERE cluster = $1 AND host = $2 AND app = $3 AND deploy_id = $4 \
             AND previous_version IS NULL",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .bind(app.as_str())
        .bind(deploy.0)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE desired SET version = previous_version, deploy_id = previous_deploy_id, \
             previous_version = NULL, previous_deploy_id = NULL \
             WHERE cluster = $1 AND host = $2 AND app = $3 AND deploy_id = $4",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .bind(app.as_str())
        .bind(deploy.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn desired(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> anyhow::Result<Vec<DesiredApp>> {
        let rows = sqlx::query(
            "SELECT d.app, d.version, d.deploy_id, b.artifact_key, b.sha256, b.size, b.signature \
             FROM desired d JOIN builds b ON b.app = d.app AND b.version = d.version \
             WHERE d.cluster = $1 AND d.host = $2 AND b.status = 'succeeded' ORDER BY d.app",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DesiredApp {
                    app: AppName::parse(r.try_get::<String, _>(0)?)?,
                    version: Version::parse(r.try_get::<String, _>(1)?)?,
                    deploy_id: DeployId(r.try_get(2)?),
                    artifact: ArtifactRef {
                        url: r.try_get(3)?,
                        sha256: Sha256::parse(r.try_get::<String, _>(4)?)?,
                        size: r.try_get::<i64, _>(5)? as u64,
                        // Unsigned (built before signing): grabbers refuse it.
                        signature: r.try_get::<Option<String>, _>(6)?.unwrap_or_default(),
                    },
                })
            })
            .collect()
    }
}

/// What a new deploy row holds.
pub struct NewDeploy<'a> {
    pub app: &'a AppName,
    pub version: Option<&'a Version>,
    pub git_ref: Option<&'a str>,
    pub build_id: Option<BuildId>,
    pub cluster: &'a Cluster,
    pub selector: &'a HostSelector,
    pub status: DeployStatus,
    pub hosts: &'a [HostName],
    pub strategy: Strategy,
    pub max_failures: Portion,
    pub retry_of: Option<DeployId>,
    pub rollback_on_failure: bool,
    pub rollback_of: Option<DeployId>,
    pub requested_by: Option<&'a str>,
}

/// What an audit entry records; the database gives it its id.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: String,
    pub role: Option<String>,
    pub method: String,
    pub route: Option<String>,
    pub path: String,
    pub app: Option<AppName>,
    pub target: Option<String>,
    pub peer: Option<String>,
    pub status: u16,
    pub error_code: Option<String>,
}

/// Turns a stored value that fails to parse into a decode error naming it.
fn decode<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> sqlx::Result<T> {
    r.map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn host_from_row(r: &AnyRow) -> anyhow::Result<Host> {
    let apps: Vec<InstalledApp> =
        serde_json::from_str(&r.try_get::<String, _>("apps_json")?).unwrap_or_default();
    Ok(Host {
        cluster: Cluster::parse(r.try_get::<String, _>("cluster")?)?,
        name: HostName::parse(r.try_get::<String, _>("name")?)?,
        root: r.try_get("root")?,
        registered_at: Timestamp(r.try_get("registered_at")?),
        last_seen: Timestamp(r.try_get("last_seen")?),
        apps,
    })
}

fn app_from_row(r: &AnyRow) -> sqlx::Result<App> {
    let auto_deploy = match r.try_get::<Option<String>, _>("auto_deploy_cluster")? {
        Some(cluster) => Some(deploy::AutoDeploy {
            cluster: decode(Cluster::parse(cluster))?,
            hosts: r
                .try_get::<Option<String>, _>("auto_deploy_hosts")?
                .map(|h| decode(HostSelector::parse(h)))
                .transpose()?,
        }),
        None => None,
    };
    Ok(App {
        name: decode(AppName::parse(r.try_get::<String, _>("name")?))?,
        git_url: r.try_get("git_url")?,
        branch: r.try_get("branch")?,
        auto_deploy,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

fn build_from_row(r: &AnyRow, with_log: bool) -> sqlx::Result<Build> {
    let status: String = r.try_get("status")?;
    let status = match status.as_str() {
        "queued" => BuildStatus::Queued,
        "running" => BuildStatus::Running,
        "succeeded" => BuildStatus::Succeeded,
        "failed" => BuildStatus::Failed,
        _ => BuildStatus::Unknown,
    };
    let build_type = r
        .try_get::<Option<String>, _>("build_type")?
        .and_then(|t| match t.as_str() {
            "python" => Some(BuildType::Python),
            "node" => Some(BuildType::Node),
            "generic" => Some(BuildType::Generic),
            _ => None,
        });
    let artifact = match (
        r.try_get::<Option<String>, _>("artifact_key")?,
        r.try_get::<Option<String>, _>("sha256")?,
        r.try_get::<Option<i64>, _>("size")?,
    ) {
        (Some(url), Some(sha), Some(size)) => Some(ArtifactRef {
            url,
            sha256: decode(Sha256::parse(sha))?,
            size: size as u64,
            // Unsigned (built before signing): grabbers refuse it.
            signature: r
                .try_get::<Option<String>, _>("signature")?
                .unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(Build {
        id: BuildId(r.try_get("id")?),
        app: decode(AppName::parse(r.try_get::<String, _>("app")?))?,
        number: r.try_get("number")?,
        git_ref: r.try_get("git_ref")?,
        commit: r.try_get("commit_sha")?,
        version: decode(Version::parse(r.try_get::<String, _>("version")?))?,
        status,
        build_type,
        artifact,
        error: r.try_get("error")?,
        worker: r.try_get("worker")?,
        log: if with_log {
            r.try_get("log")?
        } else {
            String::new()
        },
        created_at: Timestamp(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        bad: match r.try_get::<Option<i64>, _>("bad_at")? {
            Some(at) => Some(deploy::BadMark {
                at: Timestamp(at),
                by: r
                    .try_get::<Option<String>, _>("bad_by")?
                    .unwrap_or_default(),
                reason: r
                    .try_get::<Option<String>, _>("bad_reason")?
                    .unwrap_or_default(),
            }),
            None => None,
        },
    })
}

fn audit_from_row(r: &AnyRow) -> sqlx::Result<deploy::AuditEntry> {
    Ok(deploy::AuditEntry {
        id: r.try_get("id")?,
        at: Timestamp(r.try_get("at")?),
        actor: r.try_get("actor")?,
        role: r.try_get("role")?,
        method: r.try_get("method")?,
        route: r.try_get("route")?,
        path: r.try_get("path")?,
        app: r
            .try_get::<Option<String>, _>("app")?
            .map(|a| decode(AppName::parse(a)))
            .transpose()?,
        target: r.try_get("target")?,
        peer: r.try_get("peer")?,
        status: decode(u16::try_from(r.try_get::<i64, _>("status")?))?,
        error_code: r.try_get("error_code")?,
    })
}

fn deploy_status(s: &str) -> DeployStatus {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .unwrap_or(DeployStatus::Unknown)
}

fn deploy_from_row(r: &AnyRow) -> anyhow::Result<Deploy> {
    Ok(Deploy {
        id: DeployId(r.try_get("id")?),
        app: AppName::parse(r.try_get::<String, _>("app")?)?,
        version: r
            .try_get::<Option<String>, _>("version")?
            .map(Version::parse)
            .transpose()?,
        git_ref: r.try_get("git_ref")?,
        build_id: r.try_get::<Option<i64>, _>("build_id")?.map(BuildId),
        cluster: Cluster::parse(r.try_get::<String, _>("cluster")?)?,
        hosts_selector: HostSelector::from_str(&r.try_get::<String, _>("hosts_selector")?)?,
        status: deploy_status(&r.try_get::<String, _>("status")?),
        error: r.try_get("error")?,
        strategy: serde_json::from_str(&r.try_get::<String, _>("strategy")?)?,
        max_failures: Portion::parse(&r.try_get::<String, _>("max_failures")?)
            .map_err(anyhow::Error::msg)?,
        current_batch: u32::try_from(r.try_get::<i64, _>("current_batch")?)?,
        retry_of: r.try_get::<Option<i64>, _>("retry_of")?.map(DeployId),
        rollback_on_failure: r.try_get::<i64, _>("rollback_on_failure")? != 0,
        rollback_of: r.try_get::<Option<i64>, _>("rollback_of")?.map(DeployId),
        paused_at: r.try_get::<Option<i64>, _>("paused_at")?.map(Timestamp),
        requested_by: r.try_get("requested_by")?,
        created_at: Timestamp(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        hosts: Vec::new(),
    })
}

fn pin_from_row(r: &AnyRow) -> anyhow::Result<deploy::Pin> {
    Ok(deploy::Pin {
        app: AppName::parse(r.try_get::<String, _>(0)?)?,
        cluster: Cluster::parse(r.try_get::<String, _>(1)?)?,
        version: Version::parse(r.try_get::<String, _>(2)?)?,
        pinned_by: r.try_get(3)?,
        reason: r.try_get(4)?,
        pinned_at: Timestamp(r.try_get(5)?),
    })
}

fn cluster_from_row(r: &AnyRow) -> anyhow::Result<deploy::ClusterSettings> {
    Ok(deploy::ClusterSettings {
        name: Cluster::parse(r.try_get::<String, _>("name")?)?,
        protected: r.try_get::<i64, _>("protected")? != 0,
        frozen_until: r.try_get::<Option<i64>, _>("frozen_until")?.map(Timestamp),
        freeze_reason: r.try_get("freeze_reason")?,
        frozen_by: r.try_get("frozen_by")?,
        updated_by: r.try_get("updated_by")?,
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

fn deploy_host_from_row(r: &AnyRow) -> anyhow::Result<DeployHost> {
    Ok(DeployHost {
        host: HostName::parse(r.try_get::<String, _>("host")?)?,
        phase: HostPhase::from_name(&r.try_get::<String, _>("phase")?),
        failed_phase: r
            .try_get::<Option<String>, _>("failed_phase")?
            .map(|p| HostPhase::from_name(&p)),
        rolled_back: r.try_get::<i64, _>("rolled_back")? != 0,
        message: r.try_get("message")?,
        log_tail: r.try_get("log_tail")?,
        updated_at: Timestamp(r.try_get("updated_at")?),
        batch: u32::try_from(r.try_get::<i64, _>("batch")?)?,
    })
}

#[cfg(test)]
mod phase_tests {
    use deploy::HostPhase;

    #[test]
    fn the_sql_terminal_phases_are_the_terminal_phases() {
        use HostPhase::*;
        let sql: &str = terminal_phases!();
        for p in [
            Pending,
            Downloading,
            Verifying,
            Extracting,
            Switching,
            Starting,
            Checking,
            Done,
            Skipped,
            Failed,
            TimedOut,
            Unreachable,
            NotStarted,
        ] {
            assert_eq!(
                sql.contains(&format!("'{}'", p.as_str())),
                p.is_terminal(),
                "{p}"
            );
        }
    }
}

/// A database URL with any password replaced, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://u:secret@127.0.0.1/db"),
            "postgres://u:***@127.0.0.1/db"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    /// A fresh SQLite database (in a directory kept as long as the guard)
    /// with app `hello` registered.
    async fn db_with_app() -> (tempfile::TempDir, Db, AppName) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("t.db").display()
        ))
        .await
        .unwrap();
        let app = AppName::parse("hello").unwrap();
        db.insert_app(&App {
            name: app.clone(),
            git_url: "/nowhere".into(),
            branch: "main".into(),
            auto_deploy: None,
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
        (dir, db, app)
    }

    #[tokio::test]
    async fn uploads_follow_the_claim_and_unsigned_or_bad_builds_are_not_reused() {
        let (_dir, db, app) = db_with_app().await;
        let commit = "a".repeat(40);
        let lease = Timestamp(Timestamp::now().0 + 60_000);
        let sha = Sha256::parse("b".repeat(64)).unwrap();
        let sig = deploy::signing::SigningKey::from_seed([1; 32]).sign(
            &app,
            &Version::parse("1-aaaaaaa").unwrap(),
            &sha,
        );
        let upload = Upload {
            signature: sig.clone(),
            sha256: sha.clone(),
            size: 1,
        };
        let w1 = Holder::in_process("w1");
        let w2 = Holder::in_process("w2");

        // An upload recorded by one holder is gone when another claims.
        let build = db.insert_build(&app, "main", &commit).await.unwrap();
        let (claimed, _) = db.claim_build(&w1, lease).await.unwrap().unwrap();
        assert_eq!(claimed.id, build.id);
        assert!(db.record_upload(build.id, &w1, &upload).await.unwrap());
        assert!(!db.record_upload(build.id, &w2, &upload).await.unwrap());
        assert_eq!(
            db.build_upload(build.id).await.unwrap(),
            Some((sig.to_string(), Some(sha.clone()), Some(1)))
        );
        assert!(db.requeue_build(build.id, &w1).await.unwrap());
        db.claim_build(&w2, lease).await.unwrap().unwrap();
        assert_eq!(db.build_upload(build.id).await.unwrap(), None);

        // Succeeded and signed: reused, and the artifact carries it.
        assert!(db.record_upload(build.id, &w2, &upload).await.unwrap());
        let artifact = ArtifactRef {
            url: "hello/hello-1-aaaaaaa.tar.gz".into(),
            sha256: sha.clone(),
            size: 1,
            signature: sig.to_string(),
        };
        assert!(
            db.finish_build_ok(build.id, &w2, BuildType::Generic, &artifact, "")
                .await
                .unwrap()
        );
        let reused = db.reusable_build(&app, &commit).await.unwrap().unwrap();
        assert_eq!(reused.artifact, Some(artifact));

        // A build from before signing (no signature) is not reused, and
        // its artifact shows as unsigned.
        sqlx::query("UPDATE builds SET signature = NULL WHERE id = $1")
            .bind(build.id.0)
            .execute(db.pool())
            .await
            .unwrap();
        assert!(db.reusable_build(&app, &commit).await.unwrap().is_none());
        let old = db.build(build.id).await.unwrap().unwrap();
        assert_eq!(old.artifact.unwrap().signature, "");

        // Signed again, then marked bad: not reused either, and the mark
        // shows.
        sqlx::query("UPDATE builds SET signature = $2 WHERE id = $1")
            .bind(build.id.0)
            .bind(sig.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        assert!(db.reusable_build(&app, &commit).await.unwrap().is_some());
        assert!(db.mark_build_bad(build.id, "ops", "broken").await.unwrap());
        assert!(!db.mark_build_bad(build.id, "ops", "again").await.unwrap());
        assert!(db.reusable_build(&app, &commit).await.unwrap().is_none());
        let bad = db.build(build.id).await.unwrap().unwrap().bad.unwrap();
        assert_eq!((bad.by.as_str(), bad.reason.as_str()), ("ops", "broken"));
    }

    #[tokio::test]
    async fn expired_leases_requeue_then_fail() {
        let (_dir, db, app) = db_with_app().await;
        let build = db
            .insert_build(&app, "main", &"c".repeat(40))
            .await
            .unwrap();
        let w = Holder::in_process("w");
        let past = Timestamp(Timestamp::now().0 - 1);
        // Two requeues allowed: the third expiry fails the build.
        for round in 0..3 {
            db.claim_build(&w, past).await.unwrap().unwrap();
            let (n, failed) = db
                .requeue_expired_leases(Timestamp::now(), 2, "gave up")
                .await
                .unwrap();
            let b = db.build(build.id).await.unwrap().unwrap();
            if round < 2 {
                assert_eq!((n, failed.len()), (1, 0), "round {round}");
                assert_eq!(b.status, BuildStatus::Queued);
            } else {
                assert_eq!((n, failed), (0, vec![build.id]));
                assert_eq!(b.status, BuildStatus::Failed);
                assert_eq!(b.error.as_deref(), Some("gave up"));
            }
        }
        // A handed-back build is no requeue: it never counts.
        let other = db
            .insert_build(&app, "main", &"d".repeat(40))
            .await
            .unwrap();
        let lease = Timestamp(Timestamp::now().0 + 60_000);
        for _ in 0..5 {
            db.claim_build(&w, lease).await.unwrap().unwrap();
            assert!(db.requeue_build(other.id, &w).await.unwrap());
        }
        db.claim_build(&w, past).await.unwrap().unwrap();
        let (n, failed) = db
            .requeue_expired_leases(Timestamp::now(), 0, "gave up")
            .await
            .unwrap();
        assert_eq!(
            (n, failed),
            (0, vec![other.id]),
            "max 0: the first expiry fails"
        );
    }
}
