//! The bus: deploy messages per cluster for grabbers, and deploy events for
//! dashboards and `deploy status --follow`.
//!
//! Embedded, it is an in-process broadcast. With Redis, every message goes
//! through Redis (`<prefix>.deploy.<cluster>`, `<prefix>.events`; the prefix
//! is `slipway` unless configured) and each
//! AppTracker replica relays what Redis delivers to its own SSE watchers, so
//! an event reaches a watcher connected to any replica.
//!
//! Pub/sub is a doorbell: a subscriber that lags or reconnects is told to
//! re-read the record (`Sync` for grabbers, a fresh snapshot for watchers).

use std::time::Duration;

use anyhow::Context;
use deploy::{BusMessage, Cluster, DeployEvent};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many messages a slow local subscriber may fall behind before it is
/// told to resynchronise.
const CAPACITY: usize = 1024;

/// What local deploy-event watchers receive.
#[derive(Debug, Clone)]
pub enum Live {
    Event(DeployEvent),
    /// Events may have been missed: re-read the record.
    Resync,
}

/// A message on its way out, as [`Bus::lose`]'s filter sees it.
pub enum Outgoing<'a> {
    Deploy(&'a Cluster, &'a BusMessage),
    Event(&'a DeployEvent),
}

type LossFilter = dyn Fn(&Outgoing<'_>) -> bool + Send + Sync;

#[derive(Clone)]
pub struct Bus {
    /// `None` as the cluster means every cluster (a `Sync` after Redis
    /// reconnected).
    deploys: broadcast::Sender<(Option<Cluster>, BusMessage)>,
    events: broadcast::Sender<Live>,
    redis: Option<redis::aio::ConnectionManager>,
    redis_client: Option<redis::Client>,
    /// Namespace of the Redis channels.
    prefix: String,
    /// The fault suite's hook: messages it says are lost never leave.
    loss: std::sync::Arc<std::sync::RwLock<Option<Box<LossFilter>>>>,
}

impl Bus {
    /// The in-process bus.
    pub fn in_process() -> Self {
        Self {
            deploys: broadcast::channel(CAPACITY).0,
            events: broadcast::channel(CAPACITY).0,
            redis: None,
            redis_client: None,
            prefix: deploy::bus::DEFAULT_PREFIX.to_string(),
            loss: Default::default(),
        }
    }

    /// Loses every message `filter` picks from now on, as a failed Redis
    /// publish does (the fault suite's hook: the deploy must end anyway,
    /// and its watchers see it end).
    #[doc(hidden)]
    pub fn lose(&self, filter: impl Fn(&Outgoing<'_>) -> bool + Send + Sync + 'static) {
        if let Ok(mut l) = self.loss.write() {
            *l = Some(Box::new(filter));
        }
    }

    fn lost(&self, msg: &Outgoing<'_>) -> bool {
        let lost = self
            .loss
            .read()
            .is_ok_and(|l| l.as_ref().is_some_and(|f| f(msg)));
        if lost {
            tracing::warn!("fault injected: a bus message is lost");
        }
        lost
    }

    /// The bus over Redis. Fails when Redis cannot be reached now; later
    /// outages are survived (publishes fail and are logged, the relay
    /// reconnects).
    pub async fn redis(
        url: &str,
        prefix: &str,
        trust: &deploy::tls::Trust,
    ) -> anyhow::Result<Self> {
        if let Some(warning) = deploy::tls::cleartext_warning(url) {
            tracing::warn!("redis_url: {warning}");
        }
        // `rediss://` with a private CA: the redis crate's CA setting
        // replaces the system roots, so it is given both.
        let client = match trust.pem_bundle() {
            Some(roots) if url.starts_with("rediss://") => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots),
                },
            ),
            _ => redis::Client::open(url),
        }
        .context("invalid redis_url")?;
        // A publish must not hold a request up while Redis is away: fail
        // fast and let the record (the database) carry the state.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), config)
            .await
            .context("cannot connect to Redis (redis_url)")?;
        Ok(Self {
            redis: Some(conn),
            redis_client: Some(client),
            prefix: prefix.to_string(),
            ..Self::in_process()
        })
    }

    pub fn describe(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "in-process"
        }
    }

    async fn redis_publish(&self, channel: &str, payload: String) {
        let Some(conn) = &self.redis else { return };
        let mut conn = conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        let publish = cmd.query_async::<i64>(&mut conn);
        let r = match tokio::time::timeout(Duration::from_secs(2), publish).await {
            Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        if let Err(e) = r {
            // The database holds the record: grabbers converge when they
            // reconnect, watchers re-read when the relay does.
            tracing::warn!(channel, error = %e, "cannot publish on Redis");
        }
    }

    /// Publishes on `slipway.deploy.<cluster>`.
    pub async fn publish(&self, cluster: &Cluster, msg: BusMessage) {
        let channel = deploy::bus::channel(&self.prefix, cluster);
        tracing::debug!(%channel, "publish");
        if self.lost(&Outgoing::Deploy(cluster, &msg)) {
            return;
        }
        if self.redis.is_some() {
            match serde_json::to_string(&msg) {
                Ok(payload) => self.redis_publish(&channel, payload).await,
                Err(e) => tracing::error!(error = %e, "cannot encode a bus message"),
            }
        } else {
            // No subscriber is not an error: the desired state is the record.
            let _ = self.deploys.send((Some(cluster.clone()), msg));
        }
    }

    /// Local subscribers of every cluster's messages; they filter by cluster.
    pub fn subscribe(&self) -> broadcast::Receiver<(Option<Cluster>, BusMessage)> {
        self.deploys.subscribe()
    }

    pub async fn emit(&self, ev: DeployEvent) {
        if self.lost(&Outgoing::Event(&ev)) {
            return;
        }
        if self.redis.is_some() {
            match serde_json::to_string(&ev) {
                Ok(payload) => {
                    self.redis_publish(&deploy::bus::events_channel(&self.prefix), payload)
                        .await
                }
                Err(e) => tracing::error!(error = %e, "cannot encode a deploy event"),
            }
        } else {
            let _ = self.events.send(Live::Event(ev));
        }
    }

    pub fn events(&self) -> broadcast::Receiver<Live> {
        self.events.subscribe()
    }

    /// With Redis: relays what Redis delivers to local subscribers until
    /// `shutdown`, reconnecting with backoff. Without: returns at once.
    pub async fn relay(self, shutdown: CancellationToken) {
        let Some(client) = self.redis_client.clone() else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        let mut outage = false;
        while !shutdown.is_cancelled() {
            match self.relay_once(&client, &shutdown).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tracing::warn!("Redis subscription ended; reconnecting");
                    outage = true;
                }
                Err(e) if !outage => {
                    tracing::warn!(error = %e, "Redis relay is down; retrying");
                    outage = true;
                }
                Err(e) => tracing::debug!(error = %e, "Redis relay still down"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn relay_once(
        &self,
        client: &redis::Client,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut pubsub = client.get_async_pubsub().await?;
        let events = deploy::bus::events_channel(&self.prefix);
        let deploys = format!("{}.deploy.", self.prefix);
        pubsub.psubscribe(format!("{deploys}*")).await?;
        pubsub.subscribe(&events).await?;
        tracing::info!("relaying the Redis bus");
        // Whatever was published while we were not subscribed is lost:
        // tell everyone to re-read the record.
        let _ = self.deploys.send((None, BusMessage::Sync));
        let _ = self.events.send(Live::Resync);
        let mut messages = pubsub.into_on_message();
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            let Some(msg) = msg else { return Ok(()) };
            let channel = msg.get_channel_name().to_string();
            let payload: String = match msg.get_payload() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "skipping an unreadable message");
                    continue;
                }
            };
            if channel == events {
                match serde_json::from_str::<DeployEvent>(&payload) {
                    Ok(ev) => {
                        let _ = self.events.send(Live::Event(ev));
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping a malformed deploy event"),
                }
            } else if let Some(cluster) = channel.strip_prefix(&deploys) {
                let Ok(cluster) = Cluster::parse(cluster) else {
                    tracing::warn!(%channel, "skipping a message on a malformed channel");
                    continue;
                };
                match BusMessage::from_json(&payload) {
                    Ok(m) => {
                        let _ = self.deploys.send((Some(cluster), m));
                    }
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "skipping a malformed bus message")
                    }
                }
            }
        }
    }
}
