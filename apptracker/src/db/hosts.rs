//! Hosts: heartbeats, the desired state each host converges to, and
//! forgetting a retired host.

use super::*;

/// The rows of one host's desired state that hosts may install (the
/// build succeeded), with the build and the deploy that set each: binds
/// `$1` cluster, `$2` host. Shared by [`Db::desired`] and
/// [`Db::desired_fingerprint`], so the fingerprint is always of what
/// `desired` returns.
macro_rules! desired_of_host {
    () => {
        "desired d JOIN builds b ON b.app = d.app AND b.version = d.version \
         LEFT JOIN deploys x ON x.id = d.deploy_id \
         WHERE d.cluster = $1 AND d.host = $2 AND b.status = 'succeeded'"
    };
}

impl Db {
    /// Registers a host or records that it is alive, with what it runs
    /// and its peer listener (none when the heartbeat names none).
    pub async fn upsert_host(&self, hb: &deploy::Heartbeat) -> anyhow::Result<Host> {
        let now = Timestamp::now();
        let apps = serde_json::to_string(&hb.apps)?;
        sqlx::query(
            "INSERT INTO hosts (cluster, name, root, apps_json, registered_at, last_seen, peer_url, \
             peer_fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7) \
             ON CONFLICT (cluster, name) DO UPDATE SET root = $3, apps_json = $4, last_seen = $5, \
             peer_url = $6, peer_fingerprint = $7",
        )
        .bind(hb.cluster.as_str())
        .bind(hb.host.as_str())
        .bind(&hb.root)
        .bind(apps)
        .bind(now.0)
        .bind(hb.peer.as_ref().map(|p| p.url.clone()))
        .bind(hb.peer.as_ref().map(|p| p.fingerprint.clone()))
        .execute(&self.pool)
        .await?;
        self.host(&hb.cluster, &hb.host)
            .await?
            .context("host vanished right after upsert")
    }

    /// One host: what a heartbeat reads back, so it costs the same with a
    /// thousand hosts in the cluster as with one.
    pub async fn host(&self, cluster: &Cluster, name: &HostName) -> anyhow::Result<Option<Host>> {
        let row = sqlx::query(
            "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
             WHERE cluster = $1 AND name = $2",
        )
        .bind(cluster.as_str())
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(host_from_row).transpose()
    }

    pub async fn hosts(&self, cluster: Option<&Cluster>) -> anyhow::Result<Vec<Host>> {
        let rows =
            match cluster {
                Some(c) => sqlx::query(
                    "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
                     WHERE cluster = $1 ORDER BY cluster, name",
                )
                .bind(c.as_str())
                .fetch_all(&self.pool)
                .await?,
                None => sqlx::query(
                    "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
                     ORDER BY cluster, name",
                )
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter().map(host_from_row).collect()
    }

    /// A page of hosts by cluster and name: up to `limit` after `after`.
    pub async fn hosts_page(
        &self,
        after: Option<&(Cluster, HostName)>,
        limit: i64,
    ) -> anyhow::Result<Vec<Host>> {
        let (cluster, name) = after
            .map(|(c, h)| (c.as_str(), h.as_str()))
            .unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT cluster, name, root, apps_json, registered_at, last_seen FROM hosts \
             WHERE cluster > $1 OR (cluster = $1 AND name > $2) ORDER BY cluster, name LIMIT $3",
        )
        .bind(cluster)
        .bind(name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(host_from_row).collect()
    }

    /// Records what the hosts of a rollout should run, remembering what they
    /// ran before so a failed host can be pointed back at it.
    pub async fn set_desired(
        &self,
        cluster: &Cluster,
        hosts: &[HostName],
        app: &AppName,
        version: &Version,
        deploy: DeployId,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        for host in hosts {
            sqlx::query(
                "INSERT INTO desired (cluster, host, app, version, deploy_id) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (cluster, host, app) DO UPDATE SET \
                 previous_version = CASE WHEN desired.version = $4 THEN desired.previous_version ELSE desired.version END, \
                 previous_deploy_id = CASE WHEN desired.version = $4 THEN desired.previous_deploy_id ELSE desired.deploy_id END, \
                 prior_deploy_id = CASE WHEN desired.deploy_id = $5 THEN desired.prior_deploy_id ELSE desired.deploy_id END, \
                 version = $4, deploy_id = $5",
            )
            .bind(cluster.as_str())
            .bind(host.as_str())
            .bind(app.as_str())
            .bind(version.as_str())
            .bind(deploy.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// A host failed `deploy` and rolled back: it should run what it ran
    /// before, not retry the failed release at every restart.
    pub async fn revert_desired(
        &self,
        cluster: &Cluster,
        host: &HostName,
        app: &AppName,
        deploy: DeployId,
    ) -> sqlx::Result<()> {
        // A restart (or a new config) of the release the host ran: back to
        // the deploy before it, same release, its config.
        let same_release = sqlx::query(
            "UPDATE desired SET deploy_id = prior_deploy_id, prior_deploy_id = NULL \
             WHERE cluster = $1 AND host = $2 AND app = $3 AND deploy_id = $4 \
             AND prior_deploy_id IS NOT NULL AND EXISTS (SELECT 1 FROM deploys p \
             WHERE p.id = desired.prior_deploy_id AND p.version = desired.version)",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .bind(app.as_str())
        .bind(deploy.0)
        .execute(&self.pool)
        .await?;
        if same_release.rows_affected() > 0 {
            return Ok(());
        }
        // With no previous version there is nothing to go back to: drop the row.
        sqlx::query(
            "DELETE FROM desired WHERE cluster = $1 AND host = $2 AND app = $3 AND deploy_id = $4 \
             AND previous_version IS NULL",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .bind(app.as_str())
        .bind(deploy.0)
        .execute(&self.pool)
        .await?;
        // What the host ran before the version it goes back to is found
        // again in the deploys' history (the newest deploy before it that
        // landed another version there), so a later rollback of that
        // version still takes this host.
        sqlx::query(
            "UPDATE desired SET version = previous_version, deploy_id = previous_deploy_id, \
             previous_version = (SELECT d.version FROM deploys d JOIN deploy_hosts h ON h.deploy_id = d.id \
               WHERE d.app = $3 AND d.cluster = $1 AND h.host = $2 AND h.phase = 'done' \
               AND d.id < desired.previous_deploy_id AND d.version <> desired.previous_version \
               ORDER BY d.id DESC LIMIT 1), \
             previous_deploy_id = (SELECT d.id FROM deploys d JOIN deploy_hosts h ON h.deploy_id = d.id \
               WHERE d.app = $3 AND d.cluster = $1 AND h.host = $2 AND h.phase = 'done' \
               AND d.id < desired.previous_deploy_id AND d.version <> desired.previous_version \
               ORDER BY d.id DESC LIMIT 1) \
             WHERE cluster = $1 AND host = $2 AND app = $3 AND deploy_id = $4",
        )
        .bind(cluster.as_str())
        .bind(host.as_str())
        .bind(app.as_str())
        .bind(deploy.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// [`deploy::desired_fingerprint`] of what [`desired`](Self::desired)
    /// returns for `host`, read with the same joins and filter
    /// (`desired_of_host!`) but only the three columns it hashes: one
    /// indexed read per heartbeat.
    pub async fn desired_fingerprint(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> anyhow::Result<String> {
        let rows = sqlx::query(concat!(
            "SELECT d.app, d.version, d.deploy_id FROM ",
            desired_of_host!()
        ))
        .bind(cluster.as_str())
        .bind(host.as_str())
        .fetch_all(&self.pool)
        .await?;
        let apps = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<(String, String, i64)>, sqlx::Error>>()?;
        Ok(deploy::desired_fingerprint(
            apps.iter().map(|(a, v, d)| (a.as_str(), v.as_str(), *d)),
        ))
    }

    pub async fn desired(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> anyhow::Result<Vec<DesiredRow>> {
        let rows = sqlx::query(concat!(
            "SELECT d.app, d.version, d.deploy_id, b.artifact_key, b.sha256, b.size, b.signature, \
             COALESCE(x.config_version, 0), COALESCE(x.action, 'deploy'), \
             b.index_sha256, b.index_size, b.index_signature FROM ",
            desired_of_host!(),
            " ORDER BY d.app"
        ))
        .bind(cluster.as_str())
        .bind(host.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DesiredRow {
                    app: AppName::parse(r.try_get::<String, _>(0)?)?,
                    version: Version::parse(r.try_get::<String, _>(1)?)?,
                    deploy_id: DeployId(r.try_get(2)?),
                    artifact: StoredArtifact {
                        key: ArtifactKey::new(r.try_get::<String, _>(3)?),
                        sha256: Sha256::parse(r.try_get::<String, _>(4)?)?,
                        size: r.try_get::<i64, _>(5)? as u64,
                        // Unsigned (built before signing): grabbers refuse it.
                        signature: r.try_get::<Option<String>, _>(6)?.unwrap_or_default(),
                        index: None,
                    }
                    .with_index(
                        r.try_get::<Option<String>, _>(9)?
                            .map(Sha256::parse)
                            .transpose()?,
                        r.try_get::<Option<i64>, _>(10)?
                            .and_then(|n| u64::try_from(n).ok()),
                        r.try_get(11)?,
                    ),
                    config_version: u64::try_from(r.try_get::<i64, _>(7)?)?,
                    action: deploy_action(&r.try_get::<String, _>(8)?)?,
                })
            })
            .collect()
    }

    /// Forgets a host: its registration, its latest reports, its desired
    /// state and its drift alerts (what makes the drift table show it),
    /// unless a deploy under way has it in a phase that is not over, or
    /// runs its release phase there. Deploys' history keeps its rows.
    pub async fn delete_host(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> anyhow::Result<HostRemoval> {
        let mut tx = self.pool.begin().await?;
        // The registration goes first: on SQLite that write makes this
        // transaction the one writer; a refusal below rolls it back.
        let registered = sqlx::query("DELETE FROM hosts WHERE cluster = $1 AND name = $2")
            .bind(cluster.as_str())
            .bind(host.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let busy = sqlx::query(concat!(
            "SELECT d.id, d.app FROM deploy_hosts dh JOIN deploys d ON d.id = dh.deploy_id \
             WHERE d.cluster = $1 AND dh.host = $2 AND d.status IN ('building', 'running') \
             AND dh.phase NOT IN ",
            terminal_phases!(),
            " UNION SELECT d.id, d.app FROM release_phases r JOIN deploys d ON d.id = r.deploy_id \
             WHERE d.cluster = $1 AND r.host = $2 AND r.status = 'running' ORDER BY 1"
        ))
        .bind(cluster.as_str())
        .bind(host.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !busy.is_empty() {
            let under_way = busy
                .iter()
                .map(|r| {
                    Ok((
                        DeployId(r.try_get(0)?),
                        AppName::parse(r.try_get::<String, _>(1)?)?,
                    ))
                })
                .collect::<anyhow::Result<_>>()?;
            return Ok(HostRemoval::UnderWay(under_way));
        }
        let forget =
            |sql: &'static str| sqlx::query(sql).bind(cluster.as_str()).bind(host.as_str());
        let reported = forget("DELETE FROM host_reports WHERE cluster = $1 AND host = $2")
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let apps_reported = forget("DELETE FROM app_reports WHERE cluster = $1 AND host = $2")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let apps = forget("DELETE FROM desired WHERE cluster = $1 AND host = $2 RETURNING app")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok(AppName::parse(r.try_get::<String, _>(0)?)?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        forget("DELETE FROM drift_alerts WHERE cluster = $1 AND host = $2")
            .execute(&mut *tx)
            .await?;
        if !registered && !reported && apps_reported == 0 && apps.is_empty() {
            return Ok(HostRemoval::NotFound);
        }
        tx.commit().await?;
        let mut apps = apps;
        apps.sort();
        Ok(HostRemoval::Removed(deploy::RemovedHost {
            cluster: cluster.clone(),
            host: host.clone(),
            apps,
            registered,
            reported: reported || apps_reported > 0,
        }))
    }

    /// Every host of deploy `id` with its phase there, its peer listener
    /// (when it advertised one) and when its grabber was last heard from
    /// (none for a host that never heartbeated), by name.
    pub async fn deploy_peers(&self, id: DeployId) -> anyhow::Result<Vec<PeerRow>> {
        let rows = sqlx::query(
            "SELECT dh.host, dh.phase, h.peer_url, h.peer_fingerprint, h.last_seen \
             FROM deploy_hosts dh JOIN deploys d ON d.id = dh.deploy_id \
             LEFT JOIN hosts h ON h.cluster = d.cluster AND h.name = dh.host \
             WHERE dh.deploy_id = $1 ORDER BY dh.host",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let url: Option<String> = r.try_get(2)?;
                let fingerprint: Option<String> = r.try_get(3)?;
                Ok(PeerRow {
                    host: HostName::parse(r.try_get::<String, _>(0)?)?,
                    phase: phase(&r.try_get::<String, _>(1)?)?,
                    endpoint: url
                        .zip(fingerprint)
                        .map(|(url, fingerprint)| deploy::PeerEndpoint { url, fingerprint }),
                    last_seen: r.try_get::<Option<i64>, _>(4)?.map(Timestamp),
                })
            })
            .collect()
    }
}

/// A host of a deploy as a peer of the others: [`Db::deploy_peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub host: HostName,
    pub phase: HostPhase,
    pub endpoint: Option<deploy::PeerEndpoint>,
    pub last_seen: Option<Timestamp>,
}

/// What [`Db::delete_host`] did, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRemoval {
    /// Nothing knew the host.
    NotFound,
    /// Deploys under way on it, and of which app.
    UnderWay(Vec<(DeployId, AppName)>),
    Removed(deploy::RemovedHost),
}
