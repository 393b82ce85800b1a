//! The typed async client of the AppTracker API, used by the CLI, the
//! dashboard, the grabber and the tests alike.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::*;
use crate::bus::BusMessage;
use crate::{AppName, BuildId, Cluster, DeployId, HostName};

/// The address `apptracker dev` listens on, the default everywhere.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// What can go wrong talking to AppTracker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach AppTracker at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed: most often a certificate this client does
    /// not trust (`reason` says what to do).
    #[error("cannot reach AppTracker at {url} securely: {reason}")]
    Tls {
        url: String,
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something this client cannot read.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// A failed request, explained when TLS is why.
    fn transport(url: String, source: reqwest::Error) -> Self {
        match crate::tls::explain(&source) {
            Some(reason) => ClientError::Tls {
                url,
                reason,
                source,
            },
            None => ClientError::Transport { url, source },
        }
    }

    /// Whether trying again later may work (the server was away or failed).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Api { status, .. } => *status >= 500,
            // A certificate can be renewed or the CA file fixed meanwhile;
            // agents keep trying (and keep saying why).
            ClientError::Transport { .. } | ClientError::Tls { .. } => true,
            ClientError::Decode { .. } => false,
        }
    }

    /// The stable error code, for an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The stable error code as the shared enum, for an API error
    /// ([`crate::ErrorCode::Unknown`] for a code this build does not know).
    pub fn error_code(&self) -> Option<crate::ErrorCode> {
        self.code().map(crate::ErrorCode::parse)
    }
}

/// A client of one AppTracker.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer`; never logged.
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: say whether there is one, never what it is.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client of the server at `base` (`http://host:port` or
    /// `https://host`, no trailing path) trusting the system's CA roots.
    pub fn new(base: impl Into<String>) -> Self {
        let http = crate::tls::Trust::system().http_client().unwrap_or_else(|e| {
            // Not expected (the settings are fixed); reqwest's defaults still
            // verify against the system roots.
            tracing::warn!(error = %e, "cannot build the HTTP client; using reqwest's defaults");
            reqwest::Client::new()
        });
        Self::with_http(base, http)
    }

    /// A client of the server at `base` trusting `trust`'s roots (the
    /// system's plus a private CA file).
    pub fn with_trust(
        base: impl Into<String>,
        trust: &crate::tls::Trust,
    ) -> Result<Self, crate::tls::TlsError> {
        Ok(Self::with_http(base, trust.http_client()?))
    }

    /// A client of the server at `base` over a given HTTP client.
    pub fn with_http(base: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            http,
            token: None,
        }
    }

    /// The same client, authenticating with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Adds the token to a request.
    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for downloads.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        self.send_within(req, Duration::from_secs(60)).await
    }

    async fn send_within<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let (_, bytes, url) = self.fetch(req, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// Sends a request; a successful answer's headers and body, and the URL.
    async fn fetch(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(reqwest::header::HeaderMap, bytes::Bytes, String), ClientError> {
        let req = self.auth(req).timeout(timeout);
        let (client, req) = req.build_split();
        let req = req.map_err(|e| ClientError::Decode {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let url = req.url().to_string();
        let resp = client
            .execute(req)
            .await
            .map_err(|source| ClientError::transport(url.clone(), source))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::transport(url.clone(), source))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Api {
                    status: status.as_u16(),
                    code: body.code,
                    message: body.message,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: "http_error".into(),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                },
            });
        }
        Ok((headers, bytes, url))
    }

    /// One page of the list at `path` (any list endpoint), with the cursor
    /// of the next page from `X-Next-Cursor`. `query` holds `limit` and
    /// `cursor`, and the list's own filters.
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<Page<T>, ClientError> {
        let req = self.http.get(self.url(path)).query(query);
        let (headers, bytes, url) = self.fetch(req, Duration::from_secs(60)).await?;
        let items = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })?;
        let next = headers
            .get(NEXT_CURSOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Page { items, next })
    }

    /// The whole list at `path`, page after page (up to `max` items).
    async fn collect<T: DeserializeOwned>(
        &self,
        path: &str,
        max: Option<usize>,
    ) -> Result<Vec<T>, ClientError> {
        let mut out: Vec<T> = Vec::new();
        let mut query = PageQuery::first(MAX_PAGE_LIMIT);
        loop {
            if let Some(max) = max {
                let left = max.saturating_sub(out.len());
                if left == 0 {
                    return Ok(out);
                }
                query.limit = Some(left.min(MAX_PAGE_LIMIT as usize) as u32);
            }
            let page: Page<T> = self.page(path, &query).await?;
            out.extend(page.items);
            match page.next {
                // A server naming the same page again would loop forever.
                Some(next) if query.cursor.as_ref() == Some(&next) => {
                    return Err(ClientError::Decode {
                        url: self.url(path),
                        reason: format!("the next page's cursor {next:?} repeats"),
                    });
                }
                Some(next) => query.cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    // ------------------------------------------------------------ apps

    pub async fn register_app(&self, req: &RegisterApp) -> Result<App, ClientError> {
        self.post("/api/v1/apps", req).await
    }

    /// Every registered app, by name.
    pub async fn apps(&self) -> Result<Vec<App>, ClientError> {
        self.collect("/api/v1/apps", None).await
    }

    pub async fn app(&self, app: &AppName) -> Result<App, ClientError> {
        self.get(&format!("/api/v1/apps/{app}")).await
    }

    /// Makes the app's webhook secret for `provider`, or rotates it
    /// (`req.rotate`); the answer holds the only copy of the secret.
    pub async fn set_webhook_secret(
        &self,
        app: &AppName,
        provider: crate::WebhookProvider,
        req: &crate::SetWebhookSecret,
    ) -> Result<crate::CreatedWebhookSecret, ClientError> {
        self.post(
            &format!("/api/v1/apps/{app}/webhook-secrets/{provider}"),
            req,
        )
        .await
    }

    /// The providers the app takes webhooks from (never the secrets).
    pub async fn webhook_secrets(
        &self,
        app: &AppName,
    ) -> Result<Vec<crate::WebhookSecretInfo>, ClientError> {
        self.get(&format!("/api/v1/apps/{app}/webhook-secrets"))
            .await
    }

    /// Stops taking the app's webhooks from `provider`: its secrets, the
    /// current and any previous one, stop working at once.
    pub async fn delete_webhook_secret(
        &self,
        app: &AppName,
        provider: crate::WebhookProvider,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .send(
                self.http
                    .delete(self.url(&format!("/api/v1/apps/{app}/webhook-secrets/{provider}"))),
            )
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ builds

    pub async fn request_build(
        &self,
        app: &AppName,
        req: &RequestBuild,
    ) -> Result<Build, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/builds"), req).await
    }

    /// The app's newest builds (a page of 100), newest first, without logs;
    /// [`Client::page`] reaches older ones.
    pub async fn builds(&self, app: &AppName) -> Result<Vec<Build>, ClientError> {
        let page: Page<Build> = self
            .page(&format!("/api/v1/apps/{app}/builds"), &PageQuery::default())
            .await?;
        Ok(page.items)
    }

    /// One build, with its log.
    pub async fn build(&self, id: BuildId) -> Result<Build, ClientError> {
        self.get(&format!("/api/v1/builds/{id}")).await
    }

    /// Marks an ended build bad (admin): it is never reused, and deploys of
    /// its version are refused.
    pub async fn mark_build_bad(&self, id: BuildId, reason: &str) -> Result<Build, ClientError> {
        self.post(
            &format!("/api/v1/builds/{id}/bad"),
            &crate::api::MarkBuildBad {
                reason: reason.to_string(),
            },
        )
        .await
    }

    /// A packer worker claims the oldest queued build, if any.
    pub async fn claim_build(&self, worker: &str) -> Result<Option<BuildJob>, ClientError> {
        self.post(
            "/api/v1/builds/claim",
            &ClaimBuild {
                worker: worker.to_string(),
            },
        )
        .await
    }

    /// Extends a worker's claim on a build; an error `conflict` means the
    /// claim was lost and the build must be abandoned.
    pub async fn renew_build_lease(&self, id: BuildId, worker: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .post(
                &format!("/api/v1/builds/{id}/lease"),
                &BuildWorker {
                    worker: worker.to_string(),
                },
            )
            .await?;
        Ok(())
    }

    /// Appends to a running build's log (the worker holding it).
    pub async fn append_build_log(
        &self,
        id: BuildId,
        chunk: &crate::api::BuildLogChunk,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .post(&format!("/api/v1/builds/{id}/log"), chunk)
            .await?;
        Ok(())
    }

    /// Hands a claimed build back to the queue (a worker shutting down).
    pub async fn release_build(&self, id: BuildId, worker: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .post(
                &format!("/api/v1/builds/{id}/release"),
                &BuildWorker {
                    worker: worker.to_string(),
                },
            )
            .await?;
        Ok(())
    }

    /// Streams a built artifact to AppTracker, which checks its sha256 and
    /// stores it with its signature (header `x-slipway-signature`).
    pub async fn upload_artifact(
        &self,
        id: BuildId,
        worker: &str,
        path: &std::path::Path,
        sha256: &crate::Sha256,
        signature: &crate::signing::Signature,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("/api/v1/builds/{id}/artifact"));
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Decode {
                url: url.clone(),
                reason: format!("cannot open {}: {e}", path.display()),
            })?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let req = self
            .http
            .put(&url)
            .query(&[("worker", worker)])
            .header("x-slipway-sha256", sha256.as_str())
            .header("x-slipway-signature", signature.to_string())
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        let _: serde_json::Value = self.send_within(req, Duration::from_secs(3600)).await?;
        Ok(())
    }

    /// Reports how a claimed build ended.
    pub async fn report_build(
        &self,
        id: BuildId,
        result: &BuildResult,
    ) -> Result<Build, ClientError> {
        self.post(&format!("/api/v1/builds/{id}/result"), result)
            .await
    }

    // ------------------------------------------------------------ deploys

    pub async fn create_deploy(&self, req: &CreateDeploy) -> Result<Deploy, ClientError> {
        self.post("/api/v1/deploys", req).await
    }

    /// The `limit` newest deploys, newest first.
    pub async fn deploys(&self, limit: u32) -> Result<Vec<Deploy>, ClientError> {
        self.collect("/api/v1/deploys", Some(limit as usize)).await
    }

    pub async fn deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.get(&format!("/api/v1/deploys/{id}")).await
    }

    /// The hosts a deploy to `cluster` (those matching `hosts`) would touch.
    pub async fn targets(
        &self,
        cluster: &crate::Cluster,
        hosts: Option<&crate::HostSelector>,
    ) -> Result<crate::Targets, ClientError> {
        let mut query = vec![("cluster", cluster.as_str())];
        if let Some(h) = hosts {
            query.push(("hosts", h.as_str()));
        }
        self.send(self.http.get(self.url("/api/v1/targets")).query(&query))
            .await
    }

    /// A new deploy of the same version to the hosts of `id` that failed or
    /// timed out.
    pub async fn retry_deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{id}/retry"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Puts back the version before the newest deploy of `app` to
    /// `cluster` and pins it there.
    pub async fn rollback(
        &self,
        app: &AppName,
        cluster: &crate::Cluster,
    ) -> Result<Deploy, ClientError> {
        self.rollback_confirmed(app, cluster, None).await
    }

    /// A rollback on a protected cluster, confirmed by naming it.
    pub async fn rollback_confirmed(
        &self,
        app: &AppName,
        cluster: &crate::Cluster,
        confirm: Option<&crate::Cluster>,
    ) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/apps/{app}/rollback"),
            &crate::Rollback {
                cluster: cluster.clone(),
                confirm: confirm.cloned(),
            },
        )
        .await
    }

    /// Lets a deploy waiting for a human (a manual canary) start its next
    /// batch.
    pub async fn continue_deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{id}/continue"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Every pin of every app.
    pub async fn all_pins(&self) -> Result<Vec<crate::Pin>, ClientError> {
        self.get("/api/v1/pins").await
    }

    /// Every cluster with deploy controls set.
    pub async fn clusters(&self) -> Result<Vec<crate::ClusterSettings>, ClientError> {
        self.get("/api/v1/clusters").await
    }

    /// Marks `cluster` protected (deploys must name it back) or not.
    pub async fn set_protected(
        &self,
        cluster: &crate::Cluster,
        protected: bool,
    ) -> Result<crate::ClusterSettings, ClientError> {
        self.send(
            self.http
                .put(self.url(&format!("/api/v1/clusters/{cluster}")))
                .json(&crate::SetProtected { protected }),
        )
        .await
    }

    /// No deploys to `cluster` until the freeze ends (rollbacks still go).
    pub async fn freeze(
        &self,
        cluster: &crate::Cluster,
        freeze: &crate::Freeze,
    ) -> Result<crate::ClusterSettings, ClientError> {
        self.post(&format!("/api/v1/clusters/{cluster}/freeze"), freeze)
            .await
    }

    /// Lifts a freeze; deploys queued behind it start.
    pub async fn thaw(
        &self,
        cluster: &crate::Cluster,
    ) -> Result<crate::ClusterSettings, ClientError> {
        self.send(
            self.http
                .delete(self.url(&format!("/api/v1/clusters/{cluster}/freeze"))),
        )
        .await
    }

    pub async fn pins(&self, app: &AppName) -> Result<Vec<crate::Pin>, ClientError> {
        self.collect(&format!("/api/v1/apps/{app}/pins"), None)
            .await
    }

    /// Lets deploys of other versions through again.
    pub async fn unpin(&self, app: &AppName, cluster: &crate::Cluster) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .send(
                self.http
                    .delete(self.url(&format!("/api/v1/apps/{app}/pins/{cluster}"))),
            )
            .await?;
        Ok(())
    }

    /// Stops a deploy: hosts not yet started stay untouched.
    pub async fn cancel_deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{id}/cancel"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Every phase every host of the deploy reported, oldest first.
    pub async fn deploy_events(
        &self,
        id: DeployId,
    ) -> Result<Vec<crate::HostEventRecord>, ClientError> {
        self.collect(&format!("/api/v1/deploys/{id}/events"), None)
            .await
    }

    /// Live events of one deploy: first a snapshot (one `Host` event per host
    /// and a `Status`), then every change. The stream ends after the deploy's
    /// terminal `Status`.
    pub async fn deploy_stream(
        &self,
        id: DeployId,
    ) -> Result<impl Stream<Item = Result<DeployEvent, ClientError>> + use<>, ClientError> {
        self.sse(&format!("/api/v1/deploys/{id}/stream")).await
    }

    /// A grabber reports a host's progress in a deploy.
    pub async fn host_event(
        &self,
        deploy: DeployId,
        host: &HostName,
        event: &HostEvent,
    ) -> Result<DeployHost, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{deploy}/hosts/{host}/events"),
            event,
        )
        .await
    }

    // ------------------------------------------------------------ tokens

    /// Makes a token (admin only); the answer holds the only copy of it.
    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.post("/api/v1/tokens", req).await
    }

    /// Opens a dashboard session for this client's token (people's roles
    /// only): the session id acts for the token until it expires, the token
    /// is revoked or the session is closed.
    pub async fn create_session(&self) -> Result<crate::CreatedSession, ClientError> {
        self.post("/api/v1/sessions", &serde_json::json!({})).await
    }

    /// Ends the session this client authenticates with (its token is a
    /// session id).
    pub async fn delete_session(&self) -> Result<(), ClientError> {
        self.fetch(
            self.http.delete(self.url("/api/v1/sessions/current")),
            Duration::from_secs(60),
        )
        .await?;
        Ok(())
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.collect("/api/v1/tokens", None).await
    }

    /// Revokes a token (admin); its streams end within AppTracker's
    /// `token_recheck`.
    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let mut url =
            reqwest::Url::parse(&self.url("/api/v1/tokens")).map_err(|e| ClientError::Decode {
                url: self.url("/api/v1/tokens"),
                reason: e.to_string(),
            })?;
        if let Ok(mut segments) = url.path_segments_mut() {
            // Percent-encodes whatever the name holds.
            segments.push(name);
        }
        self.fetch(self.http.delete(url), Duration::from_secs(60))
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ audit

    /// One page of state-changing requests, newest first (deployers and
    /// admins): pass the last entry's id as `before` for the next page.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        Ok(self.audit_page(query).await?.items)
    }

    /// One page of the audit log, with the cursor of the next (older) page.
    pub async fn audit_page(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, ClientError> {
        self.page("/api/v1/audit", query).await
    }

    // ------------------------------------------------------------ hosts

    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<Host, ClientError> {
        self.post("/api/v1/hosts/heartbeat", hb).await
    }

    /// Every registered host, by cluster and name.
    pub async fn hosts(&self) -> Result<Vec<Host>, ClientError> {
        self.collect("/api/v1/hosts", None).await
    }

    /// A versionchecker's report of what its host has installed and runs.
    pub async fn report(
        &self,
        report: &crate::HostReport,
    ) -> Result<crate::report::ReportReceipt, ClientError> {
        self.post("/api/v1/hosts/report", report).await
    }

    // ------------------------------------------------------------ drift

    /// What each host should run against what it reports.
    pub async fn drift(
        &self,
        query: &crate::DriftQuery,
    ) -> Result<crate::DriftReport, ClientError> {
        self.send(self.http.get(self.url("/api/v1/drift")).query(query))
            .await
    }

    /// Deploys the desired version to the hosts of `app` on `cluster`
    /// that drifted.
    pub async fn sync(&self, req: &crate::SyncRequest) -> Result<crate::SyncOutcome, ClientError> {
        self.post("/api/v1/drift/sync", req).await
    }

    pub async fn desired_state(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> Result<DesiredState, ClientError> {
        self.get(&format!("/api/v1/hosts/{cluster}/{host}/desired"))
            .await
    }

    /// The cluster's bus, relayed as server-sent events. The first item is
    /// `Sync` so a (re)connecting grabber reconciles before anything else.
    /// Malformed messages come through as `Err(Decode)` for the caller to
    /// log and skip.
    pub async fn bus_stream(
        &self,
        cluster: &Cluster,
    ) -> Result<impl Stream<Item = Result<BusMessage, ClientError>> + use<>, ClientError> {
        self.sse(&format!("/api/v1/bus/{cluster}")).await
    }

    async fn sse<T: DeserializeOwned + 'static>(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<T, ClientError>> + use<T>, ClientError> {
        let url = self.url(path);
        let resp = self
            .auth(self.http.get(&url))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|source| ClientError::transport(url.clone(), source))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.unwrap_or_default();
            let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: body
                    .as_ref()
                    .map(|b| b.code.clone())
                    .unwrap_or_else(|| "http_error".into()),
                message: body
                    .map(|b| b.message)
                    .unwrap_or_else(|| format!("GET {url} failed")),
            });
        }
        Ok(resp.bytes_stream().eventsource().filter_map(move |ev| {
            let url = url.clone();
            async move {
                match ev {
                    Ok(ev) if ev.data.is_empty() => None,
                    Ok(ev) => {
                        Some(
                            serde_json::from_str::<T>(&ev.data).map_err(|e| ClientError::Decode {
                                url,
                                reason: format!(
                                    "bad event {:?}: {e}",
                                    ev.data.chars().take(200).collect::<String>()
                                ),
                            }),
                        )
                    }
                    Err(e) => Some(Err(ClientError::Decode {
                        url,
                        reason: format!("event stream broke: {e}"),
                    })),
                }
            }
        }))
    }
}
