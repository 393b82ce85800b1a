//! Builds the application from a config (database, store, bus, router) and
//! runs it until shutdown: the HTTP server, the in-process builder, the
//! deadline sweeper, the notification sender and the drift watch, each a
//! tracked task.

use std::net::SocketAddr;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::bus::Bus;
use crate::config::Config;
use crate::db::Db;
use crate::store::{ArtifactStore, LocalStore, S3Store};
use crate::tracker::{Parts, Tracker};
use std::sync::Arc;

/// A bound, ready-to-run AppTracker.
pub struct Application {
    listener: TcpListener,
    /// TLS handshakes, when AppTracker serves HTTPS itself.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// What the dashboard's API client trusts (it calls `public_url`).
    trust: deploy::tls::Trust,
    addr: SocketAddr,
    tracker: Tracker,
    base_url: String,
}

impl Application {
    /// Opens the database (migrating it), binds the listener and wires the
    /// parts. Nothing runs until [`Application::run`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tls = config.tls.acceptor()?;
        let trust = config.tls.trust()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let db = Db::connect(&config.database_url()).await?;
        // Kept in a file (made at first start unless configured), so the
        // download URLs handed to hosts still work after a restart and on
        // every replica serving the same directory.
        let url_key_path = config.url_signing_key_path();
        let signing_key = match &config.url_signing_key_file {
            Some(path) => {
                zeroize::Zeroizing::new(std::fs::read(path).with_context(|| {
                    format!("cannot read url_signing_key_file {}", path.display())
                })?)
            }
            None => {
                let (key, generated) =
                    crate::secrets::load_or_generate_raw(&url_key_path, "URL signing key")?;
                if generated {
                    tracing::info!(path = %url_key_path.display(),
                        "generated the key local download URLs are signed with; replicas serving the same artifact directory need the same file (url_signing_key_file)");
                }
                key
            }
        };
        let local = Arc::new(LocalStore::new(
            config.artifacts_dir(),
            base_url.clone(),
            signing_key.to_vec(),
            config.artifact_url_ttl,
        ));
        let store: Arc<dyn ArtifactStore> = match &config.s3 {
            Some(s3) => Arc::new(
                S3Store::connect_with(s3, config.artifact_url_ttl, &trust)
                    .await
                    .context("cannot open the S3 artifact store ([s3] in the config)")?,
            ),
            None => local.clone(),
        };
        tracing::info!(store = %store.describe(), "artifact store");
        // The local directory is served only when it is the store.
        let local = config.s3.is_none().then_some(local);
        let bus = match &config.redis_url {
            Some(url) => Bus::redis(url, &config.redis_prefix, &trust).await?,
            None => Bus::in_process(),
        };
        tracing::info!(bus = bus.describe(), "bus");
        if let Some(path) = &config.webhook_secret_file {
            tracing::warn!(
                path = %path.display(),
                "webhook_secret_file is no longer used and is ignored: each app has its own webhook \
                 secret per provider and its own URL (`deploy webhook-secret APP --provider P`)"
            );
        }
        let (secrets, generated) =
            crate::secrets::SecretsKey::load_or_generate(&config.secrets_key_path())?;
        if generated {
            tracing::info!(path = %config.secrets_key_path().display(), key_id = secrets.id(),
                "generated the key webhook secrets are sealed with; replicas sharing the database need the same file (secrets_key_file)");
        }
        let packer = config.packer_settings()?;
        let (signing_key, generated) = config.signing_key()?;
        if generated {
            tracing::info!(
                path = %config.signing_key_path().display(),
                public_key = %signing_key.public_key(),
                "generated the artifact signing key; give grabbers its public key (--trusted-key)"
            );
        } else {
            tracing::info!(public_key = %signing_key.public_key(), "artifacts built here are signed");
        }
        let (peer_ticket_key, generated) = config.peer_ticket_key()?;
        if generated {
            tracing::info!(
                path = %config.peer_ticket_key_path().display(),
                public_key = %peer_ticket_key.public_key(),
                "generated the key peer tickets are signed with; replicas sharing the database need the same file ([peers] ticket_key_file)"
            );
        }
        let tracker = Tracker::new(Parts {
            packer,
            signing_key,
            peer_ticket_key,
            db,
            bus,
            store,
            local,
            config,
            base_url: base_url.clone(),
            secrets,
        });
        Ok(Self {
            listener,
            tls,
            trust,
            addr,
            tracker,
            base_url,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients and hosts use.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The public key of the in-process builder, for grabbers to trust.
    pub fn public_key(&self) -> deploy::signing::PublicKey {
        self.tracker.public_key()
    }

    /// Serves until `shutdown`, then waits for the background tasks.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = self.tracker;
        let tasks = TaskTracker::new();
        if tracker.config().builder.enabled {
            crate::builder::check_sandbox(tracker.packer_settings()).await;
            tasks.spawn(crate::builder::run(tracker.clone(), shutdown.clone()));
        }
        tasks.spawn(sweeper(tracker.clone(), shutdown.clone()));
        tasks.spawn(crate::tracker::notify::run(
            tracker.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::tracker::drift_watch::run(
            tracker.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(tracker.bus().clone().relay(shutdown.clone()));
        tasks.close();

        let dashboard_client = deploy::Client::with_trust(self.base_url.clone(), &self.trust)?;
        let app = crate::http::api(tracker.clone())
            .merge(web::router(dashboard_client))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    // Each 5xx says why where it is made (`ApiError`, the
                    // limits' refusals); tower-http's own line at ERROR
                    // only repeated it, once per refused agent under load.
                    .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
            );
        tracing::info!(url = %self.base_url, "apptracker listening");
        let token = shutdown.clone();
        let stopping = tracker.stopping().clone();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                stopping.cancel();
            }
        });
        // The peer address is what the audit log records as "from where".
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let stop = async move {
            token.cancelled().await;
            deploy::binary::announce_stopping();
        };
        // Ready: the database is migrated and the listener bound (both in
        // `build`), the background tasks run, and connections are accepted
        // from here on (`Type=notify`; a no-op without `NOTIFY_SOCKET`).
        deploy::binary::announce_ready("apptracker listening, database migrated");
        match self.tls {
            None => axum::serve(self.listener, app)
                .with_graceful_shutdown(stop)
                .await
                .context("http server failed")?,
            Some(acceptor) => {
                // `tap_io` gives the listener axum's ConnectInfo<SocketAddr>.
                let listener =
                    crate::tls::TlsListener::new(self.listener, acceptor).tap_io(|tls| {
                        let _ = tls.get_ref().0.set_nodelay(true);
                    });
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                    .context("https server failed")?
            }
        }
        shutdown.cancel();
        if tokio::time::timeout(std::time::Duration::from_secs(30), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop within 30s");
        }
        Ok(())
    }
}

/// A request's span: its method and the route it matched, never the URI,
/// whose path or query can hold a secret (a build-trigger URL, an artifact
/// URL's signature). Applied with `Router::layer`, it runs after routing,
/// so `MatchedPath` is there for every route; what matched none is
/// `unmatched`.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    tracing::debug_span!("request", method = %req.method(), route)
}

/// Makes a token straight in the database, for the first admin token of a
/// new installation (`apptracker token create`). `replace` drops an existing
/// token of that name first.
pub async fn bootstrap_token(
    config: &Config,
    name: &str,
    role: &str,
    cluster: Option<&deploy::Cluster>,
    replace: bool,
) -> anyhow::Result<String> {
    let req = deploy::CreateToken {
        name: name.to_string(),
        role: role.to_string(),
        cluster: cluster.cloned(),
        host: None,
    };
    bootstrap_scoped_token(config, &req, replace).await
}

/// [`bootstrap_token`] for any token the API could make, a host-bound
/// agent token included.
pub async fn bootstrap_scoped_token(
    config: &Config,
    req: &deploy::CreateToken,
    replace: bool,
) -> anyhow::Result<String> {
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let db = Db::connect(&config.database_url()).await?;
    if replace {
        db.delete_token(&req.name).await?;
    }
    crate::tracker::tokens::mint(
        &db,
        &req.name,
        &req.role,
        req.cluster.as_ref(),
        req.host.as_ref(),
    )
    .await
    .with_context(|| format!("cannot create token `{}`", req.name))
}

async fn sweeper(tracker: Tracker, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(tracker.config().sweep_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = tracker.sweep().await {
                    tracing::error!(error = ?e, "deadline sweep failed");
                }
                if let Err(e) = tracker.requeue_expired_builds().await {
                    tracing::error!(error = ?e, "lease sweep failed");
                }
            }
        }
    }
}
