//! Config versions: each change to an app's config is a new immutable row
//! holding the whole config (secrets sealed), so what a host fetches for
//! version N never changes under it.

use super::*;
use crate::model::{StoredConfig, StoredVar};

impl Db {
    /// The app's newest config version; 0 before its first change.
    pub async fn config_version(&self, app: &AppName) -> anyhow::Result<u64> {
        let v: Option<i64> = sqlx::query("SELECT MAX(version) FROM config_versions WHERE app = $1")
            .bind(app.as_str())
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(u64::try_from(v.unwrap_or(0))?)
    }

    /// Version `version` of the app's config (the newest when `None`).
    pub async fn config(
        &self,
        app: &AppName,
        version: Option<u64>,
    ) -> anyhow::Result<Option<StoredConfig>> {
        let version = match version {
            Some(v) => v,
            None => self.config_version(app).await?,
        };
        let row = sqlx::query(
            "SELECT version, entries, created_by, created_at FROM config_versions \
             WHERE app = $1 AND version = $2",
        )
        .bind(app.as_str())
        .bind(i64::try_from(version)?)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let entries: String = r.try_get(1)?;
            Ok(StoredConfig {
                version: u64::try_from(r.try_get::<i64, _>(0)?)?,
                vars: serde_json::from_str(&entries).with_context(|| {
                    format!("config version {version} of `{app}` is not readable")
                })?,
                created_by: r.try_get(2)?,
                created_at: Timestamp(r.try_get(3)?),
            })
        })
        .transpose()
    }

    /// Stores config `version` of the app; false when that version exists
    /// already (another change won the race: read again and retry).
    pub async fn insert_config(
        &self,
        app: &AppName,
        version: u64,
        vars: &[StoredVar],
        keys: &[String],
        by: &str,
    ) -> anyhow::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO config_versions (app, version, entries, keys, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, version) DO NOTHING",
        )
        .bind(app.as_str())
        .bind(i64::try_from(version)?)
        .bind(serde_json::to_string(vars)?)
        .bind(serde_json::to_string(keys)?)
        .bind(by)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Whether a deploy of `app` ever named `host` of `cluster`: the hosts
    /// allowed to fetch the app's config.
    pub async fn host_runs_app(
        &self,
        app: &AppName,
        cluster: &Cluster,
        host: &HostName,
    ) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM deploy_hosts h JOIN deploys d ON d.id = h.deploy_id \
             WHERE d.app = $1 AND d.cluster = $2 AND h.host = $3 LIMIT 1",
        )
        .bind(app.as_str())
        .bind(cluster.as_str())
        .bind(host.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The hosts of `cluster` whose desired state holds `app`, by name.
    pub async fn hosts_running(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> anyhow::Result<Vec<HostName>> {
        let rows =
            sqlx::query("SELECT host FROM desired WHERE app = $1 AND cluster = $2 ORDER BY host")
                .bind(app.as_str())
                .bind(cluster.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok(HostName::parse(r.try_get::<String, _>(0)?)?))
            .collect()
    }

    /// The clusters whose desired state holds `app`.
    pub async fn clusters_running(&self, app: &AppName) -> anyhow::Result<Vec<Cluster>> {
        let rows =
            sqlx::query("SELECT DISTINCT cluster FROM desired WHERE app = $1 ORDER BY cluster")
                .bind(app.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok(Cluster::parse(r.try_get::<String, _>(0)?)?))
            .collect()
    }
}
