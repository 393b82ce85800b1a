//! Release phases: one row per deploy that runs its release's `[release]
//! command` before any host switches (which host, how it ended, the end of
//! its output), and the deadlines the sweeper checks.

use deploy::{ReleasePhase, ReleasePhaseStatus};

use super::*;

fn status(name: &str) -> sqlx::Result<ReleasePhaseStatus> {
    match name {
        "running" => Ok(ReleasePhaseStatus::Running),
        "succeeded" => Ok(ReleasePhaseStatus::Succeeded),
        "failed" => Ok(ReleasePhaseStatus::Failed),
        other => Err(unknown_name("release_phases.status", other)),
    }
}

impl Db {
    /// Records that `host` was asked to run the deploy's release phase,
    /// answering by `deadline`; false when the deploy has one already (the
    /// phase runs once per deploy, whoever asks twice).
    pub async fn start_release_phase(
        &self,
        id: DeployId,
        host: &HostName,
        deadline: Timestamp,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO release_phases (deploy_id, host, status, started_at, deadline_at) \
             VALUES ($1, $2, 'running', $3, $4) ON CONFLICT (deploy_id) DO NOTHING",
        )
        .bind(id.0)
        .bind(host.as_str())
        .bind(Timestamp::now().0)
        .bind(deadline.0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The deploy's release phase, if it has one.
    pub async fn release_phase(&self, id: DeployId) -> sqlx::Result<Option<ReleasePhase>> {
        let row = sqlx::query(
            "SELECT host, status, message, log, started_at, finished_at FROM release_phases \
             WHERE deploy_id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(ReleasePhase {
            host: decode(HostName::parse(r.try_get::<String, _>("host")?))?,
            status: status(&r.try_get::<String, _>("status")?)?,
            message: r.try_get("message")?,
            log: r.try_get("log")?,
            started_at: Timestamp(r.try_get("started_at")?),
            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        }))
    }

    /// The release phases of deploys `ids`, without their logs (what a
    /// list of deploys shows), by deploy: one query.
    pub async fn release_phases_without_logs(
        &self,
        ids: &[DeployId],
    ) -> sqlx::Result<std::collections::HashMap<DeployId, ReleasePhase>> {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        // Fixed fragments only; every id is bound.
        let sql = format!(
            "SELECT deploy_id, host, status, message, started_at, finished_at FROM release_phases \
             WHERE deploy_id IN ({})",
            super::deploys::placeholders(ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(id.0);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    DeployId(r.try_get("deploy_id")?),
                    ReleasePhase {
                        host: decode(HostName::parse(r.try_get::<String, _>("host")?))?,
                        status: status(&r.try_get::<String, _>("status")?)?,
                        message: r.try_get("message")?,
                        log: String::new(),
                        started_at: Timestamp(r.try_get("started_at")?),
                        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
                    },
                ))
            })
            .collect()
    }

    /// Ends a running release phase of `host`; false when it is not
    /// running there (ended already, or asked of another host), so a
    /// repeated report changes nothing.
    pub async fn finish_release_phase(
        &self,
        id: DeployId,
        host: &HostName,
        to: ReleasePhaseStatus,
        message: &str,
        log: &str,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE release_phases SET status = $3, message = $4, log = $5, finished_at = $6 \
             WHERE deploy_id = $1 AND host = $2 AND status = 'running'",
        )
        .bind(id.0)
        .bind(host.as_str())
        .bind(to.as_str())
        .bind(message)
        .bind(log)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Release phases still running past their deadline: their host never
    /// answered.
    pub async fn overdue_release_phases(
        &self,
        now: Timestamp,
    ) -> sqlx::Result<Vec<(DeployId, String)>> {
        let rows = sqlx::query(
            "SELECT deploy_id, host FROM release_phases WHERE status = 'running' AND deadline_at < $1",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((DeployId(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }
}
