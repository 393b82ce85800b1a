//! Deploys: their rows and their hosts' rows, and host events (the
//! sweeper's deadlines are in `deadlines.rs`).

use super::*;

impl Db {
    /// Inserts a deploy and one `pending` row per target host.
    pub async fn insert_deploy(&self, new: &NewDeploy<'_>) -> anyhow::Result<DeployId> {
        let mut tx = self.pool.begin().await?;
        let now = Timestamp::now();
        let id: i64 = sqlx::query(
            "INSERT INTO deploys (app, version, git_ref, build_id, cluster, hosts_selector, status, created_at, \
             strategy, max_failures, retry_of, rollback_on_failure, rollback_of, requested_by, action, \
             config_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
        )
        .bind(new.app.as_str())
        .bind(new.version.map(|v| v.as_str().to_string()))
        .bind(new.git_ref.map(str::to_string))
        .bind(new.build_id.map(|b| b.0))
        .bind(new.cluster.as_str())
        .bind(new.selector.as_str())
        .bind(new.status.as_str())
        .bind(now.0)
        .bind(serde_json::to_string(&new.strategy)?)
        .bind(new.max_failures.to_string())
        .bind(new.retry_of.map(|d| d.0))
        .bind(i64::from(new.rollback_on_failure))
        .bind(new.rollback_of.map(|d| d.0))
        .bind(new.requested_by.map(str::to_string))
        .bind(new.action.as_str())
        .bind(i64::try_from(new.config_version)?)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        for (batch, hosts) in new.strategy.batches(new.hosts).iter().enumerate() {
            for host in hosts {
                sqlx::query(
                    "INSERT INTO deploy_hosts (deploy_id, host, phase, updated_at, batch) \
                     VALUES ($1, $2, 'pending', $3, $4)",
                )
                .bind(id)
                .bind(host.as_str())
                .bind(now.0)
                .bind(batch as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(DeployId(id))
    }

    /// The deploy with its host rows.
    pub async fn deploy(&self, id: DeployId) -> anyhow::Result<Option<Deploy>> {
        let Some(row) = self.deploy_row(id).await? else {
            return Ok(None);
        };
        let mut deploy = row.with_hosts(self.deploy_hosts(id).await?);
        deploy.release_phase = self.release_phase(id).await?;
        Ok(Some(deploy))
    }

    /// The deploy without its host rows: what a host's report needs, read
    /// once per report, so a deploy to N hosts does not read N² rows.
    pub async fn deploy_row(&self, id: DeployId) -> anyhow::Result<Option<DeployRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deploy_from_row).transpose()
    }

    /// How many of the deploy's hosts are in each phase, per batch: what
    /// moving a deploy on needs, without reading every host row.
    pub async fn batch_phases(&self, id: DeployId) -> anyhow::Result<Vec<(u32, HostPhase, u64)>> {
        let rows = sqlx::query(
            "SELECT batch, phase, COUNT(*) AS n FROM deploy_hosts WHERE deploy_id = $1 \
             GROUP BY batch, phase",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    u32::try_from(r.try_get::<i64, _>("batch")?)?,
                    phase(&r.try_get::<String, _>("phase")?)?,
                    u64::try_from(r.try_get::<i64, _>("n")?)?,
                ))
            })
            .collect()
    }

    pub async fn deploy_hosts(&self, id: DeployId) -> anyhow::Result<Vec<DeployHost>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            deploy_host_columns!(),
            " \
             FROM deploy_hosts WHERE deploy_id = $1 ORDER BY batch, host"
        ))
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deploy_host_from_row).collect()
    }

    /// Whether `host` is one of the deploy's hosts.
    pub async fn deploy_has_host(&self, id: DeployId, host: &HostName) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM deploy_hosts WHERE deploy_id = $1 AND host = $2")
            .bind(id.0)
            .bind(host.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// A page of deploys, newest first, with their host rows (without log
    /// tails): up to `limit` older than `before`, of one app and to one
    /// cluster when given.
    pub async fn deploys(
        &self,
        before: Option<i64>,
        limit: i64,
        app: Option<&AppName>,
        cluster: Option<&Cluster>,
    ) -> anyhow::Result<Vec<Deploy>> {
        let filter = DeployFilter {
            app,
            cluster,
            statuses: &[],
        };
        self.deploys_filtered(before, limit, &filter).await
    }

    /// A page of deploys newest first, those `filter` keeps: up to `limit`
    /// older than `before`, in three queries. Their hosts' rows come
    /// without log tails and their release phases without logs: a list
    /// stays small whatever failed (one deploy, [`Db::deploy`], has them).
    pub async fn deploys_filtered(
        &self,
        before: Option<i64>,
        limit: i64,
        filter: &DeployFilter<'_>,
    ) -> anyhow::Result<Vec<Deploy>> {
        // Fixed fragments only; every value is bound.
        let mut sql = String::from(concat!(
            "SELECT ",
            deploy_columns!(),
            " FROM deploys WHERE id < $1"
        ));
        let mut n = 2;
        if filter.app.is_some() {
            sql.push_str(&format!(" AND app = ${n}"));
            n += 1;
        }
        if filter.cluster.is_some() {
            sql.push_str(&format!(" AND cluster = ${n}"));
            n += 1;
        }
        if !filter.statuses.is_empty() {
            let places: Vec<String> = (0..filter.statuses.len())
                .map(|i| format!("${}", n + i))
                .collect();
            sql.push_str(&format!(" AND status IN ({})", places.join(", ")));
            n += filter.statuses.len();
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${n}"));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before.unwrap_or(i64::MAX));
        if let Some(app) = filter.app {
            q = q.bind(app.as_str().to_string());
        }
        if let Some(cluster) = filter.cluster {
            q = q.bind(cluster.as_str().to_string());
        }
        for status in filter.statuses {
            q = q.bind(status.as_str());
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        let deploys = rows
            .iter()
            .map(deploy_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Two more queries for the whole page, whatever its length: the
        // hosts' rows without their log tails (up to 1 MiB each: a page
        // after a fleet-wide failure would weigh gigabytes) and the release
        // phases without their logs. `deploy` (one deploy) has both.
        let ids: Vec<DeployId> = deploys.iter().map(|d| d.id).collect();
        let mut hosts = self.deploy_hosts_without_logs(&ids).await?;
        let mut releases = self.release_phases_without_logs(&ids).await?;
        Ok(deploys
            .into_iter()
            .map(|d| {
                let id = d.id;
                deploy::Deploy {
                    release_phase: releases.remove(&id),
                    ..d.with_hosts(hosts.remove(&id).unwrap_or_default())
                }
            })
            .collect())
    }

    /// The host rows of deploys `ids`, their log tails left out, by deploy:
    /// one query.
    async fn deploy_hosts_without_logs(
        &self,
        ids: &[DeployId],
    ) -> anyhow::Result<std::collections::HashMap<DeployId, Vec<DeployHost>>> {
        let mut out: std::collections::HashMap<DeployId, Vec<DeployHost>> =
            std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        // Fixed fragments only; every id is bound.
        let sql = format!(
            "SELECT deploy_id, host, phase, failed_phase, rolled_back, message, \
             CAST(NULL AS TEXT) AS log_tail, updated_at, batch, bytes_downloaded, \
             bytes_from_peers, bytes_reused FROM deploy_hosts WHERE deploy_id IN ({}) \
             ORDER BY deploy_id, batch, host",
            placeholders(ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(id.0);
        }
        for row in q.fetch_all(&self.pool).await? {
            let id = DeployId(row.try_get("deploy_id")?);
            out.entry(id).or_default().push(deploy_host_from_row(&row)?);
        }
        Ok(out)
    }

    /// Deploys waiting on a build.
    pub async fn deploys_waiting_on(&self, build: BuildId) -> sqlx::Result<Vec<DeployId>> {
        let rows =
            sqlx::query("SELECT id FROM deploys WHERE build_id = $1 AND status = 'building'")
                .bind(build.0)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map(DeployId))
            .collect()
    }

    /// The deploy of `app` to `cluster` that is building or running.
    pub async fn active_deploy(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> sqlx::Result<Option<(DeployId, DeployStatus)>> {
        let row = sqlx::query(
            "SELECT id, status FROM deploys WHERE app = $1 AND cluster = $2 \
             AND status IN ('building', 'running') ORDER BY id LIMIT 1",
        )
        .bind(app.as_str())
        .bind(cluster.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                DeployId(r.try_get(0)?),
                deploy_status(&r.try_get::<String, _>(1)?)?,
            ))
        })
        .transpose()
    }

    /// Makes `batch` the deploy's current batch, if the current one is
    /// still `from` (a compare-and-set: of two callers finishing the same
    /// batch, one starts the next). The clocks of the hosts of the batches
    /// after `from` up to `batch` start now.
    pub async fn start_batch(&self, id: DeployId, from: u32, batch: u32) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE deploys SET current_batch = $3, next_batch_at = NULL \
             WHERE id = $1 AND current_batch = $2 AND status = 'running'",
        )
        .bind(id.0)
        .bind(i64::from(from))
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            sqlx::query(
                "UPDATE deploy_hosts SET updated_at = $4 WHERE deploy_id = $1 AND batch > $2 AND batch <= $3 \
                 AND phase = 'pending'",
            )
            .bind(id.0)
            .bind(i64::from(from))
            .bind(i64::from(batch))
            .bind(Timestamp::now().0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Starts a finished batch's bake: the next batch is due at `at`.
    /// False when the bake was already set.
    pub async fn bake_until(&self, id: DeployId, at: Timestamp) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE deploys SET next_batch_at = $2 WHERE id = $1 AND next_batch_at IS NULL AND status = 'running'",
        )
        .bind(id.0)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// When the deploy's next batch is due, while it bakes.
    pub async fn next_batch_at(&self, id: DeployId) -> sqlx::Result<Option<Timestamp>> {
        let row = sqlx::query("SELECT next_batch_at FROM deploys WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<i64>, _>(0))
            .transpose()?
            .flatten()
            .map(Timestamp))
    }

    /// Running deploys whose bake is over.
    pub async fn deploys_due(&self, now: Timestamp) -> sqlx::Result<Vec<DeployId>> {
        let rows = sqlx::query(
            "SELECT id FROM deploys WHERE status = 'running' AND next_batch_at IS NOT NULL AND next_batch_at <= $1",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map(DeployId))
            .collect()
    }

    /// Marks the still-pending hosts of batch `from` and later as never
    /// started; returns their rows.
    pub async fn leave_unstarted(
        &self,
        id: DeployId,
        batch: u32,
        message: &str,
    ) -> anyhow::Result<Vec<DeployHost>> {
        let now = Timestamp::now();
        sqlx::query(
            "UPDATE deploy_hosts SET phase = 'not_started', message = $3, updated_at = $4 \
             WHERE deploy_id = $1 AND batch >= $2 AND phase = 'pending'",
        )
        .bind(id.0)
        .bind(i64::from(batch))
        .bind(message)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            concat!(
            "SELECT ",
            deploy_host_columns!(),
            " \
             FROM deploy_hosts WHERE deploy_id = $1 AND batch >= $2 AND phase = 'not_started' ORDER BY host"
        ))
        .bind(id.0)
        .bind(i64::from(batch))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deploy_host_from_row).collect()
    }

    /// Moves a deploy from `from` to `to`; false when another writer got
    /// there first.
    pub async fn transition_deploy(
        &self,
        id: DeployId,
        from: &[DeployStatus],
        to: DeployStatus,
        version: Option<&Version>,
        error: Option<&str>,
    ) -> sqlx::Result<bool> {
        let finished = to.is_terminal().then(|| Timestamp::now().0);
        let from_list = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let res = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deploys SET status = $2, version = COALESCE($3, version), error = COALESCE($4, error), \
             finished_at = $5 WHERE id = $1 AND status IN ({from_list})"
        )))
        .bind(id.0)
        .bind(to.as_str())
        .bind(version.map(|v| v.as_str().to_string()))
        .bind(error.map(str::to_string))
        .bind(finished)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Replaces an ended deploy's error (to say what followed it).
    pub async fn set_deploy_error(&self, id: DeployId, error: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE deploys SET error = $2 WHERE id = $1")
            .bind(id.0)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a host event, unless the host already reached a terminal
    /// phase in this deploy: updates the host's row and appends the event
    /// to the history. Events for a terminal host change nothing and are
    /// not kept (a grabber's converge reports `skipped` to the last deploy
    /// on every reconcile; kept, they would grow the history without end).
    /// The history is bounded too: a host keeps at most
    /// [`MAX_HOST_EVENTS`] progress events per deploy (its end is always
    /// kept), and only an end carries a log tail (a grabber sends one
    /// only with a failure).
    /// A `transfer` is recorded on the row; an event without one leaves
    /// the row's numbers as they were.
    /// Returns the row as it now stands and whether it changed.
    pub async fn record_host_event(
        &self,
        id: DeployId,
        host: &HostName,
        ev: &deploy::HostEvent,
    ) -> anyhow::Result<Option<(DeployHost, bool)>> {
        let now = Timestamp::now();
        let end = ev.phase.is_terminal();
        let log_tail = if end { ev.log_tail.clone() } else { None };
        let mut tx = self.pool.begin().await?;
        // A write first (a read first would make SQLite's later upgrade to
        // a write lock fail under concurrent reports), and only for a host
        // of this deploy that has not ended.
        let changed = sqlx::query(concat!(
            "UPDATE deploy_hosts SET phase = $3, failed_phase = $4, rolled_back = $5, message = $6, \
             log_tail = $7, updated_at = $8, bytes_downloaded = COALESCE($9, bytes_downloaded), \
             bytes_from_peers = COALESCE($10, bytes_from_peers), \
             bytes_reused = COALESCE($11, bytes_reused) \
             WHERE deploy_id = $1 AND host = $2 AND phase NOT IN ",
            terminal_phases!()
        ))
        .bind(id.0)
        .bind(host.as_str())
        .bind(ev.phase.as_str())
        .bind(ev.failed_phase.map(|p| p.as_str().to_string()))
        .bind(ev.rolled_back as i64)
        .bind(ev.message.clone())
        .bind(log_tail.clone())
        .bind(now.0)
        .bind(bytes(ev.transfer.map(|t| t.bytes_downloaded))?)
        .bind(bytes(ev.transfer.map(|t| t.bytes_from_peers))?)
        .bind(bytes(ev.transfer.map(|t| t.bytes_reused))?)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            let kept = sqlx::query(
                "INSERT INTO host_events (deploy_id, host, phase, failed_phase, rolled_back, message, log_tail, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE $9 OR (SELECT COUNT(*) FROM host_events WHERE deploy_id = $1 AND host = $2) < $10",
            )
            .bind(id.0)
            .bind(host.as_str())
            .bind(ev.phase.as_str())
            .bind(ev.failed_phase.map(|p| p.as_str().to_string()))
            .bind(ev.rolled_back as i64)
            .bind(ev.message.clone())
            .bind(log_tail)
            .bind(now.0)
            .bind(end)
            .bind(MAX_HOST_EVENTS)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !kept {
                tracing::warn!(deploy_id = %id, host = %host, phase = %ev.phase,
                    "host event not kept in the history: the host sent more than {MAX_HOST_EVENTS}");
            }
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            deploy_host_columns!(),
            " \
             FROM deploy_hosts WHERE deploy_id = $1 AND host = $2"
        ))
        .bind(id.0)
        .bind(host.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((deploy_host_from_row(&r)?, changed))),
        }
    }

    /// The version each host of `cluster` ran of `app` before `version`,
    /// for the hosts that should run `version` now.
    pub async fn previous_versions(
        &self,
        cluster: &Cluster,
        app: &AppName,
        version: &Version,
    ) -> anyhow::Result<Vec<(HostName, Option<Version>)>> {
        let rows = sqlx::query(
            "SELECT host, previous_version FROM desired WHERE cluster = $1 AND app = $2 AND version = $3 \
             ORDER BY host",
        )
        .bind(cluster.as_str())
        .bind(app.as_str())
        .bind(version.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    HostName::parse(r.try_get::<String, _>(0)?)?,
                    r.try_get::<Option<String>, _>(1)?
                        .map(Version::parse)
                        .transpose()?,
                ))
            })
            .collect()
    }

    /// The newest deploy of `app` to `cluster` that changed some host.
    pub async fn last_landed_deploy(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> anyhow::Result<Option<(DeployId, Version)>> {
        let row = sqlx::query(
            "SELECT id, version FROM deploys WHERE app = $1 AND cluster = $2 AND version IS NOT NULL \
             AND status IN ('succeeded', 'partial', 'cancelled') ORDER BY id DESC LIMIT 1",
        )
        .bind(app.as_str())
        .bind(cluster.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                DeployId(r.try_get::<i64, _>(0)?),
                Version::parse(r.try_get::<String, _>(1)?)?,
            ))
        })
        .transpose()
    }

    /// A page of the reported history of a deploy's hosts, oldest first:
    /// up to `limit` events after the one numbered `after`, each with its
    /// number.
    pub async fn host_events(
        &self,
        id: DeployId,
        after: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<(i64, deploy::HostEventRecord)>> {
        let rows = sqlx::query(
            "SELECT host, phase, failed_phase, message, created_at, id FROM host_events \
             WHERE deploy_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(id.0)
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let event = deploy::HostEventRecord {
                    host: HostName::parse(r.try_get::<String, _>(0)?)?,
                    phase: phase(&r.try_get::<String, _>(1)?)?,
                    failed_phase: r
                        .try_get::<Option<String>, _>(2)?
                        .map(|p| phase(&p))
                        .transpose()?,
                    message: r.try_get(3)?,
                    at: Timestamp(r.try_get(4)?),
                };
                Ok((r.try_get(5)?, event))
            })
            .collect()
    }
}

/// The most progress events one host keeps in one deploy's history: an
/// install sends about ten, with hooks and a release phase about twenty.
pub const MAX_HOST_EVENTS: i64 = 64;

/// `$1, $2, …, $n`: the placeholders of an `IN` list of `n` bound values.
pub(super) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A byte count as the database holds it (BIGINT).
fn bytes(n: Option<u64>) -> anyhow::Result<Option<i64>> {
    Ok(n.map(i64::try_from).transpose()?)
}

/// What a new deploy row holds.
pub struct NewDeploy<'a> {
    pub app: &'a AppName,
    pub version: Option<&'a Version>,
    pub git_ref: Option<&'a str>,
    pub build_id: Option<BuildId>,
    pub cluster: &'a Cluster,
    pub selector: &'a HostSelector,
    pub status: DeployStatus,
    pub hosts: &'a [HostName],
    pub strategy: Strategy,
    pub max_failures: Portion,
    pub retry_of: Option<DeployId>,
    pub rollback_on_failure: bool,
    pub rollback_of: Option<DeployId>,
    pub requested_by: Option<&'a str>,
    pub action: deploy::DeployAction,
    pub config_version: u64,
}

/// Which deploys a list keeps (every one when all is empty).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeployFilter<'a> {
    pub app: Option<&'a AppName>,
    pub cluster: Option<&'a Cluster>,
    /// Only these statuses; any when empty.
    pub statuses: &'a [DeployStatus],
}
