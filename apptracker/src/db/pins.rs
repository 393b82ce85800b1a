//! Pins: an app held at one version on a cluster (after a rollback).

use super::*;

impl Db {
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
}
