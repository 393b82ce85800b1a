//! The sweeper's questions: which hosts of running deploys went silent,
//! were never heard from, or lost their grabber, and when a batch asked
//! its hosts (the start of their deadlines).

use super::*;

impl Db {
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

    /// The hosts of `batch` not heard from yet were asked now.
    pub async fn mark_asked(&self, id: DeployId, batch: u32) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE deploy_hosts SET updated_at = $3 WHERE deploy_id = $1 AND batch = $2 \
             AND phase = 'pending'",
        )
        .bind(id.0)
        .bind(i64::from(batch))
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Hosts asked in a running deploy (their batch started, no bake or
    /// pause holds them) that have reported nothing since `before`: the
    /// message may never have reached them.
    pub async fn unreported_hosts(
        &self,
        before: Timestamp,
    ) -> sqlx::Result<Vec<(DeployId, String)>> {
        let rows = sqlx::query(
            "SELECT dh.deploy_id, dh.host FROM deploy_hosts dh JOIN deploys d ON d.id = dh.deploy_id \
             WHERE d.status = 'running' AND dh.phase = 'pending' AND dh.updated_at < $1 \
             AND dh.batch <= d.current_batch AND d.next_batch_at IS NULL AND d.paused_at IS NULL \
             ORDER BY dh.deploy_id, dh.host",
        )
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
}
