//! The in-process bus (the embedded default): bus messages per cluster for
//! grabbers, and deploy events for dashboards and `deploy status --follow`.
//! Remote grabbers reach it through the SSE relay in `routes`.
//!
//! Pub/sub is a doorbell: a subscriber that lags or reconnects is told to
//! re-read the record (a `Sync`, or a fresh deploy snapshot).

use deploy::{BusMessage, Cluster, DeployEvent};
use tokio::sync::broadcast;

/// How many messages a slow subscriber may fall behind before it is told to
/// resynchronise.
const CAPACITY: usize = 1024;

#[derive(Clone, Debug)]
pub struct Bus {
    deploys: broadcast::Sender<(Cluster, BusMessage)>,
    events: broadcast::Sender<DeployEvent>,
}

impl Default for Bus {
    fn default() -> Self {
        Self {
            deploys: broadcast::channel(CAPACITY).0,
            events: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Bus {
    /// Publishes on `slipway.deploy.<cluster>`.
    pub fn publish(&self, cluster: &Cluster, msg: BusMessage) {
        tracing::debug!(channel = %deploy::bus::channel(cluster), "publish");
        // No subscriber is not an error: the desired state is the record.
        let _ = self.deploys.send((cluster.clone(), msg));
    }

    /// Every cluster's messages; the subscriber filters by cluster.
    pub fn subscribe(&self) -> broadcast::Receiver<(Cluster, BusMessage)> {
        self.deploys.subscribe()
    }

    pub fn emit(&self, ev: DeployEvent) {
        let _ = self.events.send(ev);
    }

    pub fn events(&self) -> broadcast::Receiver<DeployEvent> {
        self.events.subscribe()
    }
}
