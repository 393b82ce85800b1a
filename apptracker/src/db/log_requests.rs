//! Log requests (`deploy logs`): asked here, answered by a host's grabber.

use super::*;

impl Db {
    pub async fn insert_log_request(
        &self,
        cluster: &Cluster,
        host: &HostName,
        app: &AppName,
        by: &str,
    ) -> anyhow::Result<i64> {
        let id: i64 = sqlx::query(
            "INSERT INTO log_requests (cluster, host, app, requested_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .bind(app.as_str())
        .bind(by)
        .bind(Timestamp::now().0)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    /// The request's cluster, host and app, and its answer once there.
    pub async fn log_request(
        &self,
        id: i64,
    ) -> anyhow::Result<Option<(Cluster, HostName, AppName, Option<String>)>> {
        let row = sqlx::query("SELECT cluster, host, app, answer FROM log_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                Cluster::parse(r.try_get::<String, _>(0)?)?,
                HostName::parse(r.try_get::<String, _>(1)?)?,
                AppName::parse(r.try_get::<String, _>(2)?)?,
                r.try_get(3)?,
            ))
        })
        .transpose()
    }

    /// Stores the answer once; false when it was answered already.
    pub async fn answer_log_request(&self, id: i64, answer: &str) -> sqlx::Result<bool> {
        let res =
            sqlx::query("UPDATE log_requests SET answer = $1 WHERE id = $2 AND answer IS NULL")
                .bind(answer)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(res.rows_affected() == 1)
    }
}
