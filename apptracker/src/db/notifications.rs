//! Notifications (where deploy events go, their secrets sealed) and their
//! deliveries (claimed, tried and retried by `tracker::notify`).

use super::*;
use deploy::{DeliveryStatus, Notification, NotificationDelivery, NotifyEvent, NotifyFormat};

/// A notification with its sealed secret, as the sender needs it.
#[derive(Debug, Clone)]
pub struct StoredNotification {
    pub notification: Notification,
    pub sealed_url: String,
    pub sealed_secret: String,
}

/// A delivery due for a try, with what to send.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub notification_id: i64,
    pub body: String,
    pub attempts: u32,
}

fn notification_from_row(r: &AnyRow) -> anyhow::Result<StoredNotification> {
    let format = match r.try_get::<String, _>("format")?.as_str() {
        "json" => NotifyFormat::Json,
        "slack" => NotifyFormat::Slack,
        other => anyhow::bail!("unknown notification format {other:?}"),
    };
    let events: Vec<String> = serde_json::from_str(&r.try_get::<String, _>("events")?)?;
    Ok(StoredNotification {
        notification: Notification {
            id: r.try_get("id")?,
            app: r
                .try_get::<Option<String>, _>("app")?
                .map(AppName::parse)
                .transpose()?,
            cluster: r
                .try_get::<Option<String>, _>("cluster")?
                .map(Cluster::parse)
                .transpose()?,
            url: r.try_get("url")?,
            format,
            events: events
                .iter()
                .map(|e| e.parse::<NotifyEvent>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
            created_by: r.try_get("created_by")?,
            created_at: Timestamp(r.try_get("created_at")?),
        },
        sealed_url: r.try_get("sealed_url")?,
        sealed_secret: r.try_get("sealed_secret")?,
    })
}

/// Queues a delivery on `conn` (a transaction's, when it goes with
/// another write).
pub(super) async fn insert_delivery_on(
    conn: &mut sqlx::AnyConnection,
    notification_id: i64,
    deploy: DeployId,
    event: NotifyEvent,
    body: &str,
) -> sqlx::Result<()> {
    let now = Timestamp::now().0;
    sqlx::query(
        "INSERT INTO notification_deliveries (notification_id, deploy_id, event, body, status, \
         attempts, next_at, created_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
    )
    .bind(notification_id)
    .bind(deploy.0)
    .bind(event.as_str())
    .bind(body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

macro_rules! notification_columns {
    () => {
        "id, app, cluster, url, format, events, sealed_url, sealed_secret, created_by, created_at"
    };
}

impl Db {
    pub async fn insert_notification(
        &self,
        n: &Notification,
        sealed_url: &str,
        sealed_secret: &str,
    ) -> anyhow::Result<i64> {
        let events: Vec<&str> = n.events.iter().map(|e| e.as_str()).collect();
        let id: i64 = sqlx::query(
            "INSERT INTO notifications (app, cluster, url, format, events, sealed_url, sealed_secret, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(n.app.as_ref().map(|a| a.to_string()))
        .bind(n.cluster.as_ref().map(|c| c.to_string()))
        .bind(&n.url)
        .bind(n.format.as_str())
        .bind(serde_json::to_string(&events)?)
        .bind(sealed_url)
        .bind(sealed_secret)
        .bind(&n.created_by)
        .bind(n.created_at.0)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    pub async fn notifications(&self) -> anyhow::Result<Vec<StoredNotification>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notification_from_row).collect()
    }

    pub async fn notification(&self, id: i64) -> anyhow::Result<Option<StoredNotification>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(notification_from_row).transpose()
    }

    /// Removes a notification and its deliveries; false when there was none.
    pub async fn delete_notification(&self, id: i64) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM notification_deliveries WHERE notification_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query("DELETE FROM notifications WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn insert_delivery(
        &self,
        notification_id: i64,
        deploy: DeployId,
        event: NotifyEvent,
        body: &str,
    ) -> sqlx::Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_delivery_on(&mut conn, notification_id, deploy, event, body).await
    }

    /// Claims up to `limit` due deliveries for `lease_ms`: a claimed one is
    /// not due again until the lease ends, so replicas do not send it twice
    /// (and a sender that died is retried after it).
    pub async fn claim_deliveries(
        &self,
        limit: i64,
        lease_ms: i64,
    ) -> anyhow::Result<Vec<DueDelivery>> {
        let now = Timestamp::now().0;
        let rows = sqlx::query(
            "SELECT id, notification_id, body, attempts, next_at FROM notification_deliveries \
             WHERE status = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let next_at: i64 = r.try_get(4)?;
            let res = sqlx::query(
                "UPDATE notification_deliveries SET next_at = $1 WHERE id = $2 AND next_at = $3 \
                 AND status = 'pending'",
            )
            .bind(now + lease_ms)
            .bind(id)
            .bind(next_at)
            .execute(&self.pool)
            .await?;
            if res.rows_affected() == 1 {
                claimed.push(DueDelivery {
                    id,
                    notification_id: r.try_get(1)?,
                    body: r.try_get(2)?,
                    attempts: u32::try_from(r.try_get::<i64, _>(3)?)?,
                });
            }
        }
        Ok(claimed)
    }

    /// Records a try: delivered, tried again at `retry_at`, or given up.
    pub async fn record_delivery_try(
        &self,
        id: i64,
        status: DeliveryStatus,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
    ) -> sqlx::Result<()> {
        let now = Timestamp::now().0;
        sqlx::query(
            "UPDATE notification_deliveries SET status = $1, attempts = attempts + 1, last_error = $2, \
             next_at = $3, delivered_at = $4 WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(retry_at.map_or(now, |t| t.0))
        .bind((status == DeliveryStatus::Delivered).then_some(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A notification's newest deliveries first.
    pub async fn deliveries(
        &self,
        notification_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<NotificationDelivery>> {
        let rows = sqlx::query(
            "SELECT id, notification_id, deploy_id, event, status, attempts, last_error, created_at, \
             delivered_at FROM notification_deliveries WHERE notification_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(notification_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status = match r.try_get::<String, _>(4)?.as_str() {
                    "pending" => DeliveryStatus::Pending,
                    "delivered" => DeliveryStatus::Delivered,
                    "failed" => DeliveryStatus::Failed,
                    other => anyhow::bail!("unknown delivery status {other:?}"),
                };
                Ok(NotificationDelivery {
                    id: r.try_get(0)?,
                    notification_id: r.try_get(1)?,
                    deploy_id: DeployId(r.try_get(2)?),
                    event: r
                        .try_get::<String, _>(3)?
                        .parse()
                        .map_err(anyhow::Error::msg)?,
                    status,
                    attempts: u32::try_from(r.try_get::<i64, _>(5)?)?,
                    last_error: r.try_get(6)?,
                    created_at: Timestamp(r.try_get(7)?),
                    delivered_at: r.try_get::<Option<i64>, _>(8)?.map(Timestamp),
                })
            })
            .collect()
    }
}
