//! Drift alerts: the out-of-sync apps on hosts already announced as
//! `drift_found` (`tracker::drift_watch`). Inserting the row claims the
//! alert, so of several replicas exactly one queues its deliveries.

use super::*;
use deploy::NotifyEvent;
use deploy::drift::DriftState;

use super::notifications::insert_delivery_on;

/// Which app on which host: a drift alert's key.
pub type AlertKey = (Cluster, HostName, AppName);

/// An alert to claim: where, the state found, and the deploy that asked
/// for what the host should run (the deliveries' `deploy_id`).
#[derive(Debug, Clone)]
pub struct DriftAlert {
    pub key: AlertKey,
    pub state: DriftState,
    pub desired_deploy: DeployId,
}

impl Db {
    /// Every alert announced and not yet cleared.
    pub async fn drift_alerts(&self) -> anyhow::Result<Vec<AlertKey>> {
        let rows = sqlx::query("SELECT cluster, host, app FROM drift_alerts")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Cluster::parse(r.try_get::<String, _>(0)?)?,
                    HostName::parse(r.try_get::<String, _>(1)?)?,
                    AppName::parse(r.try_get::<String, _>(2)?)?,
                ))
            })
            .collect()
    }

    /// Claims `alert` and queues its `deliveries` (notification id, body)
    /// in one transaction: true when this call claimed it; when another
    /// (a replica) had, nothing is queued. A replica that dies in between
    /// leaves neither.
    pub async fn claim_drift_alert(
        &self,
        alert: &DriftAlert,
        deliveries: &[(i64, String)],
    ) -> sqlx::Result<bool> {
        let (cluster, host, app) = &alert.key;
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "INSERT INTO drift_alerts (cluster, host, app, state, since) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (cluster, host, app) DO NOTHING",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .bind(app.as_str())
        .bind(alert.state.as_str())
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for (notification_id, body) in deliveries {
            insert_delivery_on(
                &mut tx,
                *notification_id,
                alert.desired_deploy,
                NotifyEvent::DriftFound,
                body,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets an alert, so the next drift of that app on that host is
    /// announced again; false when there was none.
    pub async fn clear_drift_alert(&self, key: &AlertKey) -> sqlx::Result<bool> {
        let (cluster, host, app) = key;
        let res =
            sqlx::query("DELETE FROM drift_alerts WHERE cluster = $1 AND host = $2 AND app = $3")
                .bind(cluster.as_str())
                .bind(host.as_str())
                .bind(app.as_str())
                .execute(&self.pool)
                .await?;
        Ok(res.rows_affected() == 1)
    }
}
