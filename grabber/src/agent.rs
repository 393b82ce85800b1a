//! The agent's main loop: recover at start, heartbeat, follow the cluster's
//! bus (reconnecting with backoff), turn `Sync` and `Deploy` messages into
//! installs, and shut down cleanly.

use std::sync::Arc;
use std::time::Duration;

use deploy::layout::HostLayout;
use deploy::{BusMessage, Client, DeployMessage, DesiredApp, Heartbeat};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::install::{ClientReporter, Engine, EngineConfig, InstallRequest, Reporter};
use crate::user::AppUser;

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What one running grabber shares between its tasks.
struct Agent {
    config: Config,
    client: Client,
    engine: Arc<Engine>,
    reporter: Arc<dyn Reporter>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Rung after an install, so AppTracker's host table shows the change
    /// now rather than at the next interval.
    heartbeat_now: tokio::sync::Notify,
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
    let engine = Engine::new(
        EngineConfig {
            cluster: config.cluster.clone(),
            host: config.host.clone(),
            layout,
            port_offset: config.port_offset,
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
    let reporter = Arc::new(ClientReporter::new(client.clone(), config.host.clone()));
    let agent = Arc::new(Agent {
        config,
        client,
        engine,
        reporter,
        tracker: TaskTracker::new(),
        shutdown,
        heartbeat_now: tokio::sync::Notify::new(),
    });
    tracing::info!(
        cluster = %agent.config.cluster,
        host = %agent.config.host,
        root = %agent.config.root.display(),
        server = %agent.config.server,
        "grabber starting"
    );
    agent.engine.recover().await;

    agent.tracker.spawn(heartbeat_loop(agent.clone()));
    agent.tracker.spawn(reconcile_loop(agent.clone()));
    follow_bus(&agent).await;

    // Stop accepting work; let running installs finish their step.
    agent.tracker.close();
    agent.tracker.wait().await;
    if agent.config.stop_apps_on_exit {
        agent.engine.stop_all().await;
    }
    tracing::info!(host = %agent.config.host, "grabber stopped");
    Ok(())
}

async fn heartbeat_loop(agent: Arc<Agent>) {
    let mut outage = false;
    loop {
        let hb = Heartbeat {
            cluster: agent.config.cluster.clone(),
            host: agent.config.host.clone(),
            root: agent.config.root.display().to_string(),
            apps: agent.engine.installed(),
        };
        tokio::select! {
            r = agent.client.heartbeat(&hb) => match r {
                Ok(_) if outage => {
                    tracing::info!("heartbeat reaches AppTracker again");
                    outage = false;
                }
                Ok(_) => {}
                Err(e) if !outage => {
                    tracing::warn!(error = %e, "heartbeat failed; retrying quietly");
                    outage = true;
                }
                Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
            },
            _ = agent.shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(agent.config.heartbeat_interval) => {}
            _ = agent.heartbeat_now.notified() => {}
            _ = agent.engine.changed.notified() => {}
            _ = agent.shutdown.cancelled() => return,
        }
    }
}

/// Converges on a slow timer as well, whatever the bus says: a lost
/// message (or a bus that is quietly broken) delays a deploy, never
/// prevents it.
async fn reconcile_loop(agent: Arc<Agent>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(agent.config.reconcile_interval) => {}
            _ = agent.shutdown.cancelled() => return,
        }
        tracing::debug!("reconciling on the timer");
        converge(agent.clone()).await;
    }
}

/// Follows the bus until shutdown, reconnecting with backoff.
async fn follow_bus(agent: &Arc<Agent>) {
    let mut backoff = BACKOFF_START;
    let mut outage = false;
    while !agent.shutdown.is_cancelled() {
        let connected = tokio::select! {
            r = subscribe(agent) => r,
            _ = agent.shutdown.cancelled() => return,
        };
        match connected {
            Err(e) => {
                if !outage {
                    tracing::warn!(error = %e, "cannot subscribe to the bus; retrying");
                    outage = true;
                } else {
                    tracing::debug!(error = %e, "cannot subscribe to the bus");
                }
            }
            Ok(stream) => {
                tracing::info!(cluster = %agent.config.cluster, via = %bus_name(agent), "subscribed to the bus");
                outage = false;
                let mut stream = std::pin::pin!(stream);
                loop {
                    let item = tokio::select! {
                        i = stream.next() => i,
                        _ = agent.shutdown.cancelled() => return,
                    };
                    match item {
                        None => {
                            tracing::info!("bus stream ended; reconnecting");
                            break;
                        }
                        Some(Ok(msg)) => {
                            backoff = BACKOFF_START;
                            handle(agent, msg);
                        }
                        Some(Err(e)) => tracing::warn!(error = %e, "skipping a bus message"),
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = agent.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
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
/// caller reconnects with backoff).
async fn subscribe(agent: &Agent) -> Result<BusStream, String> {
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

fn handle(agent: &Arc<Agent>, msg: BusMessage) {
    match msg {
        BusMessage::Sync => {
            let agent2 = agent.clone();
            agent.tracker.spawn(async move { converge(agent2).await });
        }
        BusMessage::Deploy(m) => {
            if !m.target.selects(&agent.config.cluster, &agent.config.host) {
                tracing::debug!(deploy_id = %m.deploy_id, "deploy is for other hosts");
                return;
            }
            let DeployMessage {
                deploy_id,
                app,
                version,
                artifact,
                ..
            } = m;
            spawn_install(
                agent,
                InstallRequest {
                    deploy_id,
                    app,
                    version,
                    artifact,
                },
            );
        }
        BusMessage::Unknown => tracing::warn!("skipping a bus message of an unknown kind"),
    }
}

fn spawn_install(agent: &Arc<Agent>, req: InstallRequest) {
    let agent = agent.clone();
    agent.clone().tracker.spawn(async move {
        agent
            .engine
            .install(&req, agent.reporter.as_ref(), &agent.shutdown)
            .await;
        agent.heartbeat_now.notify_one();
    });
}

/// Fetches the desired state and installs whatever differs.
async fn converge(agent: Arc<Agent>) {
    let mut backoff = BACKOFF_START;
    let desired = loop {
        let r = tokio::select! {
            r = agent.client.desired_state(&agent.config.cluster, &agent.config.host) => r,
            _ = agent.shutdown.cancelled() => return,
        };
        match r {
            Ok(d) => break d,
            Err(e) if e.is_retryable() && backoff < BACKOFF_MAX => {
                tracing::debug!(error = %e, "cannot fetch desired state; retrying");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch desired state; waiting for the next sync");
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = agent.shutdown.cancelled() => return,
        }
        backoff *= 2;
    };
    tracing::info!(apps = desired.apps.len(), "converging on desired state");
    for DesiredApp {
        app,
        version,
        deploy_id,
        artifact,
    } in desired.apps
    {
        spawn_install(
            &agent,
            InstallRequest {
                deploy_id,
                app,
                version,
                artifact,
            },
        );
    }
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
