//! The queries of versionchecker reports, drift and metrics: the latest
//! report per host and app, and what the drift computation and `/metrics`
//! read from deploys and builds. Same SQL on SQLite and PostgreSQL.

use crate::drift::{Change, Desired, InFlight, Reported};
use anyhow::Context;
use deploy::report::{AppReport, FsSpace, HostReport};
use deploy::{AppName, Cluster, DeployId, HostName, Timestamp, Version};
use sqlx::Row;

use super::Db;

/// Finished builds of one app and outcome, for a duration histogram.
#[derive(Debug, Clone)]
pub struct BuildDurations {
    pub app: AppName,
    pub outcome: String,
    pub count: i64,
    pub sum_ms: i64,
    /// Builds at or under each bound of `BUILD_BUCKETS_MS`, in order.
    pub buckets: Vec<i64>,
}

/// The upper bounds of the build-duration histogram, in milliseconds.
pub const BUILD_BUCKETS_MS: [i64; 9] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000,
];

impl Db {
    /// Replaces the host's last report: its row and one row per app, in
    /// one transaction (an app gone from the host loses its row).
    pub async fn store_report(
        &self,
        report: &HostReport,
        observed_at: Timestamp,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO host_reports (cluster, host, observed_at, interval_ms, agent, disk_free_bytes, disk_total_bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (cluster, host) DO UPDATE SET observed_at = $3, interval_ms = $4, agent = $5, \
             disk_free_bytes = $6, disk_total_bytes = $7",
        )
        .bind(report.cluster.as_str())
        .bind(report.host.as_str())
        .bind(observed_at.0)
        .bind(report.interval_ms as i64)
        .bind(&report.agent)
        .bind(report.disk.map(|d| d.free_bytes as i64))
        .bind(report.disk.map(|d| d.total_bytes as i64))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM app_reports WHERE cluster = $1 AND host = $2")
            .bind(report.cluster.as_str())
            .bind(report.host.as_str())
            .execute(&mut *tx)
            .await?;
        for app in &report.apps {
            sqlx::query(
                "INSERT INTO app_reports (cluster, host, app, current_version, report_json) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(report.cluster.as_str())
            .bind(report.host.as_str())
            .bind(app.app.as_str())
            .bind(app.current.as_ref().map(|v| v.as_str().to_string()))
            .bind(serde_json::to_string(app)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every host's latest report.
    pub async fn reports(&self) -> anyhow::Result<Vec<Reported>> {
        let hosts = sqlx::query(
            "SELECT cluster, host, observed_at, interval_ms, disk_free_bytes, disk_total_bytes \
             FROM host_reports ORDER BY cluster, host",
        )
        .fetch_all(&self.pool)
        .await?;
        let apps = sqlx::query(
            "SELECT cluster, host, report_json FROM app_reports ORDER BY cluster, host, app",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(hosts.len());
        for r in &hosts {
            let disk = match (
                r.try_get::<Option<i64>, _>("disk_free_bytes")?,
                r.try_get::<Option<i64>, _>("disk_total_bytes")?,
            ) {
                (Some(free), Some(total)) => Some(FsSpace {
                    free_bytes: free as u64,
                    total_bytes: total as u64,
                }),
                _ => None,
            };
            out.push(Reported {
                cluster: Cluster::parse(r.try_get::<String, _>("cluster")?)?,
                host: HostName::parse(r.try_get::<String, _>("host")?)?,
                observed_at: Timestamp(r.try_get("observed_at")?),
                interval_ms: r.try_get::<i64, _>("interval_ms")?.max(0) as u64,
                disk,
                apps: Vec::new(),
            });
        }
        for r in &apps {
            let (cluster, host): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let json: String = r.try_get(2)?;
            let app: AppReport = serde_json::from_str(&json)
                .with_context(|| format!("stored report of {host} is unreadable"))?;
            if let Some(h) = out
                .iter_mut()
                .find(|h| h.cluster.as_str() == cluster && h.host.as_str() == host)
            {
                h.apps.push(app);
            }
        }
        Ok(out)
    }

    /// Every row of the desired state.
    pub async fn all_desired(&self) -> anyhow::Result<Vec<Desired>> {
        let rows = sqlx::query(
            "SELECT d.cluster, d.host, d.app, d.version, d.deploy_id, COALESCE(x.config_version, 0), \
             COALESCE(x.action, 'deploy') FROM desired d LEFT JOIN deploys x ON x.id = d.deploy_id \
             ORDER BY d.cluster, d.app, d.host",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Desired {
                    cluster: Cluster::parse(r.try_get::<String, _>(0)?)?,
                    host: HostName::parse(r.try_get::<String, _>(1)?)?,
                    app: AppName::parse(r.try_get::<String, _>(2)?)?,
                    version: Version::parse(r.try_get::<String, _>(3)?)?,
                    deploy: DeployId(r.try_get(4)?),
                    config_version: u64::try_from(r.try_get::<i64, _>(5)?)?,
                    stopped: super::deploy_action(&r.try_get::<String, _>(6)?)?
                        == deploy::DeployAction::Stop,
                })
            })
            .collect()
    }

    /// Per app and host, the newest deploy activity since `since` (older
    /// activity cannot postdate a report that is not stale).
    pub async fn deploy_changes(&self, since: Timestamp) -> anyhow::Result<Vec<Change>> {
        let rows = sqlx::query(
            "SELECT d.cluster, dh.host, d.app, MAX(dh.deploy_id), MAX(dh.updated_at) \
             FROM deploy_hosts dh JOIN deploys d ON d.id = dh.deploy_id \
             WHERE dh.updated_at > $1 GROUP BY d.cluster, dh.host, d.app",
        )
        .bind(since.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Change {
                    cluster: Cluster::parse(r.try_get::<String, _>(0)?)?,
                    host: HostName::parse(r.try_get::<String, _>(1)?)?,
                    app: AppName::parse(r.try_get::<String, _>(2)?)?,
                    deploy: DeployId(r.try_get(3)?),
                    at: Timestamp(r.try_get(4)?),
                })
            })
            .collect()
    }

    /// Hosts of deploys under way that have not reached a terminal phase.
    pub async fn in_flight(&self) -> anyhow::Result<Vec<InFlight>> {
        let rows = sqlx::query(concat!(
            "SELECT d.cluster, dh.host, d.app, d.id, dh.phase \
             FROM deploy_hosts dh JOIN deploys d ON d.id = dh.deploy_id \
             WHERE d.status IN ('building', 'running') AND dh.phase NOT IN ",
            terminal_phases!()
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InFlight {
                    cluster: Cluster::parse(r.try_get::<String, _>(0)?)?,
                    host: HostName::parse(r.try_get::<String, _>(1)?)?,
                    app: AppName::parse(r.try_get::<String, _>(2)?)?,
                    deploy: DeployId(r.try_get(3)?),
                    phase: super::phase(&r.try_get::<String, _>(4)?)?,
                })
            })
            .collect()
    }

    /// How many deploys of each app to each cluster are in each status.
    pub async fn deploy_counts(&self) -> anyhow::Result<Vec<(AppName, Cluster, String, i64)>> {
        let rows = sqlx::query(
            "SELECT app, cluster, status, COUNT(*) FROM deploys GROUP BY app, cluster, status \
             ORDER BY app, cluster, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    AppName::parse(r.try_get::<String, _>(0)?)?,
                    Cluster::parse(r.try_get::<String, _>(1)?)?,
                    r.try_get::<String, _>(2)?,
                    r.try_get::<i64, _>(3)?,
                ))
            })
            .collect()
    }

    /// Finished builds per app and outcome: count, total duration and the
    /// histogram's cumulative buckets (one query, whatever the history).
    pub async fn build_durations(&self) -> anyhow::Result<Vec<BuildDurations>> {
        let buckets: Vec<String> = BUILD_BUCKETS_MS
            .iter()
            .map(|b| format!("CAST(SUM(CASE WHEN finished_at - started_at <= {b} THEN 1 ELSE 0 END) AS BIGINT)"))
            .collect();
        // Fixed fragments only (the bounds are constants): nothing is user input.
        let sql = format!(
            "SELECT app, status, CAST(COUNT(*) AS BIGINT), CAST(SUM(finished_at - started_at) AS BIGINT), {} \
             FROM builds WHERE status IN ('succeeded', 'failed') \
             AND started_at IS NOT NULL AND finished_at IS NOT NULL \
             GROUP BY app, status ORDER BY app, status",
            buckets.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BuildDurations {
                    app: AppName::parse(r.try_get::<String, _>(0)?)?,
                    outcome: r.try_get(1)?,
                    count: r.try_get(2)?,
                    sum_ms: r.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
                    buckets: (0..BUILD_BUCKETS_MS.len())
                        .map(|i| r.try_get::<Option<i64>, _>(4 + i).map(|v| v.unwrap_or(0)))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }
}
