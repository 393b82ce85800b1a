//! State in SQL through sqlx's `Any` driver: the same queries on SQLite (the
//! embedded default) and PostgreSQL. Times are unix milliseconds and
//! booleans 0/1 integers, which `Any` decodes on both backends.
//!
//! This layer knows nothing of HTTP, principals' rights or orchestration: it
//! stores and returns rows, in the wire types of `deploy` where they are
//! the same, and in `model`'s internal ones where they are not (a stored
//! artifact has a key, never a URL; a deploy row has no hosts). A status
//! column holding a name this build does not know is a decode error, never
//! a silent `unknown`.

use std::str::FromStr;

use anyhow::Context;
use deploy::{
    App, AppName, Build, BuildId, BuildStatus, BuildType, Cluster, Deploy, DeployHost, DeployId,
    DeployStatus, Host, HostName, HostPhase, HostSelector, InstalledApp, Portion, Sha256, Strategy,
    Timestamp, Version,
};
use sqlx::any::{AnyPoolOptions, AnyRow};

use crate::model::{
    ArtifactKey, DeployRow, DesiredRow, Holder, IndexUpload, Principal, Role, StoredArtifact,
    StoredBuild, Upload,
};
use sqlx::{AnyPool, Row};

/// The columns every build query selects (a macro so `concat!` can build
/// static query strings from it).
macro_rules! build_columns {
    () => {
        "id, app, number, git_ref, commit_sha, version, status, build_type, \
         artifact_key, sha256, size, signature, error, worker, created_at, finished_at, \
         bad_at, bad_by, bad_reason, release_timeout_ms, author, message, \
         index_sha256, index_size, index_signature"
    };
}

macro_rules! app_columns {
    () => {
        "name, git_url, branch, auto_deploy_cluster, auto_deploy_hosts, created_at, new_hosts, root"
    };
}

/// The columns `deploy_host_from_row` reads.
macro_rules! deploy_host_columns {
    () => {
        "host, phase, failed_phase, rolled_back, message, log_tail, updated_at, batch, \
         bytes_downloaded, bytes_from_peers, bytes_reused"
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
         requested_by, action, config_version"
    };
}

// One `impl Db` block per kind of row; after the macros, which they use.
mod apps;
mod audit;
mod builds;
pub use builds::{FinishedBuild, Uploaded};
mod config;
mod controls;
mod deadlines;
mod deploys;
mod drift_alerts;
mod hosts;
mod log_requests;
mod notifications;
mod pins;
mod release_phases;
mod reports;
mod sessions;
mod tokens;
mod webhooks;

pub use apps::{AppRemoval, RunningOn};
pub use audit::AuditRecord;
pub use deploys::{DeployFilter, NewDeploy};
pub use drift_alerts::{AlertKey, DriftAlert};
pub use hosts::HostRemoval;
pub use notifications::DueDelivery;
pub use reports::BUILD_BUCKETS_MS;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database handle; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// SQLite rather than PostgreSQL: for the few statements whose SQL
    /// differs (bytes of a text, row locks).
    sqlite: bool,
    /// Tokens whose `last_used_at` is being written now (`tokens.rs`), so
    /// a burst of requests makes one write, not one each.
    touching: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
}

impl Db {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            // A database that is down (restarting, failing over) fails a
            // request within this, answered 503 with `Retry-After`, rather
            // than holding it for sqlx's default 30 s.
            .acquire_timeout(std::time::Duration::from_secs(10))
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
        Ok(Self {
            pool,
            sqlite,
            touching: Default::default(),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
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
        alive: None,
        peer_ticket_key: None,
        desired_fingerprint: None,
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
        new_hosts: decode(
            deploy::NewHostPolicy::parse(&r.try_get::<String, _>("new_hosts")?)
                .map_err(std::io::Error::other),
        )?,
        root: r.try_get("root")?,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

/// A stored build status: one this build knows.
fn build_status(s: &str) -> sqlx::Result<BuildStatus> {
    match s {
        "queued" => Ok(BuildStatus::Queued),
        "running" => Ok(BuildStatus::Running),
        "succeeded" => Ok(BuildStatus::Succeeded),
        "failed" => Ok(BuildStatus::Failed),
        other => Err(unknown_name("builds.status", other)),
    }
}

fn build_from_row(r: &AnyRow, with_log: bool) -> sqlx::Result<StoredBuild> {
    let status = build_status(&r.try_get::<String, _>("status")?)?;
    let build_type = match r.try_get::<Option<String>, _>("build_type")?.as_deref() {
        None => None,
        Some("python") => Some(BuildType::Python),
        Some("node") => Some(BuildType::Node),
        Some("generic") => Some(BuildType::Generic),
        Some(other) => return Err(unknown_name("builds.build_type", other)),
    };
    let artifact = match (
        r.try_get::<Option<String>, _>("artifact_key")?,
        r.try_get::<Option<String>, _>("sha256")?,
        r.try_get::<Option<i64>, _>("size")?,
    ) {
        (Some(key), Some(sha), Some(size)) => Some(
            StoredArtifact {
                key: ArtifactKey::new(key),
                sha256: decode(Sha256::parse(sha))?,
                size: size as u64,
                // Unsigned (built before signing): grabbers refuse it.
                signature: r
                    .try_get::<Option<String>, _>("signature")?
                    .unwrap_or_default(),
                index: None,
            }
            .with_index(
                r.try_get::<Option<String>, _>("index_sha256")?
                    .map(|s| decode(Sha256::parse(s)))
                    .transpose()?,
                r.try_get::<Option<i64>, _>("index_size")?
                    .and_then(|n| u64::try_from(n).ok()),
                r.try_get("index_signature")?,
            ),
        ),
        _ => None,
    };
    let build = Build {
        id: BuildId(r.try_get("id")?),
        app: decode(AppName::parse(r.try_get::<String, _>("app")?))?,
        number: r.try_get("number")?,
        git_ref: r.try_get("git_ref")?,
        commit: r.try_get("commit_sha")?,
        author: r.try_get("author")?,
        message: r.try_get("message")?,
        version: decode(Version::parse(r.try_get::<String, _>("version")?))?,
        status,
        build_type,
        artifact: None,
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
        release_timeout_ms: r
            .try_get::<Option<i64>, _>("release_timeout_ms")?
            .and_then(|ms| u64::try_from(ms).ok()),
    };
    Ok(StoredBuild::new(build, artifact))
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

/// The error for a stored name this build does not know.
fn unknown_name(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("`{value}` in {column} is not a name this AppTracker knows").into())
}

/// A stored deploy status: the name of one this build knows.
fn deploy_status(s: &str) -> sqlx::Result<DeployStatus> {
    match serde_json::from_value(serde_json::Value::String(s.to_string())) {
        Ok(DeployStatus::Unknown) if s != DeployStatus::Unknown.as_str() => {
            Err(unknown_name("deploys.status", s))
        }
        Ok(status) => Ok(status),
        Err(_) => Err(unknown_name("deploys.status", s)),
    }
}

/// A stored deploy action (`deploys.action`): one this build knows.
fn deploy_action(s: &str) -> sqlx::Result<deploy::DeployAction> {
    deploy::DeployAction::parse(s).ok_or_else(|| unknown_name("deploys.action", s))
}

/// A stored host phase: the name of one this build knows (`unknown`
/// included: what a newer grabber's phase was recorded as).
fn phase(s: &str) -> sqlx::Result<HostPhase> {
    match HostPhase::from_name(s) {
        HostPhase::Unknown if s != HostPhase::Unknown.as_str() => {
            Err(unknown_name("host phase", s))
        }
        p => Ok(p),
    }
}

fn deploy_from_row(r: &AnyRow) -> anyhow::Result<DeployRow> {
    Ok(DeployRow {
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
        status: deploy_status(&r.try_get::<String, _>("status")?)?,
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
        action: deploy_action(&r.try_get::<String, _>("action")?)?,
        config_version: u64::try_from(r.try_get::<i64, _>("config_version")?)?,
        created_at: Timestamp(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
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
        phase: phase(&r.try_get::<String, _>("phase")?)?,
        failed_phase: r
            .try_get::<Option<String>, _>("failed_phase")?
            .map(|p| phase(&p))
            .transpose()?,
        rolled_back: r.try_get::<i64, _>("rolled_back")? != 0,
        message: r.try_get("message")?,
        log_tail: r.try_get("log_tail")?,
        updated_at: Timestamp(r.try_get("updated_at")?),
        batch: u32::try_from(r.try_get::<i64, _>("batch")?)?,
        transfer: transfer_from_row(r)?,
    })
}

/// A host row's transfer: all three numbers, or none (never reported).
fn transfer_from_row(r: &AnyRow) -> anyhow::Result<Option<deploy::Transfer>> {
    let bytes = |column: &str| -> anyhow::Result<Option<u64>> {
        Ok(r.try_get::<Option<i64>, _>(column)?
            .map(u64::try_from)
            .transpose()?)
    };
    Ok(match bytes("bytes_downloaded")? {
        None => None,
        Some(bytes_downloaded) => Some(deploy::Transfer {
            bytes_downloaded,
            bytes_from_peers: bytes("bytes_from_peers")?.unwrap_or(0),
            bytes_reused: bytes("bytes_reused")?.unwrap_or(0),
        }),
    })
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
pub(crate) mod tests;
