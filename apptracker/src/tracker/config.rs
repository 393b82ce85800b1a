//! App config (`deploy env`) and operating an app without a release
//! (`deploy restart|stop|start`).
//!
//! A change reads the newest config version, applies itself and stores the
//! result as the next version (a race loses on the version's primary key
//! and tries again), so versions are immutable and a host asked to run
//! version N gets exactly N. Secrets are sealed with the secrets key, bound
//! to app, cluster and key; they are opened only for the agent of a host
//! that runs the app. Applying a change, and restarting, stopping or
//! starting, is a deploy of the release the cluster runs, with its action:
//! the same rollout, batches, health checks, host rows and events as any.

use super::*;
use crate::model::{StoredConfig, StoredValue, StoredVar};
use deploy::{AppConfig, ConfigChange, ConfigVar, DeployAction, HostConfig, OperateApp};

/// Tries of a change that keeps losing the race for the next version.
const CONFIG_RETRIES: usize = 5;

/// What the sealing of a secret is bound to.
fn seal_context(app: &AppName, cluster: Option<&Cluster>, key: &str) -> String {
    let scope = cluster.map(Cluster::as_str).unwrap_or("*");
    format!("config:{app}:{scope}:{key}")
}

impl Tracker {
    /// The app's config at its newest version, secrets masked; with a
    /// cluster, the app-wide variables and that cluster's.
    pub async fn app_config(
        &self,
        app: &AppName,
        cluster: Option<&Cluster>,
    ) -> Result<AppConfig, Error> {
        self.app_or_404(app).await?;
        let stored = self.db().config(app, None).await?;
        let vars = stored
            .as_ref()
            .map(|c| {
                c.vars
                    .iter()
                    .filter(|v| {
                        cluster.is_none() || v.cluster.is_none() || v.cluster.as_ref() == cluster
                    })
                    .map(|v| ConfigVar {
                        key: v.key.clone(),
                        cluster: v.cluster.clone(),
                        value: match &v.value {
                            StoredValue::Value(s) => Some(s.clone()),
                            StoredValue::Sealed(_) => None,
                        },
                        secret: matches!(v.value, StoredValue::Sealed(_)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(AppConfig {
            app: app.clone(),
            version: stored.as_ref().map_or(0, |c| c.version),
            vars,
            updated_at: stored.as_ref().map(|c| c.created_at),
            updated_by: stored.map(|c| c.created_by),
        })
    }

    /// Sets variables; applies the new version when asked.
    pub async fn set_config(
        &self,
        app: &AppName,
        req: &deploy::SetConfig,
        by: &str,
    ) -> Result<ConfigChange, Error> {
        self.app_or_404(app).await?;
        if req.vars.is_empty() {
            return Err(Error::Invalid(
                "`vars` is empty: give at least one KEY=VALUE".into(),
            ));
        }
        for (k, v) in &req.vars {
            deploy::check_config_key(k).map_err(Error::Invalid)?;
            deploy::check_config_value(k, v).map_err(Error::Invalid)?;
        }
        let cluster = req.cluster.as_ref();
        // Sealed once, outside the retries: a sealing is random anyway.
        let mut values = Vec::with_capacity(req.vars.len());
        for (k, v) in &req.vars {
            let value = if req.secret {
                StoredValue::Sealed(
                    self.secrets()
                        .seal(v.as_bytes(), &seal_context(app, cluster, k))?,
                )
            } else {
                StoredValue::Value(v.clone())
            };
            values.push((k.clone(), value));
        }
        let keys: Vec<String> = req.vars.keys().cloned().collect();
        let version = self
            .change_config(app, &keys, by, |vars| {
                for (k, value) in &values {
                    vars.retain(|v| !(v.key == *k && v.cluster.as_ref() == cluster));
                    vars.push(StoredVar {
                        key: k.clone(),
                        cluster: cluster.cloned(),
                        value: value.clone(),
                    });
                }
                Ok(())
            })
            .await?;
        tracing::info!(%app, cluster = cluster.map(Cluster::as_str).unwrap_or("*"), config_version = version,
            keys = %keys.join(","), secret = req.secret, %by, "config set");
        self.config_changed(app, cluster, version, keys, req.apply, by)
            .await
    }

    /// Removes variables (each must be set); applies when asked.
    pub async fn unset_config(
        &self,
        app: &AppName,
        req: &deploy::UnsetConfig,
        by: &str,
    ) -> Result<ConfigChange, Error> {
        self.app_or_404(app).await?;
        if req.keys.is_empty() {
            return Err(Error::Invalid(
                "`keys` is empty: name at least one key".into(),
            ));
        }
        let cluster = req.cluster.as_ref();
        let version = self
            .change_config(app, &req.keys, by, |vars| {
                for k in &req.keys {
                    let before = vars.len();
                    vars.retain(|v| !(v.key == *k && v.cluster.as_ref() == cluster));
                    if vars.len() == before {
                        return Err(Error::NotFound(match cluster {
                            Some(c) => format!("`{k}` is not set for `{app}` on `{c}`"),
                            None => format!("`{k}` is not set for `{app}` (app-wide)"),
                        }));
                    }
                }
                Ok(())
            })
            .await?;
        tracing::info!(%app, cluster = cluster.map(Cluster::as_str).unwrap_or("*"), config_version = version,
            keys = %req.keys.join(","), %by, "config unset");
        self.config_changed(app, cluster, version, req.keys.clone(), req.apply, by)
            .await
    }

    /// Reads the newest version, lets `change` edit its variables, and
    /// stores them as the next version.
    async fn change_config(
        &self,
        app: &AppName,
        keys: &[String],
        by: &str,
        change: impl Fn(&mut Vec<StoredVar>) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        for _ in 0..CONFIG_RETRIES {
            let (version, mut vars) = match self.db().config(app, None).await? {
                Some(StoredConfig { version, vars, .. }) => (version, vars),
                None => (0, Vec::new()),
            };
            change(&mut vars)?;
            vars.sort_by(|a, b| (&a.cluster, &a.key).cmp(&(&b.cluster, &b.key)));
            if self
                .db()
                .insert_config(app, version + 1, &vars, keys, by)
                .await?
            {
                return Ok(version + 1);
            }
        }
        Err(Error::Conflict(format!(
            "the config of `{app}` kept changing under this change; try again"
        )))
    }

    async fn config_changed(
        &self,
        app: &AppName,
        cluster: Option<&Cluster>,
        version: u64,
        keys: Vec<String>,
        apply: bool,
        by: &str,
    ) -> Result<ConfigChange, Error> {
        let mut deploys = Vec::new();
        if apply {
            let clusters = match cluster {
                Some(c) => vec![c.clone()],
                None => self.db().clusters_running(app).await?,
            };
            for c in clusters {
                let req = OperateApp {
                    cluster: c,
                    hosts: None,
                    batch: None,
                    confirm: None,
                };
                deploys.push(self.operate(app, DeployAction::Restart, &req, by).await?);
            }
        }
        Ok(ConfigChange {
            version,
            keys,
            deploys,
        })
    }

    /// The variables `app` runs with on `host` of `cluster` at config
    /// `version`, secrets opened: for that host's agent only, and only if a
    /// deploy of the app ever named the host.
    pub async fn host_config(
        &self,
        cluster: &Cluster,
        host: &HostName,
        app: &AppName,
        version: u64,
    ) -> Result<HostConfig, Error> {
        if !self.db().host_runs_app(app, cluster, host).await? {
            return Err(Error::NotFound(format!(
                "no deploy of `{app}` names host `{host}` of `{cluster}`: its config is not \
                 for this host"
            )));
        }
        let Some(stored) = self.db().config(app, Some(version)).await? else {
            return Err(Error::NotFound(format!(
                "`{app}` has no config version {version}"
            )));
        };
        let mut vars = std::collections::BTreeMap::new();
        // App-wide first, then the cluster's, which win.
        let ordered = stored.vars.iter().filter(|v| v.cluster.is_none()).chain(
            stored
                .vars
                .iter()
                .filter(|v| v.cluster.as_ref() == Some(cluster)),
        );
        for v in ordered {
            let value = match &v.value {
                StoredValue::Value(s) => s.clone(),
                StoredValue::Sealed(sealed) => {
                    use secrecy::ExposeSecret;
                    self.secrets()
                        .open(sealed, &seal_context(app, v.cluster.as_ref(), &v.key))
                        .map_err(|e| {
                            Error::Internal(anyhow::anyhow!(
                                "secret `{}` of `{app}` (config version {version}) does not open: {e}",
                                v.key
                            ))
                        })?
                        .expose_secret()
                        .to_string()
                }
            };
            vars.insert(v.key.clone(), value);
        }
        Ok(HostConfig {
            app: app.clone(),
            version,
            vars,
        })
    }

    /// Restarts, stops or starts `app` on the hosts of a cluster that run
    /// it, as a deploy of the release the cluster last landed, with the
    /// app's newest config.
    pub async fn operate(
        &self,
        app: &AppName,
        action: DeployAction,
        req: &OperateApp,
        by: &str,
    ) -> Result<Deploy, Error> {
        if action == DeployAction::Deploy {
            return Err(Error::Invalid(
                "operate: give restart, stop or start".into(),
            ));
        }
        self.app_or_404(app).await?;
        let cluster = &req.cluster;
        let Some((_, version)) = self.db().last_landed_deploy(app, cluster).await? else {
            return Err(Error::NotFound(format!(
                "`{app}` has never been deployed to `{cluster}`: nothing to {action}"
            )));
        };
        let selector = req.hosts.clone().unwrap_or_else(HostSelector::all);
        let running = self.db().hosts_running(app, cluster).await?;
        let alive: Vec<HostName> = self
            .targets(cluster, &selector)
            .await?
            .hosts
            .into_iter()
            .map(|h| h.name)
            .filter(|h| running.contains(h))
            .collect();
        if alive.is_empty() {
            return Err(Error::refused(
                ErrorCode::NoMatchingHosts,
                format!(
                    "no live host of `{cluster}` matching `{selector}` runs `{app}` (it runs on: {})",
                    if running.is_empty() {
                        "none".to_string()
                    } else {
                        running
                            .iter()
                            .map(HostName::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
        let strategy = match req.batch {
            None => Strategy::AllAtOnce,
            Some(0) => return Err(Error::Invalid("`batch` must be at least 1".into())),
            Some(n) => Strategy::Rolling {
                batch: Portion::Count(n),
                bake_ms: 0,
                max_unavailable: None,
            },
        };
        let create = CreateDeploy {
            app: app.clone(),
            version: Some(version),
            git_ref: None,
            cluster: cluster.clone(),
            hosts: Some(selector),
            strategy,
            max_failures: Portion::default(),
            rollback_on_failure: false,
            confirm: req.confirm.clone(),
            wait: false,
        };
        let origin = Origin {
            hosts: Some(alive),
            // The release the cluster runs: past a pin, like a rollback.
            rollback: true,
            by: Some(by),
            action,
            ..Origin::default()
        };
        let d = self.create_deploy_on(&create, origin).await?;
        tracing::info!(deploy_id = %d.id, %app, %cluster, %action, %by, "app operated");
        Ok(d)
    }
}
