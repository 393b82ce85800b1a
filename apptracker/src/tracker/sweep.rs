//! Host progress and the sweeper: grabbers' reports move deploys on; hosts
//! silent past their deadlines are timed out or unreachable.

use super::*;

impl Tracker {
    /// A grabber reports progress. Events for a host that already reached a
    /// terminal phase are kept in the history but change nothing.
    pub async fn host_event(
        &self,
        id: DeployId,
        host: &HostName,
        ev: &HostEvent,
    ) -> Result<DeployHost, Error> {
        let deploy = self
            .db()
            .deploy_row(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no deploy {id}")))?;
        if deploy.cluster != ev.cluster {
            return Err(Error::Invalid(format!(
                "deploy {id} targets cluster `{}`, not `{}`",
                deploy.cluster, ev.cluster
            )));
        }
        if let Some(t) = ev.transfer {
            check_transfer(&t)?;
        }
        let (row, changed) = self
            .db()
            .record_host_event(id, host, ev)
            .await?
            .ok_or_else(|| Error::NotFound(format!("host `{host}` is not part of deploy {id}")))?;
        if !changed {
            return Ok(row);
        }
        // Every way a host can fail the deploy sends it back to what it ran
        // before: a host that timed out or went unreachable may come back
        // later, and must not install the release this deploy gave up on
        // (nor may drift call the old one `drifted` and a sync redeploy it).
        if row.phase.is_failure() {
            tracing::warn!(deploy_id = %id, host = %host, app = %deploy.app, phase = %row.phase,
                failed_phase = ?row.failed_phase, rolled_back = row.rolled_back, "host failed");
            self.db()
                .revert_desired(&deploy.cluster, host, &deploy.app, id)
                .await?;
        }
        self.bus()
            .emit(DeployEvent::Host {
                deploy_id: id,
                host: row.clone(),
            })
            .await;
        if row.phase.is_terminal() {
            self.advance(id).await?;
        }
        Ok(row)
    }

    /// Marks hosts silent past the deadline as `timed_out`, and starts the
    /// batches whose bake is over.
    pub async fn sweep(&self) -> anyhow::Result<()> {
        for id in self.db().deploys_due(Timestamp::now()).await? {
            self.advance(id).await?;
        }
        for (app, cluster) in self.db().stalled_queues().await? {
            self.start_next_queued(&app, &cluster).await?;
        }
        self.sweep_release_phases().await?;
        self.republish_unreported().await?;
        let silent = self.config().host_unreachable;
        let since = Timestamp(Timestamp::now().0 - silent.as_millis() as i64);
        for (id, host) in self.db().unreachable_hosts(since).await? {
            let Ok(host) = HostName::parse(host) else {
                continue;
            };
            let Some(deploy) = self.db().deploy(id).await? else {
                continue;
            };
            tracing::warn!(deploy_id = %id, host = %host, app = %deploy.app, "host unreachable");
            let ev = HostEvent {
                cluster: deploy.cluster.clone(),
                phase: HostPhase::Unreachable,
                failed_phase: None,
                rolled_back: false,
                message: Some(format!(
                    "its grabber has not heartbeated for {}: the host or its agent is down",
                    humantime::format_duration(silent)
                )),
                log_tail: None,
                transfer: None,
            };
            self.host_event(id, &host, &ev)
                .await
                .with_context(|| format!("cannot mark host {host} unreachable"))?;
        }
        let deadline = self.config().host_deadline;
        let before = Timestamp(Timestamp::now().0 - deadline.as_millis() as i64);
        for (id, host) in self.db().silent_hosts(before).await? {
            let Ok(host) = HostName::parse(host) else {
                continue;
            };
            let Some(deploy) = self.db().deploy(id).await? else {
                continue;
            };
            tracing::warn!(deploy_id = %id, host = %host, app = %deploy.app, "host timed out");
            let ev = HostEvent {
                cluster: deploy.cluster.clone(),
                phase: HostPhase::TimedOut,
                failed_phase: None,
                rolled_back: false,
                message: Some(format!(
                    "no progress report for {}",
                    humantime::format_duration(deadline)
                )),
                log_tail: None,
                transfer: None,
            };
            self.host_event(id, &host, &ev)
                .await
                .with_context(|| format!("cannot time out host {host}"))?;
        }
        Ok(())
    }
}

impl Tracker {
    /// Publishes a deploy again to the hosts that have not reported since
    /// it asked them, at most once per `republish_after` each: a lost bus
    /// message (a failed Redis publish, a grabber between two
    /// subscriptions) costs that long, not `host_deadline`. A grabber that
    /// did get the first one treats the copy as the same request.
    async fn republish_unreported(&self) -> anyhow::Result<()> {
        let every = self.config().republish_after;
        let now = Timestamp::now();
        let before = Timestamp(now.0 - every.as_millis() as i64);
        let silent = self.db().unreported_hosts(before).await?;
        let due: Vec<(DeployId, HostName)> = {
            let mut last = self
                .inner
                .republished
                .lock()
                .map_err(|_| anyhow::anyhow!("the republish table is poisoned"))?;
            let silent: std::collections::HashSet<(DeployId, String)> =
                silent.iter().cloned().collect();
            // Forget the hosts that reported since (or whose deploy ended).
            last.retain(|(id, h), _| silent.contains(&(*id, h.as_str().to_string())));
            let mut due = Vec::new();
            for (id, host) in silent {
                let Ok(host) = HostName::parse(host) else {
                    continue;
                };
                let key = (id, host);
                if last.get(&key).is_none_or(|t| t.0 <= before.0) {
                    last.insert(key.clone(), now);
                    due.push(key);
                }
            }
            due
        };
        let mut by_deploy: std::collections::BTreeMap<DeployId, Vec<HostName>> = Default::default();
        for (id, host) in due {
            by_deploy.entry(id).or_default().push(host);
        }
        for (id, hosts) in by_deploy {
            let Some(row) = self.db().deploy_row(id).await? else {
                continue;
            };
            let build = self.build_of(&row).await?;
            // A fleet's worth of names would make one line of kilobytes:
            // the count and the first few.
            tracing::warn!(deploy_id = %id, app = %row.app, hosts = hosts.len(),
                first = ?&hosts[..hosts.len().min(5)],
                "hosts have not reported since they were asked; asking again");
            self.publish_to((&row).into(), &build, hosts).await?;
        }
        Ok(())
    }
}

/// A transfer's numbers must fit the database and agree with each other.
fn check_transfer(t: &deploy::Transfer) -> Result<(), Error> {
    let limit = i64::MAX as u64;
    if t.bytes_downloaded > limit || t.bytes_reused > limit {
        return Err(Error::Invalid("transfer: a byte count is too large".into()));
    }
    if t.bytes_from_peers > t.bytes_downloaded {
        return Err(Error::Invalid(format!(
            "transfer: bytes_from_peers ({}) exceeds bytes_downloaded ({})",
            t.bytes_from_peers, t.bytes_downloaded
        )));
    }
    Ok(())
}
