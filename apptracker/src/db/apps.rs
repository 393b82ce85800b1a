//! Apps: registration, listing, changes, removal, build triggers.

use super::*;

impl Db {
    /// Inserts an app; `Ok(None)` when the name is taken.
    pub async fn insert_app(&self, app: &App) -> sqlx::Result<Option<App>> {
        let res = sqlx::query(
            "INSERT INTO apps (name, git_url, branch, auto_deploy_cluster, auto_deploy_hosts, created_at, \
             new_hosts, root) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
        )
        .bind(app.name.as_str())
        .bind(&app.git_url)
        .bind(&app.branch)
        .bind(app.auto_deploy.as_ref().map(|a| a.cluster.to_string()))
        .bind(
            app.auto_deploy
                .as_ref()
                .and_then(|a| a.hosts.as_ref())
                .map(|h| h.to_string()),
        )
        .bind(app.created_at.0)
        .bind(app.new_hosts.as_str())
        .bind(app.root.as_deref())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(app.clone()))
    }

    pub async fn apps(&self) -> sqlx::Result<Vec<App>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    /// A page of apps by name: up to `limit` named after `after`.
    pub async fn apps_page(&self, after: Option<&AppName>, limit: i64) -> sqlx::Result<Vec<App>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE name > $1 ORDER BY name LIMIT $2"
        ))
        .bind(after.map(AppName::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    pub async fn app(&self, name: &AppName) -> sqlx::Result<Option<App>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE name = $1"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// Stores the hash of an app's build-trigger secret (replacing any).
    pub async fn set_trigger_hash(&self, app: &AppName, hash: &str) -> sqlx::Result<bool> {
        let res = sqlx::query("UPDATE apps SET trigger_hash = $2 WHERE name = $1")
            .bind(app.as_str())
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The app whose build-trigger secret hashes to `hash`.
    pub async fn app_by_trigger_hash(&self, hash: &str) -> sqlx::Result<Option<App>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE trigger_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// Changes what `change` names of an app in one statement (so two
    /// changes of different fields never undo each other); `Ok(None)` when
    /// there is no such app.
    pub async fn update_app(
        &self,
        name: &AppName,
        change: &deploy::UpdateApp,
    ) -> sqlx::Result<Option<App>> {
        let rule = change.auto_deploy.as_ref();
        let row = sqlx::query(concat!(
            "UPDATE apps SET branch = COALESCE($2, branch), \
             auto_deploy_cluster = CASE WHEN $3 = 1 THEN $4 ELSE auto_deploy_cluster END, \
             auto_deploy_hosts = CASE WHEN $3 = 1 THEN $5 ELSE auto_deploy_hosts END, \
             new_hosts = COALESCE($6, new_hosts) WHERE name = $1 RETURNING ",
            app_columns!()
        ))
        .bind(name.as_str())
        .bind(change.branch.as_deref())
        .bind(i64::from(rule.is_some()))
        .bind(rule.and_then(Option::as_ref).map(|a| a.cluster.to_string()))
        .bind(
            rule.and_then(Option::as_ref)
                .and_then(|a| a.hosts.as_ref())
                .map(|h| h.to_string()),
        )
        .bind(change.new_hosts.map(deploy::NewHostPolicy::as_str))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// Removes an app and every row only it owns (builds, deploys with
    /// their hosts' rows, events and release phases, desired state, pins,
    /// config versions, webhook secrets and deliveries, its own
    /// notifications, log requests, drift alerts), unless a deploy of it
    /// is under way or a host runs it: all in one transaction that holds
    /// the app's row, so no deploy or build of it starts meanwhile. The
    /// audit log and the hosts' reports are kept.
    pub async fn delete_app(&self, name: &AppName) -> anyhow::Result<AppRemoval> {
        let mut tx = self.pool.begin().await?;
        // Hold the app's row first. PostgreSQL: a deploy or build inserted
        // meanwhile (its foreign key shares the row) waits for the end and
        // then finds no app. SQLite: a write first makes this transaction
        // the one writer from here on.
        let held = if self.sqlite {
            sqlx::query("UPDATE apps SET next_build_number = next_build_number WHERE name = $1")
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1
        } else {
            sqlx::query("SELECT name FROM apps WHERE name = $1 FOR UPDATE")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some()
        };
        if !held {
            return Ok(AppRemoval::NotFound);
        }
        let rows = sqlx::query(
            "SELECT id, cluster, status FROM deploys WHERE app = $1 \
             AND status IN ('queued', 'building', 'running') ORDER BY id",
        )
        .bind(name.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !rows.is_empty() {
            let under_way = rows
                .iter()
                .map(|r| {
                    Ok((
                        DeployId(r.try_get(0)?),
                        Cluster::parse(r.try_get::<String, _>(1)?)?,
                        deploy_status(&r.try_get::<String, _>(2)?)?,
                    ))
                })
                .collect::<anyhow::Result<_>>()?;
            return Ok(AppRemoval::UnderWay(under_way));
        }
        let running = hosts_running(&mut tx, name).await?;
        if !running.is_empty() {
            return Ok(AppRemoval::Running(running));
        }
        let of_deploys = "IN (SELECT id FROM deploys WHERE app = $1)";
        let mut counts = Vec::new();
        for sql in [
            format!("DELETE FROM host_events WHERE deploy_id {of_deploys}"),
            format!("DELETE FROM deploy_hosts WHERE deploy_id {of_deploys}"),
            format!("DELETE FROM release_phases WHERE deploy_id {of_deploys}"),
            "DELETE FROM notification_deliveries WHERE notification_id IN \
             (SELECT id FROM notifications WHERE app = $1)"
                .to_string(),
            "DELETE FROM notifications WHERE app = $1".into(),
            "DELETE FROM deploys WHERE app = $1".into(),
            "DELETE FROM builds WHERE app = $1".into(),
            "DELETE FROM desired WHERE app = $1".into(),
            "DELETE FROM pins WHERE app = $1".into(),
            "DELETE FROM config_versions WHERE app = $1".into(),
            "DELETE FROM webhook_secrets WHERE app = $1".into(),
            "DELETE FROM webhook_deliveries WHERE app = $1".into(),
            "DELETE FROM log_requests WHERE app = $1".into(),
            "DELETE FROM drift_alerts WHERE app = $1".into(),
            "DELETE FROM apps WHERE name = $1".into(),
        ] {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
            counts.push(done.rows_affected());
        }
        tx.commit().await?;
        Ok(AppRemoval::Removed(deploy::RemovedApp {
            app: name.clone(),
            notifications: counts[4],
            deploys: counts[5],
            builds: counts[6],
            desired_hosts: counts[7],
            pins: counts[8],
            config_versions: counts[9],
            webhook_secrets: counts[10],
        }))
    }
}

/// What [`Db::delete_app`] did, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppRemoval {
    NotFound,
    /// Deploys of the app that are queued, building or running, oldest
    /// first.
    UnderWay(Vec<(DeployId, Cluster, DeployStatus)>),
    /// Hosts that run the app, or should, by cluster and name.
    Running(Vec<RunningOn>),
    Removed(deploy::RemovedApp),
}

/// A host an app runs on, as AppTracker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningOn {
    pub cluster: Cluster,
    pub host: HostName,
    /// Its desired state runs the app (a deploy that did not stop it).
    pub desired: bool,
    /// Its latest report shows a process of the app.
    pub reported: bool,
}

/// The hosts that run `app` or should: a desired state whose deploy did
/// not stop it, or a latest report with a process of it.
async fn hosts_running(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    app: &AppName,
) -> anyhow::Result<Vec<RunningOn>> {
    let mut hosts: std::collections::BTreeMap<(String, String), RunningOn> = Default::default();
    let desired = sqlx::query(
        "SELECT d.cluster, d.host FROM desired d LEFT JOIN deploys x ON x.id = d.deploy_id \
         WHERE d.app = $1 AND COALESCE(x.action, 'deploy') <> 'stop'",
    )
    .bind(app.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let reports = sqlx::query("SELECT cluster, host, report_json FROM app_reports WHERE app = $1")
        .bind(app.as_str())
        .fetch_all(&mut **tx)
        .await?;
    for (rows, from_report) in [(desired, false), (reports, true)] {
        for r in rows {
            if from_report {
                let report: serde_json::Value = serde_json::from_str(&r.try_get::<String, _>(2)?)?;
                if report.get("process").is_none_or(serde_json::Value::is_null) {
                    continue;
                }
            }
            let (cluster, host): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let entry = match hosts.entry((cluster.clone(), host.clone())) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(RunningOn {
                    cluster: Cluster::parse(cluster)?,
                    host: HostName::parse(host)?,
                    desired: false,
                    reported: false,
                }),
            };
            if from_report {
                entry.reported = true;
            } else {
                entry.desired = true;
            }
        }
    }
    Ok(hosts.into_values().collect())
}
