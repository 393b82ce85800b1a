//! Where the phases of an install go: the `Reporter` seam (AppTracker in
//! production, a list in tests) and `Reports`, which builds the host events
//! of one install and keeps its log.

use std::sync::Mutex;
use std::time::Duration;

use deploy::{AppName, Cluster, DeployId, HostEvent, HostName, HostPhase, Timestamp};
use futures::future::BoxFuture;

use super::error::InstallError;

/// Where phases of an install go: AppTracker in production, a list in
/// tests. Reporting never fails an install.
pub(crate) trait Reporter: Send + Sync {
    fn report(&self, deploy: DeployId, event: HostEvent) -> BoxFuture<'_, ()>;

    /// The variables `app` runs with at config `version` (secrets in the
    /// clear): AppTracker's answer to this host's agent token.
    fn config<'a>(
        &'a self,
        app: &'a AppName,
        version: u64,
    ) -> BoxFuture<'a, Result<deploy::HostConfig, String>> {
        Box::pin(async move {
            Err(format!(
                "no AppTracker to fetch config version {version} of `{app}` from"
            ))
        })
    }

    /// Where to fetch the files of deploy `deploy`'s release this host
    /// lacks: AppTracker's answer to this host's agent token.
    fn sources<'a>(
        &'a self,
        deploy: DeployId,
        req: &'a deploy::SourcesRequest,
    ) -> BoxFuture<'a, Result<deploy::Sources, String>> {
        let _ = req;
        Box::pin(async move {
            Err(format!(
                "no AppTracker to ask for deploy {deploy}'s sources"
            ))
        })
    }
}

/// Posts host events to AppTracker, in order, each until AppTracker
/// acknowledges it: a report that fails for a reason that may pass
/// (AppTracker restarting, a 5xx, a broken connection) is sent again with
/// backoff, for up to `end_patience` after it was made (AppTracker's
/// history stays whole through a restart; events are idempotent there).
/// A progress phase is queued and the install goes on; an end phase
/// (done, skipped, failed) is waited for, so the install ends once
/// AppTracker knows. A refusal (4xx) is logged and dropped.
pub(crate) struct ClientReporter {
    pub client: deploy::Client,
    pub cluster: Cluster,
    pub host: HostName,
    pub end_patience: Duration,
    /// The first wait between tries; it doubles, up to 5 s.
    pub first_wait: Duration,
    /// The ordered queue of events to send, and its sender task, started
    /// at the first report (with the settings above as they are then).
    queue: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Pending>>,
}

/// An event waiting its turn.
struct Pending {
    deploy: DeployId,
    event: HostEvent,
    made: tokio::time::Instant,
    /// Told once the event was acknowledged or given up (end phases).
    sent: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ClientReporter {
    pub fn new(client: deploy::Client, cluster: Cluster, host: HostName) -> Self {
        Self {
            client,
            cluster,
            host,
            end_patience: Duration::from_secs(120),
            first_wait: Duration::from_millis(250),
            queue: std::sync::OnceLock::new(),
        }
    }

    fn queue(&self) -> &tokio::sync::mpsc::UnboundedSender<Pending> {
        self.queue.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
            let post = Post {
                client: self.client.clone(),
                host: self.host.clone(),
                patience: self.end_patience,
                first_wait: self.first_wait,
            };
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    post.send(p.deploy, &p.event, p.made).await;
                    if let Some(sent) = p.sent {
                        let _ = sent.send(());
                    }
                }
            });
            tx
        })
    }
}

/// What the sender task of a [`ClientReporter`] needs.
struct Post {
    client: deploy::Client,
    host: HostName,
    patience: Duration,
    first_wait: Duration,
}

impl Post {
    /// Sends one event until it lands, it is refused, or `patience` after
    /// `made` has passed.
    async fn send(&self, deploy: DeployId, event: &HostEvent, made: tokio::time::Instant) {
        let give_up = made + self.patience;
        let mut retry = deploy::Backoff::new(self.first_wait, Duration::from_secs(5));
        let mut tries = 0;
        loop {
            tries += 1;
            let e = match self.client.host_event(deploy, &self.host, event).await {
                Ok(_) => return,
                Err(e) => e,
            };
            let wait = retry.next_wait();
            if !e.is_retryable() || tokio::time::Instant::now() + wait >= give_up {
                tracing::warn!(deploy_id = %deploy, host = %self.host, phase = %event.phase,
                    tries, error = %e, "cannot report host event; dropped");
                return;
            }
            tracing::info!(deploy_id = %deploy, host = %self.host, phase = %event.phase,
                tries, error = %e, "cannot report host event yet; trying again");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Tries for the config and the sources of an install, which it waits on.
const PROGRESS_TRIES: u32 = 3;

impl Reporter for ClientReporter {
    fn config<'a>(
        &'a self,
        app: &'a AppName,
        version: u64,
    ) -> BoxFuture<'a, Result<deploy::HostConfig, String>> {
        Box::pin(async move {
            let mut retry = deploy::Backoff::new(self.first_wait, Duration::from_secs(5));
            let mut tries = 0;
            loop {
                tries += 1;
                match self
                    .client
                    .host_config(&self.cluster, &self.host, app, version)
                    .await
                {
                    Ok(c) if c.app == *app && c.version == version => return Ok(c),
                    Ok(c) => {
                        return Err(format!(
                            "AppTracker answered config version {} of `{}` for version {version} \
                             of `{app}`",
                            c.version, c.app
                        ));
                    }
                    Err(e) if e.is_retryable() && tries < PROGRESS_TRIES => {
                        tokio::time::sleep(retry.next_wait()).await;
                    }
                    Err(e) => {
                        return Err(format!(
                            "cannot fetch config version {version} of `{app}`: {e}"
                        ));
                    }
                }
            }
        })
    }

    fn sources<'a>(
        &'a self,
        deploy: DeployId,
        req: &'a deploy::SourcesRequest,
    ) -> BoxFuture<'a, Result<deploy::Sources, String>> {
        Box::pin(async move {
            let mut retry = deploy::Backoff::new(self.first_wait, Duration::from_secs(5));
            let mut tries = 0;
            loop {
                tries += 1;
                match self.client.sources(deploy, &self.host, req).await {
                    Ok(s) => return Ok(s),
                    Err(e) if e.is_retryable() && tries < PROGRESS_TRIES => {
                        tokio::time::sleep(retry.next_wait()).await;
                    }
                    Err(e) => return Err(format!("cannot ask where to fetch the files: {e}")),
                }
            }
        })
    }

    fn report(&self, deploy: DeployId, event: HostEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (sent, acked) = if event.phase.is_terminal() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let pending = Pending {
                deploy,
                event,
                made: tokio::time::Instant::now(),
                sent,
            };
            if self.queue().send(pending).is_err() {
                tracing::warn!(deploy_id = %deploy, host = %self.host,
                    "the report queue is gone; host event dropped");
                return;
            }
            if let Some(acked) = acked {
                let _ = acked.await;
            }
        })
    }
}

/// An artifact URL fit for messages and logs: without its query, which
/// holds the download's signature (a presigned URL's credentials), so a
/// failure report shown to viewers or kept in logs grants nothing.
pub(super) fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// Builds and sends the events of one install, and keeps its log: a
/// failure sends the whole install log and the app's output since it
/// started (up to `FAILURE_LOG_BYTES`), not just a tail.
pub(super) struct Reports<'a> {
    reporter: &'a dyn Reporter,
    deploy_id: DeployId,
    cluster: &'a Cluster,
    log: Mutex<String>,
}

impl<'a> Reports<'a> {
    pub(super) fn new(
        reporter: &'a dyn Reporter,
        deploy_id: DeployId,
        cluster: &'a Cluster,
    ) -> Self {
        Self {
            reporter,
            deploy_id,
            cluster,
            log: Mutex::new(String::new()),
        }
    }

    fn note(&self, phase: impl std::fmt::Display, message: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.push_str(&format!("{} {phase}: {message}\n", Timestamp::now()));
        }
    }

    /// The app's config at `version`, from AppTracker.
    pub(super) async fn config(
        &self,
        app: &AppName,
        version: u64,
    ) -> Result<deploy::HostConfig, String> {
        self.reporter.config(app, version).await
    }

    /// Adds what a command said (a hook) to the install's log, under
    /// `title`.
    pub(super) fn attach(&self, title: &str, output: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.push_str(&format!("{} {title}\n", Timestamp::now()));
            if !output.is_empty() {
                log.push_str("--- its output ---\n");
                log.push_str(output);
                if !output.ends_with('\n') {
                    log.push('\n');
                }
            }
        }
    }

    /// The install's log so far.
    pub(super) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub(super) async fn phase(&self, phase: HostPhase, message: String) {
        self.phase_with(phase, message, None).await;
    }

    /// A phase, with how the release's bytes came.
    pub(super) async fn phase_with(
        &self,
        phase: HostPhase,
        message: String,
        transfer: Option<deploy::Transfer>,
    ) {
        tracing::debug!(%phase, %message, "phase");
        self.note(phase, &message);
        let mut event = HostEvent::progress(self.cluster.clone(), phase, message);
        event.transfer = transfer;
        self.reporter.report(self.deploy_id, event).await;
    }

    /// Where to fetch files of this deploy's release.
    pub(super) async fn sources(
        &self,
        req: &deploy::SourcesRequest,
    ) -> Result<deploy::Sources, String> {
        self.reporter.sources(self.deploy_id, req).await
    }

    /// Reports `error`, the one place its message is rendered: the cause,
    /// then `note` (what the rollback did, or nothing).
    pub(super) async fn failed(
        &self,
        error: &InstallError,
        rolled_back: bool,
        note: &str,
        app_log: Option<String>,
    ) {
        let phase = error.phase;
        let message = format!("{error}{note}");
        self.note(format!("failed in {phase}"), &message);
        let mut log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        if let Some(app_log) = app_log {
            log.push_str("--- the app's output since it started ---\n");
            log.push_str(&app_log);
        }
        let event = HostEvent::failed(self.cluster.clone(), phase, rolled_back, message, log);
        self.reporter.report(self.deploy_id, event).await;
    }
}

#[cfg(test)]
mod report_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use axum::routing::post;

    use super::*;

    /// An AppTracker that answers 503 to the first `fail` reports, then
    /// records the phases it accepts.
    async fn flaky(fail: usize) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, g) = (calls.clone(), got.clone());
        let app = axum::Router::new().route(
            "/api/v1/deploys/{id}/hosts/{host}/events",
            post(move |axum::Json(ev): axum::Json<serde_json::Value>| {
                let (c, g) = (c.clone(), g.clone());
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) < fail {
                        let body = serde_json::json!({"code": "internal", "message": "restarting"});
                        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body));
                    }
                    g.lock()
                        .unwrap()
                        .push(ev["phase"].as_str().unwrap_or("?").to_string());
                    let row = serde_json::json!({
                        "host": "h1", "phase": ev["phase"], "failed_phase": null,
                        "rolled_back": false, "message": null, "log_tail": null,
                        "updated_at": 0, "batch": 0,
                    });
                    (StatusCode::OK, axum::Json(row))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls, got)
    }

    fn event(phase: HostPhase) -> HostEvent {
        HostEvent {
            message: None,
            ..HostEvent::progress(
                deploy::Cluster::parse("local").unwrap(),
                phase,
                String::new(),
            )
        }
    }

    fn reporter(url: String) -> ClientReporter {
        let mut r = ClientReporter::new(
            deploy::Client::new(url),
            Cluster::parse("local").unwrap(),
            HostName::parse("h1").unwrap(),
        );
        r.first_wait = Duration::from_millis(10);
        r
    }

    #[tokio::test]
    async fn an_end_phase_is_sent_again_until_it_lands() {
        let (url, calls, got) = flaky(4).await;
        let r = reporter(url);
        r.report(DeployId(1), event(HostPhase::Done)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(*got.lock().unwrap(), ["done"]);
    }

    /// Through an AppTracker restart, no progress is lost and nothing
    /// waits on it: progress is queued, sent in order until it lands, and
    /// the end goes after it.
    #[tokio::test]
    async fn progress_is_sent_in_order_until_it_lands_without_holding_the_install() {
        let (url, calls, got) = flaky(6).await;
        let r = reporter(url);
        tokio::time::timeout(
            Duration::from_millis(100),
            r.report(DeployId(1), event(HostPhase::Downloading)),
        )
        .await
        .expect("a progress report does not wait for AppTracker");
        r.report(DeployId(1), event(HostPhase::Extracting)).await;
        r.report(DeployId(1), event(HostPhase::Done)).await;
        assert_eq!(*got.lock().unwrap(), ["downloading", "extracting", "done"]);
        assert_eq!(calls.load(Ordering::SeqCst), 9);
    }

    #[tokio::test]
    async fn an_end_phase_gives_up_after_its_patience() {
        let (url, calls, got) = flaky(usize::MAX).await;
        let mut r = reporter(url);
        r.end_patience = Duration::from_secs(1);
        // Tries again and again (waits of 10, 20, 40 ms… fit in a second),
        // then gives up rather than holding the grabber forever.
        tokio::time::timeout(
            Duration::from_secs(60),
            r.report(DeployId(1), event(HostPhase::Failed)),
        )
        .await
        .expect("the reporter gives up");
        assert!(calls.load(Ordering::SeqCst) >= 3, "{calls:?}");
        assert!(got.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refusal_is_not_sent_again() {
        let (url, calls, _) = flaky(0).await;
        let r = reporter(format!("{url}/nowhere"));
        r.report(DeployId(1), event(HostPhase::Done)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "a 404 is final");
    }
}
