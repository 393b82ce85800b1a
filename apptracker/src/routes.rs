//! The HTTP API under `/api/v1`, the SSE relays, and artifact serving.
//! Handlers parse input into domain types and call the tracker.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use deploy::{
    App, AppName, Build, BuildId, BusMessage, Cluster, CreateDeploy, CreateToken, CreatedToken,
    Deploy, DeployEvent, DeployHost, DeployId, DesiredState, Heartbeat, Host, HostEvent, HostName,
    HostSelector, RegisterApp, RequestBuild, TokenInfo, Version,
};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use deploy::{
    BuildJob, BuildResult, BuildWorker, ClaimBuild, GitRef, Sha256, TriggerUrl, WebhookOutcome,
};

use crate::audit::Note;
use crate::auth::{Principal, Role};
use crate::bus::Live;
use crate::error::{ApiError, ApiJson};
use crate::store::artifact_key;
use crate::tracker::Tracker;

pub fn api(tracker: Tracker) -> Router {
    Router::new()
        .route("/api/v1/apps", post(register_app).get(list_apps))
        .route("/api/v1/apps/{app}", get(show_app))
        .route(
            "/api/v1/apps/{app}/builds",
            post(request_build).get(list_builds),
        )
        .route("/api/v1/builds/{id}", get(show_build))
        .route("/api/v1/builds/claim", post(claim_build))
        .route("/api/v1/builds/{id}/lease", post(renew_lease))
        .route("/api/v1/builds/{id}/log", post(append_build_log))
        .route("/api/v1/builds/{id}/release", post(release_build))
        .route(
            "/api/v1/builds/{id}/artifact",
            axum::routing::put(upload_artifact),
        )
        .route("/api/v1/builds/{id}/result", post(build_result))
        .route("/api/v1/deploys", post(create_deploy).get(list_deploys))
        .route("/api/v1/deploys/{id}", get(show_deploy))
        .route("/api/v1/deploys/{id}/cancel", post(cancel_deploy))
        .route("/api/v1/deploys/{id}/retry", post(retry_deploy))
        .route("/api/v1/targets", get(preview_targets))
        .route("/api/v1/apps/{app}/rollback", post(rollback_app))
        .route("/api/v1/apps/{app}/pins", get(list_pins))
        .route(
            "/api/v1/apps/{app}/pins/{cluster}",
            axum::routing::delete(delete_pin),
        )
        .route("/api/v1/deploys/{id}/events", get(deploy_events))
        .route("/api/v1/deploys/{id}/stream", get(deploy_stream))
        // A failed host's report carries up to 1 MiB of log, which JSON
        // escaping can grow: more room than the default 2 MB.
        .route(
            "/api/v1/deploys/{id}/hosts/{host}/events",
            post(host_event).layer(axum::extract::DefaultBodyLimit::max(8 << 20)),
        )
        .route("/api/v1/webhooks/{provider}", post(webhook))
        .route("/api/v1/apps/{app}/trigger", post(new_trigger))
        .route("/api/v1/trigger/{secret}", post(trigger))
        .route("/api/v1/tokens", post(create_token).get(list_tokens))
        .route("/api/v1/tokens/{name}", axum::routing::delete(delete_token))
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/hosts", get(list_hosts))
        .route("/api/v1/hosts/heartbeat", post(heartbeat))
        .route("/api/v1/hosts/{cluster}/{host}/desired", get(desired))
        .route("/api/v1/bus/{cluster}", get(bus_stream))
        .route("/artifacts/{app}/{file}", get(artifact))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::drift::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        // Last, so it wraps every route and the fallback.
        .layer(axum::middleware::from_fn_with_state(
            tracker.clone(),
            crate::audit::record,
        ))
        .with_state(tracker)
}

fn parse<T: std::str::FromStr<Err = deploy::ParseError>>(s: &str) -> Result<T, ApiError> {
    s.parse::<T>().map_err(ApiError::from)
}

// ---------------------------------------------------------------- apps

async fn register_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<RegisterApp>,
) -> Result<(StatusCode, ApiJson<App>), ApiError> {
    // Not the git URL: it may carry credentials.
    note.app(&req.name);
    note.target(format!("app {}", req.name));
    who.require(Role::Admin)?;
    if req.git_url.trim().is_empty() {
        return Err(ApiError::Invalid("`git_url` must not be empty".into()));
    }
    let branch = req
        .branch
        .unwrap_or_else(|| crate::tracker::DEFAULT_BRANCH.to_string());
    GitRef::parse(branch.as_str()).map_err(|e| ApiError::Invalid(format!("`branch`: {e}")))?;
    let app = App {
        name: req.name.clone(),
        git_url: req.git_url.clone(),
        branch,
        auto_deploy: req.auto_deploy,
        created_at: deploy::Timestamp::now(),
    };
    match t.db().insert_app(&app).await? {
        Some(app) => {
            tracing::info!(app = %app.name, "app registered");
            Ok((StatusCode::CREATED, ApiJson(app)))
        }
        None => Err(ApiError::Conflict(format!(
            "app `{}` is already registered",
            req.name
        ))),
    }
}

async fn list_apps(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<App>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.db().apps().await?))
}

async fn show_app(
    State(t): State<Tracker>,
    who: Principal,
    Path(app): Path<String>,
) -> Result<ApiJson<App>, ApiError> {
    who.require(Role::Viewer)?;
    let app: AppName = parse(&app)?;
    let found = t.db().app(&app).await?;
    found
        .map(ApiJson)
        .ok_or_else(|| ApiError::NotFound(format!("unknown app `{app}`")))
}

// ---------------------------------------------------------------- builds

async fn request_build(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<Build>), ApiError> {
    who.require(Role::Deployer)?;
    let app: AppName = parse(&app)?;
    // The body is optional: no body builds the default branch.
    let req: RequestBuild = if body.iter().all(u8::is_ascii_whitespace) {
        RequestBuild::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))?
    };
    let (build, new) = t.request_build(&app, req.git_ref.as_ref()).await?;
    note.target(format!(
        "build {} ({}) of {}{}",
        build.id,
        build.version,
        build.git_ref,
        if new { "" } else { ", reused" }
    ));
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(build)))
}

async fn list_builds(
    State(t): State<Tracker>,
    who: Principal,
    Path(app): Path<String>,
) -> Result<ApiJson<Vec<Build>>, ApiError> {
    who.require(Role::Viewer)?;
    let app: AppName = parse(&app)?;
    if t.db().app(&app).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown app `{app}`")));
    }
    let builds = t.db().builds(&app).await?;
    let mut out = Vec::with_capacity(builds.len());
    for b in builds {
        out.push(t.present_build(b).await?);
    }
    Ok(ApiJson(out))
}

async fn show_build(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<ApiJson<Build>, ApiError> {
    who.require(Role::Viewer)?;
    let id: BuildId = parse(&id)?;
    let build = t.db().build(id).await?;
    let build = build.ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
    Ok(ApiJson(t.present_build(build).await?))
}

// ---------------------------------------------------------------- build workers

async fn claim_build(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(req): ApiJson<ClaimBuild>,
) -> Result<ApiJson<Option<BuildJob>>, ApiError> {
    who.require_any_agent()?;
    let job = t.claim_build(&req.worker).await?;
    match job {
        Some(mut job) => {
            job.build = t.present_build(job.build).await?;
            Ok(ApiJson(Some(job)))
        }
        None => Ok(ApiJson(None)),
    }
}

async fn renew_lease(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<BuildWorker>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_any_agent()?;
    let id: BuildId = parse(&id)?;
    t.renew_build_lease(id, &req.worker).await?;
    Ok(ApiJson(serde_json::json!({})))
}

async fn append_build_log(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<deploy::BuildLogChunk>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_any_agent()?;
    let id: BuildId = parse(&id)?;
    t.append_build_log(id, &req.worker, &req.text).await?;
    Ok(ApiJson(serde_json::json!({})))
}

async fn release_build(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<BuildWorker>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_any_agent()?;
    let id: BuildId = parse(&id)?;
    t.release_build(id, &req.worker).await?;
    Ok(ApiJson(serde_json::json!({})))
}

#[derive(Deserialize)]
struct UploadQuery {
    worker: String,
}

async fn upload_artifact(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    who.require_any_agent()?;
    let id: BuildId = parse(&id)?;
    let sha = headers
        .get("x-slipway-sha256")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Invalid("the `x-slipway-sha256` header is required".into()))?;
    let sha: Sha256 = parse(sha)?;
    let signature = headers
        .get("x-slipway-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Invalid(
                "the `x-slipway-signature` header is required: artifacts are signed by the packer \
                 (packer worker --signing-key)"
                    .into(),
            )
        })?;
    let signature = deploy::signing::Signature::parse(signature)
        .map_err(|e| ApiError::Invalid(format!("malformed signature: {e}")))?;
    t.receive_artifact(id, &q.worker, &sha, &signature, body.into_data_stream())
        .await?;
    Ok(ApiJson(serde_json::json!({})))
}

async fn build_result(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<BuildResult>,
) -> Result<ApiJson<Build>, ApiError> {
    who.require_any_agent()?;
    let id: BuildId = parse(&id)?;
    Ok(ApiJson(
        t.finish_build(id, &req.worker, &req.outcome, &req.log)
            .await?,
    ))
}

// ---------------------------------------------------------------- deploys

async fn create_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<CreateDeploy>,
) -> Result<(StatusCode, ApiJson<Deploy>), ApiError> {
    // What was asked for, so a refusal says it too.
    let what = match (&req.version, &req.git_ref) {
        (Some(v), _) => v.to_string(),
        (None, Some(r)) => r.to_string(),
        (None, None) => "?".to_string(),
    };
    let hosts = req
        .hosts
        .as_ref()
        .map(|h| format!(" hosts ~ {h}"))
        .unwrap_or_default();
    note.app(&req.app);
    note.target(format!("{what} to {}{hosts}", req.cluster));
    who.require(Role::Deployer)?;
    let deploy = t.create_deploy(&req).await?;
    note.target(format!(
        "deploy {} of {what} to {}{hosts}",
        deploy.id, req.cluster
    ));
    Ok((StatusCode::CREATED, ApiJson(deploy)))
}

#[derive(Deserialize)]
struct ListDeploys {
    limit: Option<i64>,
}

async fn list_deploys(
    State(t): State<Tracker>,
    who: Principal,
    Query(q): Query<ListDeploys>,
) -> Result<ApiJson<Vec<Deploy>>, ApiError> {
    who.require(Role::Viewer)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(ApiJson(t.db().deploys(limit).await?))
}

async fn show_deploy(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    who.require(Role::Viewer)?;
    let id: DeployId = parse(&id)?;
    Ok(ApiJson(t.deploy(id).await?))
}

/// Back to the version before the newest deploy, everywhere it replaced
/// one; pins the app there.
async fn rollback_app(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<deploy::Rollback>,
) -> Result<ApiJson<Deploy>, ApiError> {
    let app = AppName::parse(app)?;
    note.app(&app);
    note.target(format!("rollback on {}", req.cluster));
    who.require(Role::Deployer)?;
    Ok(ApiJson(
        t.rollback_app(&app, &req.cluster, &who.name).await?,
    ))
}

async fn list_pins(
    State(t): State<Tracker>,
    who: Principal,
    Path(app): Path<String>,
) -> Result<ApiJson<Vec<deploy::Pin>>, ApiError> {
    who.require(Role::Viewer)?;
    let app = AppName::parse(app)?;
    Ok(ApiJson(t.db().pins(&app).await?))
}

async fn delete_pin(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    Path((app, cluster)): Path<(String, String)>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    let (app, cluster) = (AppName::parse(app)?, Cluster::parse(cluster)?);
    note.app(&app);
    note.target(format!("unpin on {cluster}"));
    who.require(Role::Deployer)?;
    if !t.db().delete_pin(&app, &cluster).await? {
        return Err(ApiError::NotFound(format!(
            "`{app}` is not pinned on `{cluster}`"
        )));
    }
    tracing::info!(%app, %cluster, by = %who.name, "unpinned");
    Ok(ApiJson(serde_json::json!({})))
}

#[derive(serde::Deserialize)]
struct TargetsQuery {
    cluster: String,
    hosts: Option<String>,
}

/// What a deploy to `cluster` (and `hosts`, a regex) would touch.
async fn preview_targets(
    State(t): State<Tracker>,
    who: Principal,
    Query(q): Query<TargetsQuery>,
) -> Result<ApiJson<deploy::Targets>, ApiError> {
    who.require(Role::Viewer)?;
    let cluster = Cluster::parse(q.cluster)?;
    let selector = match q.hosts {
        Some(h) => HostSelector::parse(h)?,
        None => HostSelector::all(),
    };
    Ok(ApiJson(t.targets(&cluster, &selector).await?))
}

async fn retry_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    Path(id): Path<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    let id: DeployId = parse(&id)?;
    note.target(format!("retry of deploy {id}"));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.retry_deploy(id).await?))
}

async fn cancel_deploy(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    Path(id): Path<String>,
) -> Result<ApiJson<Deploy>, ApiError> {
    let id: DeployId = parse(&id)?;
    note.target(format!("cancel of deploy {id}"));
    who.require(Role::Deployer)?;
    Ok(ApiJson(t.cancel_deploy(id).await?))
}

/// Every event the deploy's hosts reported, oldest first: when each host
/// went through each phase.
async fn deploy_events(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<ApiJson<Vec<deploy::HostEventRecord>>, ApiError> {
    who.require(Role::Viewer)?;
    let id: DeployId = parse(&id)?;
    t.deploy(id).await?;
    Ok(ApiJson(t.db().host_events(id).await?))
}

async fn host_event(
    State(t): State<Tracker>,
    who: Principal,
    Path((id, host)): Path<(String, String)>,
    ApiJson(ev): ApiJson<HostEvent>,
) -> Result<ApiJson<DeployHost>, ApiError> {
    who.require_agent(&ev.cluster)?;
    let id: DeployId = parse(&id)?;
    let host: HostName = parse(&host)?;
    Ok(ApiJson(t.host_event(id, &host, &ev).await?))
}

fn sse_event<T: serde::Serialize>(value: &T) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(value).unwrap_or_default()))
}

/// Resolves when the server stops, to end long-lived streams.
fn t_stop(t: &Tracker) -> tokio_util::sync::WaitForCancellationFutureOwned {
    t.stopping().clone().cancelled_owned()
}

/// The snapshot of a deploy as events: one per host, then its status.
fn snapshot(d: &Deploy) -> Vec<DeployEvent> {
    let mut out: Vec<DeployEvent> = d
        .hosts
        .iter()
        .map(|h| DeployEvent::Host {
            deploy_id: d.id,
            host: h.clone(),
        })
        .collect();
    out.push(DeployEvent::Status {
        deploy_id: d.id,
        status: d.status,
        version: d.version.clone(),
        error: d.error.clone(),
    });
    out
}

/// Live events of one deploy: a snapshot, then changes, ending after the
/// terminal status. Subscribes before reading the snapshot, so nothing
/// between the two is lost.
async fn deploy_stream(
    State(t): State<Tracker>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    who.require(Role::Viewer)?;
    let id: DeployId = parse(&id)?;
    let rx = t.bus().events();
    let first_tracker = t.clone();
    let first = t.deploy(id).await?;
    let done = first.status.is_terminal();
    struct S {
        rx: tokio::sync::broadcast::Receiver<Live>,
        t: Tracker,
        done: bool,
        pending: std::collections::VecDeque<DeployEvent>,
        /// The last row sent per host: re-read snapshots repeat rows the
        /// watcher already has, and those are not sent again.
        sent: std::collections::HashMap<deploy::HostName, DeployHost>,
    }
    let live = stream::unfold(
        S {
            rx,
            t,
            done,
            pending: snapshot(&first).into(),
            sent: Default::default(),
        },
        move |mut s| async move {
            loop {
                if let Some(ev) = s.pending.pop_front() {
                    if let DeployEvent::Host { host, .. } = &ev {
                        if s.sent.get(&host.host) == Some(host) {
                            continue;
                        }
                        s.sent.insert(host.host.clone(), host.clone());
                    }
                    return Some((ev, s));
                }
                if s.done {
                    return None;
                }
                match s.rx.recv().await {
                    Ok(Live::Event(ev)) => match &ev {
                        DeployEvent::Host { deploy_id, .. } if *deploy_id == id => {
                            s.pending.push_back(ev);
                        }
                        DeployEvent::Status {
                            deploy_id, status, ..
                        } if *deploy_id == id => {
                            if !status.is_terminal() {
                                return Some((ev, s));
                            }
                            // Hosts report concurrently: the last host's event
                            // may be published after the status it completed.
                            // End with the record's final rows, then the status.
                            s.done = true;
                            let d = s.t.deploy(id).await.ok()?;
                            s.pending.extend(snapshot(&d));
                        }
                        _ => {}
                    },
                    Ok(Live::Resync) | Err(RecvError::Lagged(_)) => {
                        // Fell behind: send a fresh snapshot instead.
                        let d = s.t.deploy(id).await.ok()?;
                        s.done = d.status.is_terminal();
                        s.pending.extend(snapshot(&d));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let events = live
        .map(|ev| sse_event(&ev))
        .take_until(t_stop(&first_tracker));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// ---------------------------------------------------------------- webhooks

/// VCS webhooks authenticate by their signature, not a token.
async fn webhook(
    State(t): State<Tracker>,
    note: Note,
    Path(provider): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<WebhookOutcome>), ApiError> {
    let parsed = crate::webhooks::Provider::parse(&provider).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown webhook provider `{provider}`: use github, gitlab, gitea or forgejo"
        ))
    })?;
    // The provider it claims to be; the status says whether it proved it.
    note.actor(format!("webhook:{provider}"), "webhook");
    let (status, out) = crate::webhooks::handle(&t, parsed, &headers, &body).await?;
    note.target(started(&out));
    Ok((status, ApiJson(out)))
}

/// What a webhook or trigger started, for the audit log.
fn started(out: &WebhookOutcome) -> String {
    let ids = |what: &str, ids: Vec<String>| {
        (!ids.is_empty()).then(|| format!("{what} {}", ids.join(", ")))
    };
    let parts: Vec<String> = [
        ids("builds", out.builds.iter().map(|b| b.to_string()).collect()),
        ids(
            "deploys",
            out.deploys.iter().map(|d| d.to_string()).collect(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        out.result.clone()
    } else {
        format!("{}: {}", out.result, parts.join("; "))
    }
}

async fn new_trigger(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    Path(app): Path<String>,
) -> Result<(StatusCode, ApiJson<TriggerUrl>), ApiError> {
    // Never the URL: it is the credential.
    note.target(format!("new build-trigger URL of app {app}"));
    who.require(Role::Admin)?;
    let app: AppName = parse(&app)?;
    let url = crate::webhooks::new_trigger_url(&t, &app).await?;
    tracing::info!(app = %app, by = %who.name, "build-trigger URL made");
    Ok((StatusCode::CREATED, ApiJson(TriggerUrl { url })))
}

/// The secret in the URL is the credential.
async fn trigger(
    State(t): State<Tracker>,
    note: Note,
    Path(secret): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<WebhookOutcome>), ApiError> {
    note.actor("build-trigger", "trigger");
    let req: RequestBuild = if body.iter().all(u8::is_ascii_whitespace) {
        RequestBuild::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))?
    };
    let (app, out) = crate::webhooks::trigger(&t, &secret, req.git_ref).await?;
    note.app(&app);
    note.target(started(&out));
    Ok((StatusCode::ACCEPTED, ApiJson(out)))
}

// ---------------------------------------------------------------- tokens

async fn create_token(
    State(t): State<Tracker>,
    who: Principal,
    note: Note,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, ApiJson<CreatedToken>), ApiError> {
    // The name and role, never the token the answer carries.
    let cluster = req
        .cluster
        .as_ref()
        .map(|c| format!(" of cluster {c}"))
        .unwrap_or_default();
    note.target(format!("token {} ({}{cluster})", req.name, req.role));
    who.require(Role::Admin)?;
    let token = t
        .create_token(&req.name, &req.role, req.cluster.as_ref())
        .await?;
    tracing::info!(token = %req.name, role = %req.role, by = %who.name, "token created");
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedToken {
            name: req.name,
            token,
        }),
    ))
}

async fn list_tokens(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<TokenInfo>>, ApiError> {
    who.require(Role::Admin)?;
    Ok(ApiJson(t.db().tokens().await?))
}

async fn delete_token(
    State(t): State<Tracker>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(Role::Admin)?;
    if t.db().delete_token(&name).await? {
        tracing::info!(token = %name, by = %who.name, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no token named `{name}`")))
    }
}

// ---------------------------------------------------------------- audit

/// The audit log, for deployers and admins: it shows who holds which token
/// and acts from where, more than the read-only viewers need.
async fn list_audit(
    State(t): State<Tracker>,
    who: Principal,
    Query(q): Query<deploy::AuditQuery>,
) -> Result<ApiJson<Vec<deploy::AuditEntry>>, ApiError> {
    who.require(Role::Deployer)?;
    let limit = i64::from(q.limit.unwrap_or(50).clamp(1, 500));
    let entries = t
        .db()
        .audit(limit, q.before, q.actor.as_deref(), q.app.as_ref())
        .await?;
    Ok(ApiJson(entries))
}

// ---------------------------------------------------------------- hosts

async fn heartbeat(
    State(t): State<Tracker>,
    who: Principal,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<ApiJson<Host>, ApiError> {
    who.require_agent(&hb.cluster)?;
    Ok(ApiJson(t.db().upsert_host(&hb).await?))
}

async fn list_hosts(
    State(t): State<Tracker>,
    who: Principal,
) -> Result<ApiJson<Vec<Host>>, ApiError> {
    who.require(Role::Viewer)?;
    Ok(ApiJson(t.db().hosts(None).await?))
}

async fn desired(
    State(t): State<Tracker>,
    who: Principal,
    Path((cluster, host)): Path<(String, String)>,
) -> Result<ApiJson<DesiredState>, ApiError> {
    let cluster: Cluster = parse(&cluster)?;
    who.require_agent(&cluster)?;
    let host: HostName = parse(&host)?;
    let apps = t.desired(&cluster, &host).await?;
    Ok(ApiJson(DesiredState {
        cluster,
        host,
        apps,
    }))
}

/// The cluster's bus as server-sent events: `Sync` first (so a
/// reconnecting grabber re-reads its desired state), then every message; a
/// subscriber that falls behind gets a `Sync` instead of what it missed.
async fn bus_stream(
    State(t): State<Tracker>,
    who: Principal,
    Path(cluster): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let cluster: Cluster = parse(&cluster)?;
    who.require_agent(&cluster)?;
    let rx = t.bus().subscribe();
    let live = stream::unfold((rx, cluster), |(mut rx, cluster)| async move {
        loop {
            match rx.recv().await {
                Ok((Some(c), msg)) if c == cluster => return Some((msg, (rx, cluster))),
                Ok((None, msg)) => return Some((msg, (rx, cluster))),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Some((BusMessage::Sync, (rx, cluster))),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stop = t_stop(&t);
    let events = stream::once(async { BusMessage::Sync })
        .chain(live)
        .map(|m| sse_event(&m))
        .take_until(stop);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// ---------------------------------------------------------------- artifacts

#[derive(Deserialize)]
struct Signed {
    expires: Option<i64>,
    sig: Option<String>,
}

/// Serves the local store. Only signed, unexpired URLs minted by this
/// AppTracker are honoured, so the URL alone is the credential, exactly like
/// a presigned S3 URL.
async fn artifact(
    State(t): State<Tracker>,
    Path((app, file)): Path<(String, String)>,
    Query(q): Query<Signed>,
) -> Result<Response, ApiError> {
    let Some(store) = t.local_store() else {
        return Err(ApiError::NotFound(
            "artifacts are not served from here".into(),
        ));
    };
    let app: AppName = parse(&app)?;
    // Only `<app>-<version>.tar.gz` names are served: no path tricks.
    let version = file
        .strip_suffix(".tar.gz")
        .and_then(|rest| rest.strip_prefix(app.as_str()))
        .and_then(|rest| rest.strip_prefix('-'))
        .ok_or_else(|| ApiError::NotFound(format!("no artifact `{file}`")))?;
    let version: Version = parse(version)?;
    let key = artifact_key(&app, &version);
    let (Some(expires), Some(sig)) = (q.expires, q.sig) else {
        return Err(ApiError::Forbidden(
            "artifact URLs must be signed: ask AppTracker for the host's desired state".into(),
        ));
    };
    store
        .verify(&key, expires, &sig)
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let path = store.path(&key);
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!("no artifact `{file}`")));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot open artifact").into()),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| anyhow::Error::new(e).context("cannot stat artifact"))?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}
