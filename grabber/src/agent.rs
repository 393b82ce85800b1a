//! The agent: recover at start, then one loop over a closed set of events
//! ([`Event`]: a bus message, the bus lost or back, a heartbeat due or
//! answered, a reconcile due, stop) that heartbeats, follows the cluster's
//! bus (reconnecting with backoff), turns `Sync` and `Deploy` messages into
//! fetches of the desired state and installs of what it names (see
//! `doorbell`), `ReleasePhase` ones into release phases (spawned tasks),
//! and shuts down cleanly.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deploy::layout::HostLayout;
use deploy::{Backoff, BusMessage, Client, ClientError, Heartbeat, Release};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::doorbell::{self, Asked, Doorbells, Rung, SyncFrom};
use crate::install::{ClientReporter, Engine, EngineConfig, Reporter};
use crate::user::AppUser;

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What one running grabber shares between its tasks.
struct Agent {
    config: Config,
    client: Client,
    engine: Arc<Engine>,
    reporter: Arc<dyn Reporter>,
    /// Installs and converges under way; shutdown waits for them.
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Rung after an install, so AppTracker's host table shows the change
    /// now rather than at the next interval.
    heartbeat_now: tokio::sync::Notify,
    /// The peer listener, when `--peer-listen` started one: the heartbeat
    /// advertises it.
    peer: Option<crate::peer::Listening>,
    /// The keys of the peer tickets it accepts, from heartbeat answers.
    ticket_keys: crate::peer::TicketKeys,
}

/// Runs the grabber until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    use anyhow::Context;

    if config.trusted_keys.is_empty() {
        anyhow::bail!(
            "no trusted keys: the grabber installs only artifacts signed by a key it trusts; \
             give the packers' public keys with --trusted-key ed25519:... or --trusted-keys-file \
             (`packer keygen` and `apptracker key show` print them)"
        );
    }
    let app_user = config
        .app_user
        .as_ref()
        .map(|spec| {
            let user = AppUser::resolve(spec).map_err(|e| anyhow::anyhow!("--app-user: {e}"))?;
            crate::user::must_switch_from_here(&user)
                .map_err(|e| anyhow::anyhow!("--app-user: {e}"))?;
            anyhow::Ok(user)
        })
        .transpose()?;
    let me = AppUser::current();
    match &app_user {
        None if me.uid == 0 => tracing::warn!(
            "NO --app-user: apps run as ROOT and can read this grabber's token and change every \
             release on this host; create an unprivileged user (useradd --system slipway-app) \
             and start the grabber with --app-user slipway-app"
        ),
        Some(u) if u.uid == 0 => tracing::warn!(
            "--app-user is root: apps run as ROOT and can read this grabber's token and change \
             every release on this host"
        ),
        _ => {}
    }
    let layout = HostLayout::new(&config.root);
    layout
        .ensure_dirs()
        .context("cannot prepare the host layout")?;
    let tmp = layout.tmp_dir();
    std::fs::remove_dir_all(&tmp)
        .and_then(|()| std::fs::create_dir_all(&tmp))
        .with_context(|| format!("cannot clear {}", tmp.display()))?;
    // Apps pass through `apps/` to their releases; the cache and the
    // scratch space are the grabber's alone.
    for (dir, mode) in [
        (layout.apps_dir(), 0o755),
        (layout.cache_dir(), 0o700),
        (tmp.clone(), 0o700),
    ] {
        crate::user::set_mode(&dir, mode)
            .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    }
    if let Some(u) = &app_user
        && u.uid != me.uid
        && let Some(closed) = crate::user::unreachable_ancestor(&config.root)
    {
        tracing::warn!(
            dir = %closed.display(),
            "apps run as {} but cannot pass through {} (no x for others) to reach their releases",
            u.describe(),
            closed.display()
        );
    }

    // Partial downloads of an earlier run are useless: their installs
    // will be asked for again by the first `Sync`.
    if let Ok(entries) = std::fs::read_dir(layout.cache_dir()) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    let mut client = Client::with_trust(config.server.clone(), &config.trust)?;
    if let Some(token) = &config.token {
        use secrecy::ExposeSecret;
        client = client.with_token(token.expose_secret());
    }
    for url in std::iter::once(&config.server).chain(config.redis_url.as_ref()) {
        if let Some(warning) = deploy::tls::cleartext_warning(url) {
            tracing::warn!("{warning}");
        }
    }
    let ticket_keys = crate::peer::TicketKeys::default();
    let peer = match config.peer_listen {
        None => None,
        // Apps are supervised whether or not peers can be served: a
        // listener that cannot start is an error in the log, not a reason
        // to leave the host's apps alone.
        Some(addr) => match crate::peer::start(
            addr,
            config.peer_advertise.as_deref(),
            layout.clone(),
            config.cluster.clone(),
            ticket_keys.clone(),
            shutdown.clone(),
        )
        .await
        {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "no peer listener: this host will not serve its files to others"
                );
                None
            }
        },
    };
    let engine = Engine::new(
        EngineConfig {
            cluster: config.cluster.clone(),
            host: config.host.clone(),
            layout,
            port_offset: config.port_offset,
            port_range: config.port_range.clone(),
            max_artifact_bytes: config.max_artifact_bytes,
            shim: config.shim.clone(),
            log_limits: config.log_limits,
            restart: config.restart,
            keep_releases: config.keep_releases,
            trusted_keys: config.trusted_keys.clone(),
            app_user,
            download: crate::install::DownloadTimeouts {
                response: config.download_response_timeout,
                stall: config.download_stall_timeout,
            },
        },
        client.http().clone(),
    );
    let reporter = Arc::new(ClientReporter::new(
        client.clone(),
        config.cluster.clone(),
        config.host.clone(),
    ));
    let agent = Arc::new(Agent {
        config,
        client,
        engine,
        reporter,
        tasks: TaskTracker::new(),
        shutdown,
        heartbeat_now: tokio::sync::Notify::new(),
        peer,
        ticket_keys,
    });
    tracing::info!(
        cluster = %agent.config.cluster,
        host = %agent.config.host,
        root = %agent.config.root.display(),
        server = %agent.config.server,
        "grabber starting"
    );
    agent.engine.recover().await;

    // Ready: the layout is prepared, the apps that were running are adopted
    // (or restarted) and supervised, and the loop starts. Not "AppTracker
    // answered": a grabber must keep its host's apps running while the
    // control plane is away, so its start may not wait for (or fail on) it.
    deploy::binary::announce_ready("grabber recovered its apps; main loop starting");
    main_loop(&agent).await;
    deploy::binary::announce_stopping();

    // Stop accepting work; let running installs finish their step.
    agent.tasks.close();
    agent.tasks.wait().await;
    if agent.config.stop_apps_on_exit {
        agent.engine.stop_all().await;
    }
    tracing::info!(host = %agent.config.host, "grabber stopped");
    Ok(())
}

/// What the grabber reacts to: one closed set, handled by one loop
/// ([`main_loop`]). Installs and converges run as tasks of their own; the
/// loop only starts them.
enum Event {
    /// A message from the cluster's bus.
    Bus(Box<BusMessage>),
    /// Subscribed to the bus: its messages follow on this stream.
    BusUp(BusStream),
    /// Subscribing failed, or the subscription ended: subscribe again after
    /// a backoff.
    BusLost(BusLoss),
    /// The backoff is over: subscribe again.
    Reconnect,
    /// Time for a heartbeat: the interval passed, an install ended or an
    /// app's state changed.
    Heartbeat,
    /// The heartbeat in flight got its answer: the fingerprint of the
    /// host's desired state it names, if any.
    HeartbeatSent(Result<Option<String>, ClientError>),
    /// Time to converge on the desired state, whatever the bus says: a lost
    /// message (or a bus that is quietly broken) delays a deploy, never
    /// prevents it.
    Reconcile,
    /// A sync rung on the bus waited out its spacing.
    SyncDue,
    /// The desired state fetched for what rang (`None`: not to be had).
    Desired(Box<(Asked, Option<deploy::DesiredState>)>),
    /// Shutdown.
    Stop,
}

/// Why the bus went away.
enum BusLoss {
    /// Subscribing failed (AppTracker or Redis unreachable, a refusal).
    Refused(String),
    /// The stream ended (AppTracker or Redis restarted).
    Ended,
}

/// Where the bus subscription stands. Each state holds what the loop waits
/// on, so waiting on it is cancel-safe.
enum Bus {
    Subscribing(BoxFuture<'static, Result<BusStream, String>>),
    Subscribed(BusStream),
    /// Waiting out the backoff before subscribing again.
    Waiting(Pin<Box<tokio::time::Sleep>>),
}

impl Bus {
    fn subscribe(agent: &Arc<Agent>) -> Self {
        Bus::Subscribing(subscribe(agent.clone()).boxed())
    }

    /// The bus's next event.
    async fn next(&mut self) -> Event {
        match self {
            Bus::Subscribing(subscribing) => match subscribing.await {
                Ok(stream) => Event::BusUp(stream),
                Err(e) => Event::BusLost(BusLoss::Refused(e)),
            },
            Bus::Subscribed(stream) => loop {
                match stream.next().await {
                    Some(Ok(msg)) => return Event::Bus(Box::new(msg)),
                    Some(Err(e)) => tracing::warn!(error = %e, "skipping a bus message"),
                    None => return Event::BusLost(BusLoss::Ended),
                }
            },
            Bus::Waiting(wait) => {
                wait.await;
                Event::Reconnect
            }
        }
    }
}

/// The grabber's one loop: follows the bus (reconnecting with backoff),
/// heartbeats, reconciles on a timer, until shutdown.
async fn main_loop(agent: &Arc<Agent>) {
    let interval = agent.config.heartbeat_interval;
    let mut bus = Bus::subscribe(agent);
    // The bus's waits between subscriptions start over once a message
    // arrives; its outage (logged once) ends once a subscription succeeds.
    let mut bus_retry = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    // Heartbeats keep their interval; only the outage is tracked.
    let mut heartbeat_retry = Backoff::new(interval, interval);
    let mut heartbeat: Option<BoxFuture<'static, Result<Option<String>, ClientError>>> = None;
    // The first heartbeat goes out at once.
    let next_heartbeat = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(next_heartbeat);
    let reconcile_every = agent.config.reconcile_interval;
    let mut reconcile = tokio::time::interval_at(
        tokio::time::Instant::now() + reconcile_every,
        reconcile_every,
    );
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bus messages ring; one fetch of the desired state at a time answers
    // what rang (see `doorbell`).
    let mut doorbells = Doorbells::default();
    let mut fetching: Option<BoxFuture<'static, (Asked, Option<deploy::DesiredState>)>> = None;
    let sync_due = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sync_due);
    // The fingerprint of the desired state last read: a heartbeat whose
    // answer names another makes the grabber read the state again.
    let mut desired_seen: Option<String> = None;

    loop {
        // One heartbeat at a time: while one is in flight, whatever asks
        // for the next one waits (a `Notify` keeps its permit).
        let beating = heartbeat.is_some();
        let (fetching_now, sync_waits) = (fetching.is_some(), doorbells.sync_at().is_some());
        let event = tokio::select! {
            _ = agent.shutdown.cancelled() => Event::Stop,
            e = bus.next() => e,
            r = async {
                match heartbeat.as_mut() {
                    Some(sending) => sending.await,
                    None => std::future::pending().await,
                }
            }, if beating => Event::HeartbeatSent(r),
            _ = &mut next_heartbeat, if !beating => Event::Heartbeat,
            _ = agent.heartbeat_now.notified(), if !beating => Event::Heartbeat,
            _ = agent.engine.changed.notified(), if !beating => Event::Heartbeat,
            _ = reconcile.tick() => Event::Reconcile,
            r = async {
                match fetching.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }, if fetching_now => Event::Desired(Box::new(r)),
            _ = &mut sync_due, if !fetching_now && sync_waits => Event::SyncDue,
        };
        match event {
            Event::Stop => return,
            Event::Bus(msg) => {
                bus_retry.reset();
                handle(agent, &mut doorbells, *msg);
            }
            Event::BusUp(stream) => {
                tracing::info!(cluster = %agent.config.cluster, via = %bus_name(agent), "subscribed to the bus");
                bus_retry.recovered();
                bus = Bus::Subscribed(stream);
            }
            Event::BusLost(loss) => {
                match loss {
                    BusLoss::Refused(e) if bus_retry.failed() => {
                        tracing::warn!(error = %e, "cannot subscribe to the bus; retrying")
                    }
                    BusLoss::Refused(e) => {
                        tracing::debug!(error = %e, "cannot subscribe to the bus")
                    }
                    BusLoss::Ended => tracing::info!("bus stream ended; reconnecting"),
                }
                bus = Bus::Waiting(Box::pin(tokio::time::sleep(bus_retry.next_wait())));
            }
            Event::Reconnect => bus = Bus::subscribe(agent),
            Event::Heartbeat => heartbeat = Some(send_heartbeat(agent.clone()).boxed()),
            Event::HeartbeatSent(sent) => {
                heartbeat = None;
                if let Ok(Some(fingerprint)) = &sent
                    && desired_seen.as_ref() != Some(fingerprint)
                {
                    // Nothing on the bus said so (or it did and this is the
                    // install's own change): read it, at once.
                    tracing::info!("AppTracker says the desired state changed; reading it");
                    doorbells.sync(SyncFrom::Heartbeat);
                }
                match sent {
                    Ok(_) if heartbeat_retry.recovered() => {
                        tracing::info!("heartbeat reaches AppTracker again")
                    }
                    Ok(_) => {}
                    Err(e) if heartbeat_retry.failed() => {
                        tracing::warn!(error = %e, "heartbeat failed; retrying quietly")
                    }
                    Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
                }
                next_heartbeat
                    .as_mut()
                    .reset(tokio::time::Instant::now() + interval);
            }
            Event::Reconcile => {
                tracing::debug!("reconciling on the timer");
                doorbells.sync(SyncFrom::Timer);
            }
            Event::SyncDue => {}
            Event::Desired(fetched) => {
                fetching = None;
                let (asked, desired) = *fetched;
                if let Some(d) = &desired {
                    desired_seen.clone_from(&d.fingerprint);
                }
                answer(agent, &asked, desired.map(|d| d.apps));
            }
        }
        if fetching.is_none() {
            if let Some(asked) = doorbells.take(tokio::time::Instant::now()) {
                let a = agent.clone();
                fetching = Some(
                    async move {
                        let cfg = &a.config;
                        let desired = doorbell::fetch(
                            a.client.clone(),
                            cfg.cluster.clone(),
                            cfg.host.clone(),
                            a.shutdown.clone(),
                        )
                        .await;
                        (asked, desired)
                    }
                    .boxed(),
                );
            } else if let Some(at) = doorbells.sync_at() {
                sync_due.as_mut().reset(at);
            }
        }
    }
}

/// Installs what the desired state says for what rang.
fn answer(agent: &Arc<Agent>, asked: &Asked, desired: Option<Vec<Release>>) {
    let Some(desired) = desired else {
        if !asked.deploys.is_empty() {
            tracing::info!(
                host = %agent.config.host,
                messages = asked.deploys.len(),
                "deploy messages wait for the next sync: the desired state cannot be read"
            );
        }
        return;
    };
    let answer = doorbell::answer(asked, desired);
    doorbell::log_ignored(&answer, asked.dropped, &agent.config.host);
    if asked.sync {
        tracing::info!(host = %agent.config.host, apps = answer.install.len(), "converging on desired state");
    }
    for release in answer.install {
        spawn_install(agent, release);
    }
}

/// Tells AppTracker what this host runs and takes in its answer: the
/// fingerprint of the host's desired state, when AppTracker sends one.
async fn send_heartbeat(agent: Arc<Agent>) -> Result<Option<String>, ClientError> {
    let hb = Heartbeat {
        cluster: agent.config.cluster.clone(),
        host: agent.config.host.clone(),
        root: agent.config.root.display().to_string(),
        apps: agent.engine.installed(),
        peer: agent.peer.as_ref().map(|l| deploy::PeerEndpoint {
            url: l.url.clone(),
            fingerprint: l.fingerprint.clone(),
        }),
    };
    let answer = agent.client.heartbeat(&hb).await?;
    if agent.peer.is_some()
        && let Some(key) = answer.peer_ticket_key
    {
        match key.parse::<deploy::signing::PublicKey>() {
            Ok(key) => {
                if let Ok(mut keys) = agent.ticket_keys.write()
                    && keys.as_slice() != [key]
                {
                    *keys = vec![key];
                }
            }
            Err(e) => tracing::warn!(error = %e, "AppTracker's peer ticket key is malformed"),
        }
    }
    Ok(answer.desired_fingerprint)
}

type BusStream = futures::stream::BoxStream<'static, Result<BusMessage, String>>;

fn bus_name(agent: &Agent) -> &'static str {
    if agent.config.redis_url.is_some() {
        "redis"
    } else {
        "apptracker"
    }
}

/// Subscribes to the cluster's channel: on Redis directly, or through
/// AppTracker's relay. Either way the stream opens with `Sync`, so every
/// (re)connection re-reads the desired state and nothing published while
/// the subscriber was away is lost. A Redis restart ends the stream (the
/// main loop subscribes again after a backoff).
async fn subscribe(agent: Arc<Agent>) -> Result<BusStream, String> {
    match &agent.config.redis_url {
        None => {
            let s = agent
                .client
                .bus_stream(&agent.config.cluster)
                .await
                .map_err(|e| e.to_string())?;
            Ok(s.map(|r| r.map_err(|e| e.to_string())).boxed())
        }
        Some(url) => {
            let client = open_redis(url, &agent.config.trust)?;
            let mut pubsub = client
                .get_async_pubsub()
                .await
                .map_err(|e| format!("cannot connect to redis: {e}"))?;
            let channel = deploy::bus::channel(&agent.config.redis_prefix, &agent.config.cluster);
            pubsub
                .subscribe(&channel)
                .await
                .map_err(|e| format!("cannot subscribe to {channel}: {e}"))?;
            let messages = pubsub.into_on_message().map(|msg| {
                let payload: String = msg
                    .get_payload()
                    .map_err(|e| format!("unreadable bus message: {e}"))?;
                BusMessage::from_json(&payload)
                    .map_err(|e| format!("malformed bus message {payload:?}: {e}"))
            });
            Ok(futures::stream::once(async { Ok(BusMessage::Sync) })
                .chain(messages)
                .boxed())
        }
    }
}

/// Acts on a bus message. `Sync` and `Deploy` only ring: what is
/// installed comes from the desired state (see `doorbell`).
fn handle(agent: &Arc<Agent>, doorbells: &mut Doorbells, msg: BusMessage) {
    match msg {
        BusMessage::Sync => doorbells.sync(SyncFrom::Bus),
        BusMessage::Deploy(m) => {
            if !m.target.selects(&agent.config.cluster, &agent.config.host) {
                tracing::debug!(deploy_id = %m.release.deploy_id, "deploy is for other hosts");
                return;
            }
            tracing::debug!(deploy_id = %m.release.deploy_id, app = %m.release.app,
                version = %m.release.version, "deploy message: reading the desired state");
            doorbells.deploy(Rung::of(&m.release));
        }
        BusMessage::ReleasePhase(m) => {
            if !m.target.selects(&agent.config.cluster, &agent.config.host) {
                tracing::debug!(deploy_id = %m.release.deploy_id, "release phase is for another host");
                return;
            }
            // Only its deploy id counts: the release comes from AppTracker.
            spawn_release_phase(agent, m.release.deploy_id);
        }
        BusMessage::Logs(m) => {
            if !m.target.selects(&agent.config.cluster, &agent.config.host) {
                return;
            }
            let agent = agent.clone();
            agent.clone().tasks.spawn(async move {
                let answer = crate::log_piece::read(
                    &HostLayout::new(&agent.config.root),
                    &agent.config.cluster,
                    &m.app,
                    m.offset,
                    m.max_bytes,
                );
                if let Err(e) = agent.client.answer_log(m.request_id, &answer).await {
                    tracing::warn!(request = m.request_id, app = %m.app, error = %e, "cannot send a log piece");
                }
            });
        }
        BusMessage::Unknown => tracing::warn!("skipping a bus message of an unknown kind"),
    }
}

/// Runs deploy `id`'s release phase here, if AppTracker says this host is
/// to run it, and reports how it went. The message only rang: what runs is
/// the release AppTracker names for this host (`GET …/release-phase/{host}`),
/// so whoever can publish on the bus cannot make a host run an old
/// release's command. Both requests are tried again for a while when
/// AppTracker cannot answer (the deploy waits; its deadline fails it if
/// nothing lands).
fn spawn_release_phase(agent: &Arc<Agent>, id: deploy::DeployId) {
    let agent = agent.clone();
    agent.clone().tasks.spawn(async move {
        let (cluster, host) = (&agent.config.cluster, &agent.config.host);
        let asked = retrying(
            &agent,
            id,
            "read the release phase asked of this host",
            || agent.client.release_phase_asked(id, cluster, host),
        );
        let Some(release) = asked.await else {
            return;
        };
        let Some(result) = agent
            .engine
            .release_phase(&release, agent.reporter.as_ref(), &agent.shutdown)
            .await
        else {
            return;
        };
        retrying(&agent, id, "report the release phase", || {
            agent.client.release_phase_result(id, host, &result)
        })
        .await;
    });
}

/// `call` until it answers, a retryable failure tried again with backoff
/// for up to two minutes; `None` when it was refused, given up on or
/// shutdown came (each logged, saying it could not `what`).
async fn retrying<T, F>(
    agent: &Agent,
    id: deploy::DeployId,
    what: &str,
    call: impl Fn() -> F,
) -> Option<T>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    let host = &agent.config.host;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut retry = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    loop {
        match call().await {
            Ok(answer) => return Some(answer),
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < give_up => {
                tracing::info!(deploy_id = %id, %host, error = %e, "cannot {what} yet; trying again");
            }
            Err(e) => {
                tracing::warn!(deploy_id = %id, %host, error = %e, "cannot {what}; dropped");
                return None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry.next_wait()) => {}
            _ = agent.shutdown.cancelled() => return None,
        }
    }
}

fn spawn_install(agent: &Arc<Agent>, release: Release) {
    let agent = agent.clone();
    agent.clone().tasks.spawn(async move {
        agent
            .engine
            .install(&release, agent.reporter.as_ref(), &agent.shutdown)
            .await;
        agent.heartbeat_now.notify_one();
    });
}

/// A Redis client for `url`; a `rediss://` one trusts the extra CA too (the
/// redis crate's CA setting replaces the system roots, so it gets both).
fn open_redis(url: &str, trust: &deploy::tls::Trust) -> Result<redis::Client, String> {
    let client = match trust.pem_bundle() {
        Some(roots) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots),
            },
        ),
        _ => redis::Client::open(url),
    };
    client.map_err(|e| format!("bad redis URL: {e}"))
}
