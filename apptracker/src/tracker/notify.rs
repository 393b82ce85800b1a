//! Outgoing notifications: deploy events (and drift found, queued by
//! `drift_watch.rs`) for the apps and clusters people chose, to a URL, as
//! JSON signed with HMAC-SHA256 (header `x-slipway-signature: t=<unix
//! ms>,v1=<hex>` over `"<t>.<body>"`, Stripe's scheme, so a replayed body
//! with an old time can be refused) or as a Slack message. A status change queues a delivery row and rings
//! `delivery_queued`; [`run`] claims due rows under a lease (replicas do
//! not send twice), sends with a short timeout and retries with backoff, so
//! a slow or dead receiver never slows a deploy.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;
use deploy::{
    CreateNotification, CreatedNotification, DeliveryStatus, Notification, NotificationDelivery,
    NotificationPayload, NotifyEvent, NotifyFormat,
};

/// Tries of a delivery before it is given up.
const MAX_TRIES: u32 = 8;
/// How long one try may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claimed delivery is not due again (longer than a try).
const LEASE_MS: i64 = 30_000;
/// How often due retries are looked for without a ring.
const TICK: Duration = Duration::from_millis(500);

/// What a notification's sealed values are bound to (its shown URL and
/// creation time), and which of them.
fn seal_context(n: &Notification, what: &str) -> String {
    format!("notification:{}:{}:{what}", n.url, n.created_at.0)
}

/// A URL as people see it: scheme and host only (a Slack webhook's path is
/// its credential).
fn shown(url: &reqwest::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}/…",
        url.scheme(),
        url.host_str().unwrap_or("?")
    )
}

/// Whether `url` may receive events: https anywhere, http only to this
/// machine or a private network (events name apps, versions and people).
fn check_url(url: &str) -> Result<reqwest::Url, Error> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::Invalid(format!("`url` {url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let private = host == "localhost"
                || match host.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private(),
                    Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback(),
                    Err(_) => false,
                };
            if private {
                Ok(parsed)
            } else {
                Err(Error::Invalid(format!(
                    "`url` {url:?}: events go over https, or http only to a loopback or private \
                     address"
                )))
            }
        }
        other => Err(Error::Invalid(format!(
            "`url` {url:?}: the scheme must be https (or http to a private address), not {other}"
        ))),
    }
}

/// `t=<ms>,v1=<hex>` for `body` sent at `t`.
pub fn sign(secret: &[u8], t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Tracker {
    /// Makes a notification; the answer holds its only plaintext secret.
    pub async fn create_notification(
        &self,
        req: &CreateNotification,
        by: &str,
    ) -> Result<CreatedNotification, Error> {
        let url = check_url(&req.url)?;
        if req.format == NotifyFormat::Unknown || req.events.contains(&NotifyEvent::Unknown) {
            return Err(Error::Invalid(format!(
                "`format` is `json` or `slack`; `events` are {}",
                NotifyEvent::ALL.map(NotifyEvent::as_str).join(", ")
            )));
        }
        if let Some(app) = &req.app {
            self.app_or_404(app).await?;
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness for a secret: {e}")))?;
        let secret = format!("slpwn_{}", hex::encode(bytes.as_ref()));
        let mut notification = Notification {
            id: 0,
            app: req.app.clone(),
            cluster: req.cluster.clone(),
            url: shown(&url),
            format: req.format,
            events: req.events.clone(),
            created_by: by.to_string(),
            created_at: Timestamp::now(),
        };
        // Bound to the row's shown URL and time: a sealed value copied to
        // another row does not open there.
        let sealed_url = self
            .secrets()
            .seal(req.url.as_bytes(), &seal_context(&notification, "url"))?;
        let sealed = self
            .secrets()
            .seal(secret.as_bytes(), &seal_context(&notification, "secret"))?;
        notification.id = self
            .db()
            .insert_notification(&notification, &sealed_url, &sealed)
            .await?;
        tracing::info!(notification = notification.id, url = %notification.url, %by, "notification created");
        Ok(CreatedNotification {
            notification,
            secret,
        })
    }

    pub async fn notifications(&self) -> Result<Vec<Notification>, Error> {
        Ok(self
            .db()
            .notifications()
            .await?
            .into_iter()
            .map(|n| n.notification)
            .collect())
    }

    pub async fn delete_notification(&self, id: i64) -> Result<(), Error> {
        if self.db().delete_notification(id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no notification {id}")))
        }
    }

    pub async fn deliveries(&self, id: i64) -> Result<Vec<NotificationDelivery>, Error> {
        if self.db().notification(id).await?.is_none() {
            return Err(Error::NotFound(format!("no notification {id}")));
        }
        Ok(self.db().deliveries(id, 100).await?)
    }

    /// Queues the event deploy `d` moving to `status` makes, for every
    /// notification that wants it. Failures are logged: a notification
    /// never fails a deploy.
    pub(super) async fn notify_deploy(&self, d: &DeployRow, status: DeployStatus) {
        let Some(event) = NotifyEvent::of(status, d.rollback_of.is_some()) else {
            return;
        };
        let all = match self.db().notifications().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(deploy_id = %d.id, error = %e, "cannot read notifications");
                return;
            }
        };
        let payload = NotificationPayload {
            event,
            deploy_id: d.id,
            app: d.app.clone(),
            cluster: d.cluster.clone(),
            version: d.version.clone(),
            status,
            error: d.error.clone(),
            requested_by: d.requested_by.clone(),
            url: format!("{}/deploys/{}", self.base_url(), d.id),
            at: Timestamp::now(),
            host: None,
            reason: None,
        };
        let mut queued = false;
        for n in all.iter().map(|n| &n.notification) {
            if !wants(n, event, &d.app, &d.cluster) {
                continue;
            }
            let Some(sent) = body(n.format, &payload) else {
                continue;
            };
            match self.db().insert_delivery(n.id, d.id, event, &sent).await {
                Ok(()) => queued = true,
                Err(e) => {
                    tracing::error!(deploy_id = %d.id, notification = n.id, error = %e, "cannot queue a notification")
                }
            }
        }
        if queued {
            self.delivery_queued().notify_one();
        }
    }

    /// One try of a claimed delivery.
    async fn send(
        &self,
        http: &reqwest::Client,
        due: &crate::db::DueDelivery,
    ) -> anyhow::Result<()> {
        let stored = self
            .db()
            .notification(due.notification_id)
            .await?
            .with_context(|| format!("notification {} is gone", due.notification_id))?;
        let open = |sealed: &str, what: &str| {
            use secrecy::ExposeSecret;
            self.secrets()
                .open(sealed, &seal_context(&stored.notification, what))
                .map(|s| s.expose_secret().to_string())
                .map_err(|e| anyhow::anyhow!("its {what} does not open: {e}"))
        };
        let secret = open(&stored.sealed_secret, "secret")?;
        let url = open(&stored.sealed_url, "url")?;
        let t = Timestamp::now().0;
        let res = http
            .post(&url)
            .timeout(SEND_TIMEOUT)
            .header("content-type", "application/json")
            .header(
                deploy::NOTIFICATION_SIGNATURE_HEADER,
                sign(secret.as_bytes(), t, &due.body),
            )
            .body(due.body.clone())
            .send()
            .await
            // Without the URL, which may be a credential.
            .map_err(|e| {
                let e = e.without_url();
                anyhow::anyhow!(
                    "{}",
                    deploy::tls::explain(&e).unwrap_or_else(|| e.to_string())
                )
            })?;
        if !res.status().is_success() {
            anyhow::bail!("the receiver answered {}", res.status());
        }
        Ok(())
    }
}

/// Whether notification `n` wants `event` of `app` on `cluster`.
pub(super) fn wants(
    n: &Notification,
    event: NotifyEvent,
    app: &AppName,
    cluster: &Cluster,
) -> bool {
    n.app.as_ref().is_none_or(|a| a == app)
        && n.cluster.as_ref().is_none_or(|c| c == cluster)
        && (n.events.is_empty() || n.events.contains(&event))
}

/// What a notification of `format` sends for `p`.
pub(super) fn body(format: NotifyFormat, p: &NotificationPayload) -> Option<String> {
    match format {
        NotifyFormat::Slack => Some(serde_json::json!({ "text": slack_text(p) }).to_string()),
        _ => serde_json::to_string(p).ok(),
    }
}

fn slack_text(p: &NotificationPayload) -> String {
    if p.event == NotifyEvent::DriftFound {
        let host = p.host.as_ref().map_or("?", |h| h.as_str());
        let reason = p.reason.as_deref().unwrap_or("out of sync");
        return format!(
            "Drift: {} on {host} (cluster {}) — {reason} <{}|see drift>",
            p.app, p.cluster, p.url
        );
    }
    let what = match p.event {
        NotifyEvent::DeployStarted => "started",
        NotifyEvent::DeploySucceeded => "succeeded",
        NotifyEvent::DeployFailed => "failed",
        NotifyEvent::DeployRolledBack => "rolled back",
        NotifyEvent::DeployCancelled => "was cancelled",
        NotifyEvent::DriftFound | NotifyEvent::Unknown => "changed",
    };
    let version = p
        .version
        .as_ref()
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    let error = p
        .error
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!(
        "Deploy <{}|{}> of {}{version} to {} {what}{error}",
        p.url, p.deploy_id, p.app, p.cluster
    )
}

/// Sends queued deliveries until `shutdown`: woken by a queued one, and
/// every [`TICK`] for retries that came due.
pub async fn run(t: Tracker, shutdown: CancellationToken) {
    let http = match deploy::tls::Trust::system().http_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: notifications are not sent");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = t.delivery_queued().notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let due = match t.db().claim_deliveries(20, LEASE_MS).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim notification deliveries");
                continue;
            }
        };
        // Each try on its own task: a receiver that hangs for its whole
        // timeout does not hold the others.
        let mut tries = tokio::task::JoinSet::new();
        for d in due {
            let (t, http) = (t.clone(), http.clone());
            tries.spawn(async move {
                let sent = t.send(&http, &d).await;
                let attempt = d.attempts + 1;
                let (status, error, retry_at) = match &sent {
                    Ok(()) => (DeliveryStatus::Delivered, None, None),
                    Err(e) if attempt >= MAX_TRIES => {
                        (DeliveryStatus::Failed, Some(e.to_string()), None)
                    }
                    Err(e) => {
                        let wait = 1_000i64 << attempt.min(6);
                        (
                            DeliveryStatus::Pending,
                            Some(e.to_string()),
                            Some(Timestamp(Timestamp::now().0 + wait)),
                        )
                    }
                };
                if let Err(e) = &sent {
                    tracing::info!(delivery = d.id, notification = d.notification_id, attempt, error = %e, "notification not delivered");
                }
                if let Err(e) = t
                    .db()
                    .record_delivery_try(d.id, status, error.as_deref(), retry_at)
                    .await
                {
                    tracing::warn!(delivery = d.id, error = %e, "cannot record a notification's try");
                }
            });
        }
        while tries.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_private_http_and_shown_without_their_path() {
        for ok in [
            "https://hooks.slack.com/services/T0/B0/XXX",
            "http://127.0.0.1:9000/hook",
            "http://10.1.2.3/x",
            "http://localhost/x",
            "http://[::1]:8080/x",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "ftp://10.0.0.1/x",
            "not a url",
            "http://8.8.8.8/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let url = check_url("https://hooks.slack.com/services/T0/B0/XXX").unwrap();
        assert_eq!(shown(&url), "https://hooks.slack.com/…");
        let url = check_url("http://127.0.0.1:9000/hook?token=s").unwrap();
        assert_eq!(shown(&url), "http://127.0.0.1:9000/…");
    }

    #[test]
    fn a_signature_covers_time_and_body() {
        let s = sign(b"k", 1_700_000_000_000, "{}");
        assert!(s.starts_with("t=1700000000000,v1="), "{s}");
        assert_ne!(s, sign(b"k", 1_700_000_000_001, "{}"));
        assert_ne!(s, sign(b"k", 1_700_000_000_000, "{ }"));
        assert_ne!(s, sign(b"other", 1_700_000_000_000, "{}"));
    }

    #[test]
    fn a_slack_message_says_what_happened_with_a_link() {
        let p = NotificationPayload {
            event: NotifyEvent::DeployFailed,
            deploy_id: DeployId(7),
            app: AppName::parse("hello").unwrap(),
            cluster: Cluster::parse("prod").unwrap(),
            version: Some(Version::parse("3-abcdef1").unwrap()),
            status: DeployStatus::Failed,
            error: Some("1 host(s) failed".into()),
            requested_by: None,
            url: "https://slipway.example.com/deploys/7".into(),
            at: Timestamp(0),
            host: None,
            reason: None,
        };
        assert_eq!(
            slack_text(&p),
            "Deploy <https://slipway.example.com/deploys/7|7> of hello 3-abcdef1 to prod failed: 1 host(s) failed"
        );
        let drift = NotificationPayload {
            event: NotifyEvent::DriftFound,
            status: DeployStatus::Succeeded,
            error: None,
            url: "https://slipway.example.com/drift".into(),
            host: Some(HostName::parse("web-2").unwrap()),
            reason: Some("`current` names 2-bbbbbbb; should run 3-abcdef1 (deploy 7)".into()),
            ..p
        };
        assert_eq!(
            slack_text(&drift),
            "Drift: hello on web-2 (cluster prod) — `current` names 2-bbbbbbb; should run \
             3-abcdef1 (deploy 7) <https://slipway.example.com/drift|see drift>"
        );
    }

    #[test]
    fn a_notification_wants_its_apps_clusters_and_events() {
        let hello = AppName::parse("hello").unwrap();
        let other = AppName::parse("other").unwrap();
        let prod = Cluster::parse("prod").unwrap();
        let n = Notification {
            id: 1,
            app: Some(hello.clone()),
            cluster: None,
            url: "https://x/…".into(),
            format: NotifyFormat::Json,
            events: vec![NotifyEvent::DriftFound],
            created_by: "ops".into(),
            created_at: Timestamp(0),
        };
        assert!(wants(&n, NotifyEvent::DriftFound, &hello, &prod));
        assert!(!wants(&n, NotifyEvent::DeployFailed, &hello, &prod));
        assert!(!wants(&n, NotifyEvent::DriftFound, &other, &prod));
        let all = Notification {
            app: None,
            events: vec![],
            ..n
        };
        assert!(wants(&all, NotifyEvent::DriftFound, &other, &prod));
    }
}
