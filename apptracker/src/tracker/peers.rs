//! Peers: which other hosts of a deploy a host may fetch the release's
//! files from (those past extracting that advertised a peer listener),
//! spread so that no one host serves every fetcher, and the ticket the
//! fetching host shows them (`deploy::peer`).

use std::collections::BTreeMap;
use std::time::Duration;

use deploy::peer::{PeerTicket, mint};

use super::*;

/// How many peers one answer names at most.
const MAX_PEERS: usize = 3;
/// How long a ticket lets its host fetch.
const TICKET_TTL: Duration = Duration::from_secs(10 * 60);
/// How many (deploy, host) counts are kept; past it the oldest deploys'
/// counts go (a count is a hint for spreading, not a record).
const MAX_COUNTED: usize = 10_000;

/// How often each host of a deploy was handed out as a peer, on this
/// replica. Keyed by deploy first, so the oldest deploys' counts are the
/// first to go.
#[derive(Debug, Default)]
pub(crate) struct PeerUses(BTreeMap<(DeployId, HostName), u64>);

impl PeerUses {
    fn count(&self, deploy: DeployId, host: &HostName) -> u64 {
        self.0.get(&(deploy, host.clone())).copied().unwrap_or(0)
    }

    fn handed_out(&mut self, deploy: DeployId, host: &HostName) {
        *self.0.entry((deploy, host.clone())).or_default() += 1;
        while self.0.len() > MAX_COUNTED {
            self.0.pop_first();
        }
    }
}

/// A phase in which a host holds the whole release (extracted): it can
/// serve its files.
fn holds_release(phase: HostPhase) -> bool {
    matches!(
        phase,
        HostPhase::Switching | HostPhase::Starting | HostPhase::Checking | HostPhase::Done
    )
}

impl Tracker {
    /// The key (`ed25519:<base64>`) peer tickets are signed with, which
    /// grabbers learn from the heartbeat's answer.
    pub fn peer_ticket_public_key(&self) -> deploy::signing::PublicKey {
        self.inner.peer_ticket_key.public_key()
    }

    /// The hosts `host` may fetch deploy `deploy`'s release files from, best
    /// first, and the ticket they ask for (none when there is no peer).
    ///
    /// Candidates are the deploy's other hosts that hold the release
    /// (switching, starting, checking or done), advertised a peer listener
    /// and were heard from within `host_alive`; those handed out least for
    /// this deploy come first (then by name), at most three. The ticket
    /// lets `host` read the deploy's app's files for ten minutes.
    pub async fn peers_for(
        &self,
        deploy: DeployId,
        host: &HostName,
    ) -> Result<(Vec<deploy::Peer>, Option<String>), Error> {
        let row = self
            .db()
            .deploy_row(deploy)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no deploy {deploy}")))?;
        let rows = self.db().deploy_peers(deploy).await?;
        if !rows.iter().any(|r| &r.host == host) {
            return Err(Error::NotFound(format!(
                "host `{host}` is not part of deploy {deploy}"
            )));
        }
        let alive_since =
            Timestamp(Timestamp::now().0 - self.config().host_alive.as_millis() as i64);
        let candidates: Vec<(HostName, deploy::PeerEndpoint)> = rows
            .into_iter()
            .filter(|r| &r.host != host && holds_release(r.phase))
            .filter(|r| r.last_seen.is_some_and(|t| t >= alive_since))
            .filter_map(|r| r.endpoint.map(|e| (r.host, e)))
            .collect();
        let chosen: Vec<deploy::Peer> = {
            let mut uses = self
                .inner
                .peer_uses
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut ranked: Vec<(u64, HostName, deploy::PeerEndpoint)> = candidates
                .into_iter()
                .map(|(h, e)| (uses.count(deploy, &h), h, e))
                .collect();
            ranked.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            ranked.truncate(MAX_PEERS);
            for (_, h, _) in &ranked {
                uses.handed_out(deploy, h);
            }
            ranked
                .into_iter()
                .map(|(_, host, e)| deploy::Peer {
                    host,
                    url: e.url,
                    fingerprint: e.fingerprint,
                })
                .collect()
        };
        tracing::debug!(deploy_id = %deploy, host = %host, app = %row.app,
            peers = chosen.len(), "peers handed out");
        if chosen.is_empty() {
            return Ok((chosen, None));
        }
        let ticket = PeerTicket {
            cluster: row.cluster.clone(),
            host: host.clone(),
            app: row.app.clone(),
            expires_at: Timestamp(Timestamp::now().0 + TICKET_TTL.as_millis() as i64),
        };
        Ok((chosen, Some(mint(&self.inner.peer_ticket_key, &ticket))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded_oldest_deploys_first() {
        let mut uses = PeerUses::default();
        let h = HostName::parse("web-1").unwrap();
        for id in 0..(MAX_COUNTED as i64 + 5) {
            uses.handed_out(DeployId(id), &h);
        }
        assert_eq!(uses.0.len(), MAX_COUNTED);
        assert_eq!(uses.count(DeployId(0), &h), 0);
        assert_eq!(uses.count(DeployId(MAX_COUNTED as i64 + 4), &h), 1);
    }
}
