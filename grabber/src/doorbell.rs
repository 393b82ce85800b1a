//! Bus messages as doorbells. A `deploy` message for this host only says
//! "look at your desired state for this app": what gets installed is what
//! AppTracker's authenticated `/desired` answer names, and only when it
//! names the deploy and version the message did. Whoever can publish on the
//! bus (Redis is often unauthenticated) can therefore ring, but cannot make
//! a host install an older signed release. `Sync` messages are coalesced:
//! one fetch of the desired state is in flight at a time, and syncs rung on
//! the bus go out at most once per [`SYNC_SPACING`], so a flood of them
//! costs AppTracker one request per host and spacing, not one per message.

use std::time::Duration;

use deploy::{AppName, Backoff, Client, Cluster, DeployId, HostName, Release, Version};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The shortest time between two fetches of the desired state that bus
/// `Sync`s ask for; the ones in between are folded into the next.
pub(crate) const SYNC_SPACING: Duration = Duration::from_secs(2);

/// Deploy messages kept waiting for the next fetch at most; more (a flood)
/// are dropped, counted and logged once per fetch. A real deploy dropped
/// so is installed at the next reconcile.
const MAX_WAITING: usize = 256;

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What a deploy message for this host claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rung {
    pub deploy_id: DeployId,
    pub app: AppName,
    pub version: Version,
}

impl Rung {
    pub(crate) fn of(release: &Release) -> Self {
        Self {
            deploy_id: release.deploy_id,
            app: release.app.clone(),
            version: release.version.clone(),
        }
    }
}

/// Who asked for a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncFrom {
    /// A `Sync` on the bus (anyone who can publish): spaced.
    Bus,
    /// The grabber's own reconcile timer: at once.
    Timer,
    /// A heartbeat's answer said the desired state changed: at once (once
    /// per change, at most one per heartbeat).
    Heartbeat,
}

impl SyncFrom {
    fn at_once(self) -> bool {
        matches!(self, SyncFrom::Timer | SyncFrom::Heartbeat)
    }
}

/// What one fetch of the desired state is to answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Asked {
    /// Install every desired release (a sync).
    pub sync: bool,
    /// The deploy messages rung since the last fetch.
    pub deploys: Vec<Rung>,
    /// Deploy messages dropped since the last fetch (over [`MAX_WAITING`]).
    pub dropped: usize,
}

/// What rang since the last fetch of the desired state.
#[derive(Debug, Default)]
pub(crate) struct Doorbells {
    deploys: Vec<Rung>,
    sync: Option<SyncFrom>,
    /// When the last sync's fetch went out.
    last_sync: Option<Instant>,
    dropped: usize,
}

impl Doorbells {
    pub(crate) fn deploy(&mut self, rung: Rung) {
        if self.deploys.contains(&rung) {
            return;
        }
        if self.deploys.len() >= MAX_WAITING {
            self.dropped += 1;
            return;
        }
        self.deploys.push(rung);
    }

    pub(crate) fn sync(&mut self, from: SyncFrom) {
        // A timer's sync may go at once; a bus one never makes it wait.
        self.sync = match self.sync {
            Some(waiting) if waiting.at_once() => Some(waiting),
            _ => Some(from),
        };
    }

    /// When a sync rung on the bus, waiting out its spacing, may be
    /// fetched; `None` when no sync waits for that.
    pub(crate) fn sync_at(&self) -> Option<Instant> {
        match (self.sync, self.last_sync) {
            (Some(SyncFrom::Bus), Some(last)) => Some(last + SYNC_SPACING),
            _ => None,
        }
    }

    fn sync_ready(&self, now: Instant) -> bool {
        match self.sync {
            None => false,
            Some(from) if from.at_once() => true,
            Some(_) => self.last_sync.is_none_or(|l| now >= l + SYNC_SPACING),
        }
    }

    /// What the next fetch is to answer, taken out of the waiting ones:
    /// the deploy messages, and the sync once its spacing is over. `None`
    /// when nothing is to be fetched now.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Asked> {
        let sync = self.sync_ready(now);
        if !sync && self.deploys.is_empty() {
            return None;
        }
        if sync {
            self.sync = None;
            self.last_sync = Some(now);
        }
        Some(Asked {
            sync,
            deploys: std::mem::take(&mut self.deploys),
            dropped: std::mem::take(&mut self.dropped),
        })
    }
}

/// Why a deploy message was not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// The desired state names a later deploy of the app: the message came
    /// late, and that deploy's own message brings it.
    Superseded { deploy_id: DeployId },
    /// The desired state names nothing of the kind: forged or stale.
    NotDesired {
        desired: Option<(DeployId, Version)>,
    },
}

/// What to do once the desired state is known.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The desired releases to install, each at most once.
    pub install: Vec<Release>,
    /// The deploy messages not acted on, and why.
    pub ignored: Vec<(Rung, Ignored)>,
}

/// Decides, for what was `asked`, what to install of the `desired`
/// releases: all of them for a sync; for a deploy message, the app's
/// desired release when it is the deploy and version the message named
/// (its artifact, config and action as AppTracker says, not the message).
pub(crate) fn answer(asked: &Asked, desired: Vec<Release>) -> Answer {
    let mut out = Answer::default();
    for rung in &asked.deploys {
        let named = desired.iter().find(|r| r.app == rung.app);
        match named {
            Some(r) if r.deploy_id == rung.deploy_id && r.version == rung.version => {}
            Some(r) if r.deploy_id > rung.deploy_id => out.ignored.push((
                rung.clone(),
                Ignored::Superseded {
                    deploy_id: r.deploy_id,
                },
            )),
            other => out.ignored.push((
                rung.clone(),
                Ignored::NotDesired {
                    desired: other.map(|r| (r.deploy_id, r.version.clone())),
                },
            )),
        }
    }
    out.install = desired
        .into_iter()
        .filter(|r| {
            asked.sync
                || asked.deploys.iter().any(|rung| {
                    rung.app == r.app && rung.deploy_id == r.deploy_id && rung.version == r.version
                })
        })
        .collect();
    out
}

/// Logs the deploy messages an answer ignores (and those dropped).
pub(crate) fn log_ignored(answer: &Answer, dropped: usize, host: &HostName) {
    for (rung, why) in &answer.ignored {
        let Rung {
            deploy_id,
            app,
            version,
        } = rung;
        match why {
            Ignored::Superseded { deploy_id: newer } => tracing::info!(
                %deploy_id, %host, %app, %version, desired_deploy = %newer,
                "a deploy message came after a later deploy of the app; the later one is installed"
            ),
            Ignored::NotDesired { desired } => tracing::warn!(
                %deploy_id, %host, %app, %version,
                desired = ?desired.as_ref().map(|(d, v)| format!("deploy {d}: {v}")),
                "ignoring a deploy message that this host's desired state does not name \
                 (stale, or published by someone other than AppTracker)"
            ),
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped, %host,
            "dropped deploy messages that came faster than the desired state could be read"
        );
    }
}

/// This host's desired releases from AppTracker, trying again with backoff
/// for a while; `None` when it cannot be had (the next sync or reconcile
/// tries again) or on shutdown.
pub(crate) async fn fetch(
    client: Client,
    cluster: Cluster,
    host: HostName,
    shutdown: CancellationToken,
) -> Option<deploy::DesiredState> {
    let mut retry = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    loop {
        let r = tokio::select! {
            r = client.desired_state(&cluster, &host) => r,
            _ = shutdown.cancelled() => return None,
        };
        match r {
            Ok(d) => return Some(d),
            Err(e) if e.is_retryable() && !retry.at_max() => {
                tracing::debug!(error = %e, "cannot fetch desired state; retrying");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch desired state; waiting for the next sync");
                return None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry.next_wait()) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(app: &str, version: &str, id: i64) -> Release {
        Release {
            app: AppName::parse(app).unwrap(),
            version: Version::parse(version).unwrap(),
            deploy_id: DeployId(id),
            artifact: deploy::ArtifactRef {
                url: "http://127.0.0.1:1/a.tar.gz".into(),
                sha256: deploy::Sha256::parse("0".repeat(64)).unwrap(),
                size: 1,
                signature: "c2ln".into(),
                index: None,
            },
            config_version: 0,
            action: deploy::DeployAction::Deploy,
        }
    }

    fn rung(app: &str, version: &str, id: i64) -> Rung {
        Rung::of(&release(app, version, id))
    }

    #[test]
    fn a_deploy_message_installs_only_the_desired_release_it_names() {
        let desired = vec![
            release("hello", "2-bbbbbbb", 5),
            release("other", "1-ccccccc", 3),
        ];
        let asked = Asked {
            deploys: vec![
                // The real one: installed, as the desired state says.
                rung("hello", "2-bbbbbbb", 5),
                // An older signed version under a forged (or old) id.
                rung("hello", "1-aaaaaaa", 9),
                // The right deploy id with another version.
                rung("other", "0-ddddddd", 3),
                // An app this host is not to run.
                rung("nothere", "1-aaaaaaa", 5),
                // A message that came after a later deploy.
                rung("other", "0-ddddddd", 2),
            ],
            ..Asked::default()
        };
        let mut desired_hello = desired[0].clone();
        // Installed from the desired state, not from the message.
        desired_hello.artifact.url = "http://apptracker/a.tar.gz".into();
        let a = answer(&asked, vec![desired_hello.clone(), desired[1].clone()]);
        assert_eq!(a.install, vec![desired_hello]);
        let why: Vec<_> = a.ignored.iter().map(|(r, w)| (r.deploy_id.0, w)).collect();
        assert_eq!(
            why,
            vec![
                (
                    9,
                    &Ignored::NotDesired {
                        desired: Some((DeployId(5), Version::parse("2-bbbbbbb").unwrap()))
                    }
                ),
                (
                    3,
                    &Ignored::NotDesired {
                        desired: Some((DeployId(3), Version::parse("1-ccccccc").unwrap()))
                    }
                ),
                (5, &Ignored::NotDesired { desired: None }),
                (
                    2,
                    &Ignored::Superseded {
                        deploy_id: DeployId(3)
                    }
                ),
            ]
        );
        // A sync installs everything desired, whatever else rang.
        let a = answer(
            &Asked {
                sync: true,
                deploys: vec![rung("hello", "1-aaaaaaa", 9)],
                dropped: 0,
            },
            desired.clone(),
        );
        assert_eq!(a.install, desired);
        assert_eq!(a.ignored.len(), 1);
    }

    #[test]
    fn bus_syncs_are_coalesced_and_spaced_deploys_are_not() {
        let t0 = Instant::now();
        let mut d = Doorbells::default();
        assert_eq!(d.take(t0), None, "nothing rang");
        // The first sync goes at once.
        d.sync(SyncFrom::Bus);
        assert!(d.take(t0).is_some_and(|a| a.sync));
        // A burst right after: one sync, after the spacing.
        for _ in 0..100 {
            d.sync(SyncFrom::Bus);
        }
        assert_eq!(d.sync_at(), Some(t0 + SYNC_SPACING));
        assert_eq!(d.take(t0 + Duration::from_millis(10)), None);
        // A deploy message does not wait for the spacing, and leaves the
        // sync waiting.
        d.deploy(rung("hello", "1-aaaaaaa", 1));
        d.deploy(rung("hello", "1-aaaaaaa", 1));
        let a = d.take(t0 + Duration::from_millis(20)).unwrap();
        assert!(!a.sync);
        assert_eq!(a.deploys.len(), 1, "the same message twice is asked once");
        let later = t0 + SYNC_SPACING;
        assert!(
            d.take(later)
                .is_some_and(|a| a.sync && a.deploys.is_empty())
        );
        assert_eq!(d.take(later), None, "the burst was one sync");
        assert_eq!(d.sync_at(), None);
        // The reconcile timer is the grabber's own: never spaced.
        d.sync(SyncFrom::Timer);
        assert!(d.take(later).is_some_and(|a| a.sync));
        // Nor is a heartbeat saying the desired state changed (AppTracker,
        // authenticated), even right after a sync; a bus sync rung after
        // it does not make it wait.
        d.sync(SyncFrom::Heartbeat);
        d.sync(SyncFrom::Bus);
        assert!(d.take(later).is_some_and(|a| a.sync));
        assert_eq!(d.take(later), None);
    }

    #[test]
    fn a_flood_of_deploy_messages_is_bounded() {
        let mut d = Doorbells::default();
        for id in 0..(MAX_WAITING as i64 + 10) {
            d.deploy(rung("hello", "1-aaaaaaa", id));
        }
        let a = d.take(Instant::now()).unwrap();
        assert_eq!((a.deploys.len(), a.dropped), (MAX_WAITING, 10));
        assert_eq!(d.take(Instant::now()), None);
    }
}
