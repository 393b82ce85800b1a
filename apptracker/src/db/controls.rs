//! Rollout controls: pausing and continuing deploys, the per-app deploy queue,
//! and cluster settings (protection, freezes).

use super::*;

impl Db {
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
}
