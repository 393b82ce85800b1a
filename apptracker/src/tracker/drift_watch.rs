//! Drift found: a background task that, every `drift_watch_interval`,
//! looks at the drift table and announces each app on a host that turned
//! out of sync (drifted, not running, missing) to the notifications that
//! want `drift_found`, once. Drift is computed on demand and nothing else
//! watches it, so this is the only place it becomes an event.
//!
//! Once per episode, across replicas: an announced app on a host has a
//! `drift_alerts` row, inserted in the same transaction as its deliveries
//! (the insert that makes the row claims the alert; another replica's
//! does nothing). The row goes when the drift table shows the app in sync
//! there again, or no longer has its row, so a later drift is announced
//! again. A host that turns `stale` or `deploying` keeps its row: what it
//! runs is not known yet, and announcing again after every sync that
//! failed or versionchecker that paused would be noise. (Two replicas
//! whose looks overlap as a host turns in sync can announce it once more:
//! one clears the row while the other, on a table computed a moment
//! earlier, claims it again; the next look clears it.) A notification
//! made while a drift is already announced hears of the next one.

use std::collections::{HashMap, HashSet};

use deploy::drift::{DriftHost, DriftState};
use deploy::{Notification, NotificationPayload, NotifyEvent};

use super::notify::{body, wants};
use super::*;
use crate::db::{AlertKey, DriftAlert};

fn key(h: &DriftHost) -> AlertKey {
    (h.cluster.clone(), h.host.clone(), h.app.clone())
}

impl Tracker {
    /// One look: clears the alerts of apps back in sync, then claims and
    /// queues the new ones. Answers how many this replica claimed. Does
    /// nothing (not even computing drift) while no notification wants
    /// `drift_found`.
    pub(crate) async fn watch_drift(&self) -> anyhow::Result<usize> {
        let wanting: Vec<Notification> = self
            .db()
            .notifications()
            .await?
            .into_iter()
            .map(|n| n.notification)
            .filter(|n| n.events.is_empty() || n.events.contains(&NotifyEvent::DriftFound))
            .collect();
        if wanting.is_empty() {
            return Ok(0);
        }
        let fleet = self.fleet().await?;
        let announced: HashSet<AlertKey> = self.db().drift_alerts().await?.into_iter().collect();

        // Clears first: a claim seen after this round's (by a test, or a
        // person reading deliveries) implies its clears happened too.
        let states: HashMap<AlertKey, DriftState> =
            fleet.hosts.iter().map(|h| (key(h), h.state)).collect();
        let in_sync_or_gone = |k: &AlertKey| states.get(k).is_none_or(|s| *s == DriftState::InSync);
        for k in announced.iter().filter(|k| in_sync_or_gone(k)) {
            let (cluster, host, app) = k;
            if self.db().clear_drift_alert(k).await? {
                tracing::info!(%app, %host, %cluster, "drift cleared: a new drift will be announced");
            }
        }

        let mut claimed = 0;
        for h in fleet.hosts.iter().filter(|h| h.state.needs_sync()) {
            if announced.contains(&key(h)) {
                continue;
            }
            let to: Vec<&Notification> = wanting
                .iter()
                .filter(|n| wants(n, NotifyEvent::DriftFound, &h.app, &h.cluster))
                .collect();
            if to.is_empty() {
                continue;
            }
            if self.announce(h, &to).await? {
                claimed += 1;
            }
        }
        if claimed > 0 {
            self.delivery_queued().notify_one();
        }
        Ok(claimed)
    }

    /// Claims the alert for `h` and queues its deliveries to `to`; false
    /// when another replica had claimed it, or `h` has no desired deploy to
    /// name (an app nobody deployed there is not drift).
    #[tracing::instrument(skip_all, fields(app = %h.app, host = %h.host, cluster = %h.cluster))]
    async fn announce(&self, h: &DriftHost, to: &[&Notification]) -> anyhow::Result<bool> {
        let Some(deploy_id) = h.desired_deploy else {
            return Ok(false);
        };
        let Some(deploy) = self.db().deploy(deploy_id).await? else {
            tracing::warn!(%deploy_id, "drift found, but the deploy it should run is gone: not announced");
            return Ok(false);
        };
        let payload = NotificationPayload {
            event: NotifyEvent::DriftFound,
            deploy_id,
            app: h.app.clone(),
            cluster: h.cluster.clone(),
            version: h.desired.clone(),
            status: deploy.status,
            error: None,
            requested_by: None,
            url: format!("{}/drift", self.base_url()),
            at: Timestamp::now(),
            host: Some(h.host.clone()),
            reason: Some(h.reason.clone()),
        };
        let deliveries: Vec<(i64, String)> = to
            .iter()
            .filter_map(|n| Some((n.id, body(n.format, &payload)?)))
            .collect();
        let alert = DriftAlert {
            key: key(h),
            state: h.state,
            desired_deploy: deploy_id,
        };
        let claimed = self.db().claim_drift_alert(&alert, &deliveries).await?;
        if claimed {
            tracing::info!(state = %h.state, reason = %h.reason, notifications = deliveries.len(),
                "drift found: announced");
        }
        Ok(claimed)
    }
}

/// Looks for drift every `drift_watch_interval` until `shutdown`.
pub async fn run(t: Tracker, shutdown: CancellationToken) {
    // `interval` refuses zero; a look more often than this is no use.
    let every = t
        .config()
        .drift_watch_interval
        .max(std::time::Duration::from_millis(50));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A round is short (a few reads, a write per new alert); shutdown
        // waits for it rather than leaving a claim without its deliveries
        // (the transaction would roll back anyway).
        if let Err(e) = t.watch_drift().await {
            tracing::warn!(error = %e, "drift watch failed; trying again next round");
        }
    }
}
