//! Least-privilege tokens (issue 15): builder tokens for packer workers,
//! build leases bound to the token that claimed them, artifacts measured by
//! AppTracker while they stream in, bounded uploads, the requeue limit,
//! builds marked bad, host-bound agent tokens, and event streams that end
//! when their token is revoked. Where the change is in SQL, the test runs on
//! SQLite and on PostgreSQL.

use std::path::PathBuf;
use std::time::Duration;

use deploy::signing::{Signature, SigningKey};
use deploy::{
    AppName, Build, BuildOutcome, BuildResult, BuildStatus, BuildType, Client, Cluster,
    CreateDeploy, CreateToken, DeployStatus, ErrorBody, GitRef, Heartbeat, HostEvent, HostName,
    HostPhase, HostReport, RegisterApp, RequestBuild, Sha256,
};
use futures::StreamExt;
use sha2::Digest;
use slipway_tests::{AppRepo, poll, services};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One AppTracker in this process, configured by the test.
struct Tracker {
    url: String,
    /// A client with an admin token.
    admin: Client,
    admin_token: String,
    data_dir: PathBuf,
    config: apptracker::Config,
    dir: tempfile::TempDir,
    stops: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

impl Tracker {
    /// Starts AppTracker on `database_url` (SQLite in a temporary directory
    /// when none), with `tune` applied to the test's defaults: no
    /// in-process builder, quick sweeps.
    async fn start(
        database_url: Option<String>,
        tune: impl FnOnce(&mut apptracker::Config),
    ) -> anyhow::Result<Self> {
        slipway_tests::init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("slipway-tokens-")
            .tempdir()?;
        let mut config = apptracker::Config {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.path().join("apptracker"),
            database_url,
            sweep_interval: Duration::from_millis(200),
            builder: apptracker::config::BuilderConfig::disabled(),
            ..apptracker::Config::default()
        };
        tune(&mut config);
        let app = apptracker::Application::build(config.clone()).await?;
        let url = app.base_url().to_string();
        let admin = app
            .tracker()
            .create_token("admin", "admin", None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run(stop.clone()));
        Ok(Self {
            admin: Client::new(url.clone()).with_token(admin.clone()),
            admin_token: admin,
            url,
            data_dir: config.data_dir.clone(),
            config,
            dir,
            stops: vec![(stop, task)],
        })
    }

    /// Another AppTracker on the same database and store (a replica).
    async fn replica(&mut self) -> anyhow::Result<String> {
        let config = apptracker::Config {
            listen: "127.0.0.1:0".parse()?,
            data_dir: self.dir.path().join("replica"),
            database_url: Some(self.config.database_url()),
            builder: apptracker::config::BuilderConfig::disabled(),
            ..self.config.clone()
        };
        let app = apptracker::Application::build(config).await?;
        let url = app.base_url().to_string();
        let stop = CancellationToken::new();
        self.stops.push((stop.clone(), tokio::spawn(app.run(stop))));
        Ok(url)
    }

    async fn token(&self, req: CreateToken) -> anyhow::Result<String> {
        Ok(self.admin.create_token(&req).await?.token)
    }

    fn client(&self, token: &str) -> Client {
        Client::new(self.url.clone()).with_token(token.to_string())
    }

    /// Registers a generic app (quick to build) from a fresh repository.
    async fn app(&self, name: &str, build: Option<&str>) -> anyhow::Result<AppName> {
        let repo = AppRepo::new(self.dir.path().join(format!("repo-{name}")))?;
        // A generic build needs a command.
        let build = format!("[build]\ncommand = \"{}\"\n", build.unwrap_or("true"));
        repo.commit(
            &[(
                "slipway.toml",
                &format!("type = \"generic\"\n{build}[run]\ncommand = \"sleep 1000\"\n"),
            )],
            "first",
        )?;
        let app = AppName::parse(name)?;
        self.admin
            .register_app(&RegisterApp::new(
                app.clone(),
                repo.path.display().to_string(),
            ))
            .await?;
        Ok(app)
    }

    /// Registers `host` in cluster `local` (as a grabber would), so deploys
    /// have a target.
    async fn heartbeat(&self, agent: &Client, host: &str) -> anyhow::Result<()> {
        agent.heartbeat(&heartbeat(host)?).await?;
        Ok(())
    }

    /// Files under the data directory's `tmp/` (partial uploads).
    fn tmp_files(&self) -> Vec<String> {
        files_under(&self.data_dir.join("tmp"))
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        for (stop, task) in self.stops.drain(..) {
            stop.cancel();
            tokio::time::timeout(Duration::from_secs(30), task).await???;
        }
        Ok(())
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for (stop, _) in &self.stops {
            stop.cancel();
        }
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

fn cluster() -> Cluster {
    Cluster::parse("local").expect("a valid cluster")
}

fn heartbeat(host: &str) -> anyhow::Result<Heartbeat> {
    Ok(Heartbeat {
        cluster: cluster(),
        host: HostName::parse(host)?,
        root: "/srv/slipway".into(),
        apps: vec![],
        peer: None,
    })
}

fn deploy_req(app: &AppName, version: Option<&str>, git_ref: Option<&str>) -> CreateDeploy {
    CreateDeploy {
        app: app.clone(),
        version: version.map(|v| deploy::Version::parse(v).expect("a valid version")),
        git_ref: git_ref.map(|r| GitRef::parse(r).expect("a valid ref")),
        cluster: cluster(),
        hosts: None,
        strategy: Default::default(),
        max_failures: Default::default(),
        rollback_on_failure: false,
        confirm: None,
        wait: false,
    }
}

fn sha_of(bytes: &[u8]) -> Sha256 {
    Sha256::parse(hex::encode(sha2::Sha256::digest(bytes))).expect("a sha256")
}

fn sign(b: &Build, sha: &Sha256) -> Signature {
    SigningKey::from_seed([7; 32]).sign(&b.app, &b.version, sha)
}

fn succeeded(worker: &str, sha: &Sha256, size: u64) -> BuildResult {
    BuildResult {
        worker: worker.into(),
        outcome: BuildOutcome::Succeeded {
            build_type: BuildType::Generic,
            sha256: sha.clone(),
            size,
            release_timeout_ms: None,
            author: None,
            message: None,
            watch: None,
        },
        log: format!("built by {worker}"),
    }
}

/// Uploads `bytes` as build `b`'s artifact through the typed client.
async fn upload(
    worker: &Client,
    name: &str,
    b: &Build,
    bytes: &[u8],
    dir: &std::path::Path,
) -> Result<Sha256, deploy::ClientError> {
    let sha = sha_of(bytes);
    let file = dir.join(format!("artifact-{}-{name}", b.id));
    std::fs::write(&file, bytes).expect("a temp file");
    worker
        .upload_artifact(b.id, name, &file, &sha, &sign(b, &sha))
        .await?;
    Ok(sha)
}

/// The code and message of an API error, or a panic naming what came.
fn api_error<T: std::fmt::Debug>(r: Result<T, deploy::ClientError>) -> (u16, String, String) {
    match r {
        Err(deploy::ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn claim(worker: &Client, name: &str) -> anyhow::Result<Build> {
    Ok(worker
        .claim_build(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no build to claim"))?
        .build)
}

// ------------------------------------------------------------ builder role

/// An agent token (cluster-wide or bound to a host) is refused on every
/// build-worker route, saying a builder token is needed, and changes
/// nothing; the loop covers every route the API documents as a
/// build-worker route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_are_refused_on_every_build_worker_route() -> anyhow::Result<()> {
    let t = Tracker::start(None, |_| {}).await?;
    let app = t.app("app", None).await?;
    let agent = t.token(CreateToken::agent("agent", cluster())).await?;
    let host_agent = t
        .token(CreateToken::host_agent(
            "agent-h1",
            cluster(),
            HostName::parse("h1")?,
        ))
        .await?;
    let deployer = t.token(CreateToken::new("deployer", "deployer")).await?;
    let builder = t.token(CreateToken::new("builder", "builder")).await?;
    t.admin
        .request_build(&app, &RequestBuild::default())
        .await?;
    // A second build stays queued: a claim that got through would take it.
    t.admin
        .request_build(&t.app("other", None).await?, &RequestBuild::default())
        .await?;
    let held = claim(&t.client(&builder), "w-real").await?;
    let id = held.id;
    let sha = sha_of(b"bytes");
    let sig = sign(&held, &sha).to_string();

    let routes: Vec<(&str, String)> = vec![
        ("post", "/api/v1/builds/claim".to_string()),
        ("post", "/api/v1/builds/{id}/lease".into()),
        ("post", "/api/v1/builds/{id}/log".into()),
        ("post", "/api/v1/builds/{id}/release".into()),
        ("put", "/api/v1/builds/{id}/artifact".into()),
        ("put", "/api/v1/builds/{id}/index".into()),
        ("post", "/api/v1/builds/{id}/result".into()),
    ];
    // Every build-worker route of the API document is in the loop.
    let doc: serde_json::Value = slipway_tests::http()
        .get(format!("{}/api/v1/openapi.json", t.url))
        .send()
        .await?
        .json()
        .await?;
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in ops.as_object().into_iter().flatten() {
            let tags = op["tags"].as_array().cloned().unwrap_or_default();
            if tags.iter().any(|t| t == "build workers") {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut looped: Vec<(String, String)> = routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.clone()))
        .collect();
    looped.sort();
    assert_eq!(
        looped, documented,
        "the loop covers every build-worker route"
    );

    let http = slipway_tests::http();
    for (who, token) in [
        ("agent", &agent),
        ("agent-h1", &host_agent),
        ("deployer", &deployer),
    ] {
        for (method, route) in &routes {
            let path = route.replace("{id}", &id.to_string());
            let url = format!("{}{path}", t.url);
            let req = match (*method, route.as_str()) {
                ("put", _) => http
                    .put(format!("{url}?worker=w-real"))
                    .header("x-slipway-sha256", sha.as_str())
                    .header("x-slipway-signature", &sig)
                    .body(b"bytes".to_vec()),
                (_, r) if r.ends_with("/log") => http
                    .post(&url)
                    .json(&serde_json::json!({"worker": "w-real", "text": "injected\n"})),
                (_, r) if r.ends_with("/result") => http.post(&url).json(&serde_json::json!({
                    "worker": "w-real",
                    "outcome": {"status": "failed", "error": "injected"},
                    "log": "injected"
                })),
                _ => http
                    .post(&url)
                    .json(&serde_json::json!({"worker": "w-real"})),
            };
            let r = req.bearer_auth(token).send().await?;
            assert_eq!(r.status(), 403, "{who} on {method} {route}");
            let body: ErrorBody = r.json().await?;
            assert_eq!(body.code, "forbidden", "{who} on {route}: {}", body.message);
            assert!(
                body.message.contains("builder token") && body.message.contains(who),
                "{who} on {route}: {}",
                body.message
            );
        }
    }

    // Nothing changed: the build is still the real worker's, with no
    // injected log, no artifact, and the other build is still queued.
    let now = t.admin.build(id).await?;
    assert_eq!(now.status, BuildStatus::Running);
    assert_eq!(now.worker.as_deref(), Some("w-real"));
    assert!(!now.log.contains("injected"), "{}", now.log);
    assert!(t.tmp_files().is_empty(), "{:?}", t.tmp_files());
    let other = t.admin.builds(&AppName::parse("other")?).await?;
    assert_eq!(other[0].status, BuildStatus::Queued);
    // The builder token still holds it, and is no host agent.
    t.client(&builder).renew_build_lease(id, "w-real").await?;
    let e = t.client(&builder).heartbeat(&heartbeat("h1")?).await;
    assert_eq!(api_error(e).0, 403);
    t.stop().await
}

// ------------------------------------------------------------ leases

async fn leases_belong_to_the_token_that_claimed_them(db: Option<String>) -> anyhow::Result<()> {
    let t = Tracker::start(db, |_| {}).await?;
    let app = t.app("app", None).await?;
    let a = t.client(&t.token(CreateToken::new("builder-a", "builder")).await?);
    let b = t.client(&t.token(CreateToken::new("builder-b", "builder")).await?);
    t.admin
        .request_build(&app, &RequestBuild::default())
        .await?;
    let build = claim(&a, "w-a").await?;
    let id = build.id;
    a.append_build_log(
        id,
        &deploy::BuildLogChunk {
            worker: "w-a".into(),
            text: "line from a\n".into(),
        },
    )
    .await?;
    let bytes = b"b's artifact".to_vec();
    let tmp = t.dir.path();

    // Token B, even sending A's worker name, acts on nothing of A's lease:
    // a conflict that names B itself and never A.
    let check = |what: &str, r: (u16, String, String)| {
        let (status, code, message) = r;
        assert_eq!(
            (status, code.as_str()),
            (409, "conflict"),
            "{what}: {message}"
        );
        assert!(
            message.contains(&format!(
                "build {id} is not held by worker `w-a` of token `builder-b`"
            )),
            "{what}: {message}"
        );
        assert!(
            !message.contains("builder-a"),
            "{what} names the holder: {message}"
        );
    };
    check("renew", api_error(b.renew_build_lease(id, "w-a").await));
    check(
        "log",
        api_error(
            b.append_build_log(
                id,
                &deploy::BuildLogChunk {
                    worker: "w-a".into(),
                    text: "line from b\n".into(),
                },
            )
            .await,
        ),
    );
    check(
        "upload",
        api_error(upload(&b, "w-a", &build, &bytes, tmp).await),
    );
    check(
        "result",
        api_error(
            b.report_build(id, &succeeded("w-a", &sha_of(&bytes), 12))
                .await,
        ),
    );
    check(
        "failed result",
        api_error(
            b.report_build(
                id,
                &BuildResult {
                    worker: "w-a".into(),
                    outcome: BuildOutcome::Failed {
                        error: "sabotage".into(),
                    },
                    log: String::new(),
                },
            )
            .await,
        ),
    );
    check("release", api_error(b.release_build(id, "w-a").await));
    // Nor does A's token with another worker name (another process of A).
    let (status, _, message) = api_error(a.renew_build_lease(id, "w-other").await);
    assert_eq!(status, 409, "{message}");

    // The lease route answers a stranger the same for A's build, a queued
    // build and no build at all: it tells nothing about who holds what.
    let queued = t
        .admin
        .request_build(&t.app("queued", None).await?, &RequestBuild::default())
        .await?;
    let answer = |r: Result<(), deploy::ClientError>, id: deploy::BuildId| {
        let (status, code, message) = api_error(r);
        (status, code, message.replace(&id.to_string(), "N"))
    };
    let for_held = answer(b.renew_build_lease(id, "w-a").await, id);
    let for_queued = answer(b.renew_build_lease(queued.id, "w-a").await, queued.id);
    let missing = deploy::BuildId(999_999);
    let for_missing = answer(b.renew_build_lease(missing, "w-a").await, missing);
    assert_eq!(for_held, for_queued);
    assert_eq!(for_held, for_missing);

    // A's lease is intact: A uploads, reports, and the build is A's.
    let now = t.admin.build(id).await?;
    assert_eq!(
        (now.status, now.worker.as_deref()),
        (BuildStatus::Running, Some("w-a"))
    );
    assert_eq!(now.log, "line from a\n");
    let mine = b"a's artifact".to_vec();
    let sha = upload(&a, "w-a", &build, &mine, tmp)
        .await
        .map_err(anyhow::Error::from)?;
    let done = a
        .report_build(id, &succeeded("w-a", &sha, mine.len() as u64))
        .await?;
    assert_eq!(done.status, BuildStatus::Succeeded);
    assert_eq!(done.artifact.expect("an artifact").sha256, sha);
    t.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_cannot_act_on_another_tokens_lease() -> anyhow::Result<()> {
    leases_belong_to_the_token_that_claimed_them(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_cannot_act_on_another_tokens_lease_on_postgresql() -> anyhow::Result<()> {
    let Some(db) = services::postgres().await else {
        return Ok(());
    };
    leases_belong_to_the_token_that_claimed_them(Some(db.url.clone())).await
}

/// The in-process builder is no HTTP client: it still builds, and a
/// builder token sending its worker name cannot touch its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_builder_cannot_be_impersonated() -> anyhow::Result<()> {
    let t = Tracker::start(None, |c| {
        c.builder = apptracker::config::BuilderConfig::default()
    })
    .await?;
    let app = t.app("slow", Some("echo started && sleep 3")).await?;
    let b = t.client(&t.token(CreateToken::new("builder", "builder")).await?);
    let build = t
        .admin
        .request_build(&app, &RequestBuild::default())
        .await?;
    poll(Duration::from_secs(30), || async {
        let now = t.admin.build(build.id).await?;
        Ok(now.status == BuildStatus::Running && now.log.contains("started"))
    })
    .await?;
    let name = t.admin.build(build.id).await?.worker.unwrap_or_default();
    assert!(name.starts_with("apptracker-"), "{name}");
    for r in [
        b.renew_build_lease(build.id, &name).await,
        b.release_build(build.id, &name).await,
    ] {
        assert_eq!(api_error(r).0, 409);
    }
    let r = b
        .report_build(
            build.id,
            &BuildResult {
                worker: name.clone(),
                outcome: BuildOutcome::Failed {
                    error: "sabotage".into(),
                },
                log: String::new(),
            },
        )
        .await;
    assert_eq!(api_error(r).0, 409);
    poll(Duration::from_secs(60), || async {
        Ok(t.admin.build(build.id).await?.status.is_terminal())
    })
    .await?;
    let done = t.admin.build(build.id).await?;
    assert_eq!(done.status, BuildStatus::Succeeded, "{}", done.log);
    assert_eq!(done.worker.as_deref(), Some(name.as_str()));
    t.stop().await
}

// ------------------------------------------------------------ measured artifacts

async fn results_must_match_the_measured_artifact(db: Option<String>) -> anyhow::Result<()> {
    let t = Tracker::start(db, |_| {}).await?;
    let app = t.app("app", None).await?;
    let w = t.client(&t.token(CreateToken::new("builder", "builder")).await?);
    t.admin
        .request_build(&app, &RequestBuild::default())
        .await?;
    let build = claim(&w, "w").await?;
    let bytes = b"the real artifact bytes".to_vec();
    let sha = upload(&w, "w", &build, &bytes, t.dir.path())
        .await
        .map_err(anyhow::Error::from)?;
    let size = bytes.len() as u64;

    // Another sha: refused, naming both.
    let other = sha_of(b"something else");
    let (status, code, message) = api_error(
        w.report_build(build.id, &succeeded("w", &other, size))
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (422, "artifact_mismatch"),
        "{message}"
    );
    assert!(
        message.contains(other.as_str()) && message.contains(sha.as_str()),
        "{message}"
    );
    // The right sha with another size: refused, naming both sizes.
    let (status, code, message) =
        api_error(w.report_build(build.id, &succeeded("w", &sha, 1)).await);
    assert_eq!(
        (status, code.as_str()),
        (422, "artifact_mismatch"),
        "{message}"
    );
    assert!(
        message.contains(" 1 bytes") && message.contains(&format!("{size} bytes")),
        "{message}"
    );
    let still = t.admin.build(build.id).await?;
    assert_eq!(
        still.status,
        BuildStatus::Running,
        "a refused result changes nothing"
    );
    assert!(still.artifact.is_none());

    // What was measured: accepted, and recorded.
    let done = w
        .report_build(build.id, &succeeded("w", &sha, size))
        .await?;
    assert_eq!(done.status, BuildStatus::Succeeded);
    let artifact = t
        .admin
        .build(build.id)
        .await?
        .artifact
        .expect("an artifact");
    assert_eq!((&artifact.sha256, artifact.size), (&sha, size));
    let got = slipway_tests::http()
        .get(&artifact.url)
        .send()
        .await?
        .bytes()
        .await?;
    assert_eq!(sha_of(&got), sha, "the stored bytes are the measured ones");
    t.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_sha256_differs_from_the_upload_is_refused() -> anyhow::Result<()> {
    results_must_match_the_measured_artifact(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_sha256_differs_from_the_upload_is_refused_on_postgresql()
-> anyhow::Result<()> {
    let Some(db) = services::postgres().await else {
        return Ok(());
    };
    results_must_match_the_measured_artifact(Some(db.url.clone())).await
}

// ------------------------------------------------------------ bounded uploads

/// Sends an HTTP/1.1 request by hand (`Connection: close`): `head` is the
/// request line and headers, `body` what follows (possibly not all the
/// body the headers announce). Returns the status and the response body.
async fn raw_http(url: &str, head: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(head.as_bytes()).await?;
    // The server may answer (and close) before it wants the rest.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await??;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The request head of an artifact upload.
fn upload_head(url: &str, b: &Build, token: &str, sha: &Sha256, framing: &str) -> String {
    format!(
        "PUT /api/v1/builds/{}/artifact?worker=w HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         x-slipway-sha256: {sha}\r\nx-slipway-signature: {}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n{framing}\r\n",
        b.id,
        url.trim_start_matches("http://"),
        sign(b, sha)
    )
}

/// Uploads over `max_artifact_size` (declared, or streamed without a
/// length) are cut off with 413, an upload that stalls with 408, and
/// nothing is left behind: no temporary file, nothing recorded. The caller
/// checks its store.
async fn oversized_uploads_leave_nothing(
    t: &Tracker,
    token: &str,
    build: &Build,
    cap: u64,
) -> anyhow::Result<()> {
    let over = vec![b'x'; cap as usize + 1];
    let sha = sha_of(&over);
    let expect = |what: &str, (status, body): (u16, String), want: u16, code: &str| {
        assert_eq!(status, want, "{what}: {body}");
        let err: ErrorBody = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(err.code, code, "{what}: {}", err.message);
        assert!(
            err.message.contains("nothing was kept"),
            "{what}: {}",
            err.message
        );
    };
    // Declared too large: refused before a byte is read.
    let head = upload_head(
        &t.url,
        build,
        token,
        &sha,
        &format!("Content-Length: {}\r\n", cap + 1),
    );
    let r = raw_http(&t.url, &head, b"").await?;
    expect("declared", r, 413, "payload_too_large");
    assert!(t.tmp_files().is_empty(), "{:?}", t.tmp_files());
    // Streamed without a length: cut off at the byte past the cap.
    let head = upload_head(&t.url, build, token, &sha, "Transfer-Encoding: chunked\r\n");
    let mut body = format!("{:x}\r\n", over.len()).into_bytes();
    body.extend_from_slice(&over);
    let r = raw_http(&t.url, &head, &body).await?;
    expect("streamed", r, 413, "payload_too_large");
    assert!(t.tmp_files().is_empty(), "{:?}", t.tmp_files());
    // A stalled upload: given up after the idle timeout.
    let part = vec![b'y'; 1000];
    let mut body = format!("{:x}\r\n", 10_000).into_bytes();
    body.extend_from_slice(&part);
    let r = raw_http(&t.url, &head, &body).await?;
    expect("stalled", r, 408, "request_timeout");
    assert!(t.tmp_files().is_empty(), "{:?}", t.tmp_files());
    // None of it was stored: the build has no upload to report.
    let r = t
        .client(token)
        .report_build(build.id, &succeeded("w", &sha, cap + 1))
        .await;
    let (status, _, message) = api_error(r);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("no signed artifact"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_is_cut_off_with_413_and_leaves_nothing() -> anyhow::Result<()> {
    let cap = 256 * 1024;
    let t = Tracker::start(None, |c| {
        c.max_artifact_size = apptracker::config::ByteSize(cap);
        c.upload_idle_timeout = Duration::from_secs(1);
    })
    .await?;
    let app = t.app("app", None).await?;
    let token = t.token(CreateToken::new("builder", "builder")).await?;
    t.admin
        .request_build(&app, &RequestBuild::default())
        .await?;
    let build = claim(&t.client(&token), "w").await?;
    oversized_uploads_leave_nothing(&t, &token, &build, cap).await?;
    let stored = t
        .data_dir
        .join("artifacts/app")
        .join(format!("app-{}.tar.gz", build.version));
    assert!(!stored.exists(), "nothing stored");
    assert!(files_under(&t.data_dir.join("artifacts")).is_empty());
    // Within the cap, the same build uploads fine.
    let ok = vec![b'z'; cap as usize];
    upload(&t.client(&token), "w", &build, &ok, t.dir.path())
        .await
        .map_err(anyhow::Error::from)?;
    assert!(stored.is_file());
    assert!(t.tmp_files().is_empty(), "{:?}", t.tmp_files());
    t.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_leaves_nothing_in_s3() -> anyhow::Result<()> {
    use apptracker::store::ArtifactStore;
    let Some(s3) = services::s3().await else {
        return Ok(());
    };
    let s3_config = s3.config();
    let cap = 256 * 1024;
    let t = Tracker::start(None, |c| {
        c.max_artifact_size = apptracker::config::ByteSize(cap);
        c.upload_idle_timeout = Duration::from_secs(1);
        c.s3 = Some(s3_config.clone());
    })
    .await?;
    let app = t.app("app", None).await?;
    let token = t.token(CreateToken::new("builder", "builder")).await?;
    t.admin
        .request_build(&app, &RequestBuild::default())
        .await?;
    let build = claim(&t.client(&token), "w").await?;
    oversized_uploads_leave_nothing(&t, &token, &build, cap).await?;
    let store = apptracker::store::S3Store::connect(&s3_config, Duration::from_secs(60)).await?;
    let key = format!("app/app-{}.tar.gz", build.version);
    let url = store.download_url(&key).await?;
    assert_eq!(
        slipway_tests::http().get(&url).send().await?.status(),
        404,
        "no object in the bucket"
    );
    // Within the cap: stored (a multipart upload, past 8 MiB, is not
    // needed to show the bucket is checked).
    let ok = vec![b'z'; cap as usize];
    upload(&t.client(&token), "w", &build, &ok, t.dir.path())
        .await
        .map_err(anyhow::Error::from)?;
    assert_eq!(slipway_tests::http().get(&url).send().await?.status(), 200);
    assert!(t.tmp_files().is_empty(), "{:?}", t.tmp_files());
    t.stop().await
}

// ------------------------------------------------------------ requeue limit

async fn requeued_builds_fail_past_the_limit(db: Option<String>) -> anyhow::Result<()> {
    let t = Tracker::start(db, |c| {
        c.build_lease = Duration::from_secs(1);
        c.max_build_requeues = 1;
    })
    .await?;
    let app = t.app("app", None).await?;
    let agent = t.client(&t.token(CreateToken::agent("agent", cluster())).await?);
    t.heartbeat(&agent, "h1").await?;
    let w = t.client(&t.token(CreateToken::new("builder", "builder")).await?);
    let d = t
        .admin
        .create_deploy(&deploy_req(&app, None, Some("main")))
        .await?;
    assert_eq!(d.status, DeployStatus::Building);
    let id = d.build_id.expect("a build");

    // A worker that claims and never renews nor reports (it crashed, or
    // its result was refused), twice: requeued once, then failed.
    let b = claim(&w, "w").await?;
    assert_eq!(b.id, id);
    poll(Duration::from_secs(30), || async {
        Ok(t.admin.build(id).await?.status == BuildStatus::Queued)
    })
    .await?;
    claim(&w, "w").await?;
    poll(Duration::from_secs(30), || async {
        Ok(t.admin.build(id).await?.status == BuildStatus::Failed)
    })
    .await?;
    let failed = t.admin.build(id).await?;
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("lease ran out 2 times") && error.contains("max_build_requeues = 1"),
        "{error}"
    );
    // Its deploy fails with the reason instead of staying `building`.
    poll(Duration::from_secs(30), || async {
        Ok(t.admin.deploy(d.id).await?.status.is_terminal())
    })
    .await?;
    let d = t.admin.deploy(d.id).await?;
    assert_eq!(d.status, DeployStatus::Failed);
    assert!(
        d.error
            .as_deref()
            .unwrap_or("")
            .contains("lease ran out 2 times"),
        "{:?}",
        d.error
    );
    // It stays failed: nothing claims it again.
    assert!(w.claim_build("w").await?.is_none());
    t.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_requeued_past_the_limit_fails_and_so_does_its_deploy() -> anyhow::Result<()> {
    requeued_builds_fail_past_the_limit(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_requeued_past_the_limit_fails_on_postgresql() -> anyhow::Result<()> {
    let Some(db) = services::postgres().await else {
        return Ok(());
    };
    requeued_builds_fail_past_the_limit(Some(db.url.clone())).await
}

// ------------------------------------------------------------ bad builds

async fn bad_builds_are_rebuilt(db: Option<String>) -> anyhow::Result<()> {
    let t = Tracker::start(db, |c| {
        c.builder = apptracker::config::BuilderConfig::default()
    })
    .await?;
    let app = t.app("app", None).await?;
    let agent = t.client(&t.token(CreateToken::agent("agent", cluster())).await?);
    t.heartbeat(&agent, "h1").await?;
    let deployer = t.client(&t.token(CreateToken::new("deployer", "deployer")).await?);
    let built = |id| {
        let admin = t.admin.clone();
        async move {
            poll(Duration::from_secs(60), || async {
                Ok(admin.build(id).await?.status.is_terminal())
            })
            .await?;
            let b = admin.build(id).await?;
            anyhow::ensure!(b.status == BuildStatus::Succeeded, "{}", b.log);
            anyhow::Ok(b)
        }
    };

    let first = deployer
        .create_deploy(&deploy_req(&app, None, Some("main")))
        .await?;
    let old = built(first.build_id.expect("a build")).await?;
    // Nobody runs h1: the deploy waits for it, so end it.
    deployer.cancel_deploy(first.id).await?;

    // Only admins mark builds bad, and a reason is needed.
    let e = deployer.mark_build_bad(old.id, "broken").await;
    assert_eq!(api_error(e).0, 403);
    let e = t.admin.mark_build_bad(old.id, " ").await;
    assert_eq!(api_error(e).0, 400);
    let marked = t.admin.mark_build_bad(old.id, "segfaults at start").await?;
    let bad = marked.bad.expect("marked");
    assert_eq!(
        (bad.by.as_str(), bad.reason.as_str()),
        ("admin", "segfaults at start")
    );
    // Audited: who marked which build.
    let audit = t.admin.audit(&deploy::AuditQuery::default()).await?;
    assert!(
        audit
            .iter()
            .any(|e| e.route.as_deref() == Some("/api/v1/builds/{id}/bad")
                && e.actor == "admin"
                && e.target
                    .as_deref()
                    .unwrap_or("")
                    .contains(old.version.as_str())),
        "{audit:#?}"
    );

    // Its version is refused, saying why.
    let e = deployer
        .create_deploy(&deploy_req(&app, Some(old.version.as_str()), None))
        .await;
    let (status, code, message) = api_error(e);
    assert_eq!(
        (status, code.as_str()),
        (422, "build_marked_bad"),
        "{message}"
    );
    assert!(
        message.contains("segfaults at start") && message.contains("admin"),
        "{message}"
    );

    // The next deploy by ref builds its commit again.
    let again = deployer
        .create_deploy(&deploy_req(&app, None, Some("main")))
        .await?;
    let new = built(again.build_id.expect("a build")).await?;
    assert_ne!(new.id, old.id);
    assert_ne!(new.version, old.version);
    assert_eq!(new.commit, old.commit);
    assert!(new.bad.is_none());
    // And a build request reuses the new one, never the bad one.
    let reused = deployer
        .request_build(&app, &RequestBuild::default())
        .await?;
    assert_eq!(reused.id, new.id);
    t.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_marked_bad_is_rebuilt_on_the_next_deploy_by_ref() -> anyhow::Result<()> {
    bad_builds_are_rebuilt(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_marked_bad_is_rebuilt_on_postgresql() -> anyhow::Result<()> {
    let Some(db) = services::postgres().await else {
        return Ok(());
    };
    bad_builds_are_rebuilt(Some(db.url.clone())).await
}

// ------------------------------------------------------------ host tokens

async fn host_tokens_report_for_their_host_only(db: Option<String>) -> anyhow::Result<()> {
    let t = Tracker::start(db, |c| {
        c.builder = apptracker::config::BuilderConfig::default()
    })
    .await?;
    let (h1, h2) = (HostName::parse("h1")?, HostName::parse("h2")?);
    // A host token needs an agent role and a cluster.
    for (req, why) in [
        (
            CreateToken {
                host: Some(h1.clone()),
                ..CreateToken::new("x", "viewer")
            },
            "only agent tokens have a `host`",
        ),
        (
            CreateToken {
                host: Some(h1.clone()),
                ..CreateToken::new("x", "agent")
            },
            "needs a `cluster`",
        ),
    ] {
        let (status, _, message) = api_error(t.admin.create_token(&req).await);
        assert_eq!(status, 400, "{message}");
        assert!(message.contains(why), "{message}");
    }
    let cluster_agent = t.client(&t.token(CreateToken::agent("agent", cluster())).await?);
    let h1_agent = t.client(
        &t.token(CreateToken::host_agent("agent-h1", cluster(), h1.clone()))
            .await?,
    );
    let listed = t.admin.tokens().await?;
    let info = listed
        .iter()
        .find(|i| i.name == "agent-h1")
        .expect("listed");
    assert_eq!(info.host.as_ref(), Some(&h1));

    // Its own host: everything works.
    t.heartbeat(&h1_agent, "h1").await?;
    t.heartbeat(&cluster_agent, "h2").await?;
    let app = t.app("app", None).await?;
    let d = t
        .admin
        .create_deploy(&deploy_req(&app, None, Some("main")))
        .await?;
    poll(Duration::from_secs(60), || async {
        Ok(t.admin.deploy(d.id).await?.status == DeployStatus::Running)
    })
    .await?;
    h1_agent.desired_state(&cluster(), &h1).await?;
    let report = |host: &HostName| HostReport {
        cluster: cluster(),
        host: host.clone(),
        interval_ms: 60_000,
        age_ms: 0,
        agent: "test".into(),
        disk: None,
        apps: vec![],
    };
    h1_agent.report(&report(&h1)).await?;
    let event = HostEvent {
        cluster: cluster(),
        phase: HostPhase::Downloading,
        failed_phase: None,
        rolled_back: false,
        message: None,
        log_tail: None,
        transfer: None,
    };
    h1_agent.host_event(d.id, &h1, &event).await?;

    // Another host: refused on every agent route, naming both hosts.
    let done = HostEvent {
        phase: HostPhase::Done,
        ..event.clone()
    };
    let refusals = [
        (
            "heartbeat",
            api_error(h1_agent.heartbeat(&heartbeat("h2")?).await),
        ),
        (
            "ghost heartbeat",
            api_error(h1_agent.heartbeat(&heartbeat("ghost")?).await),
        ),
        ("report", api_error(h1_agent.report(&report(&h2)).await)),
        (
            "desired",
            api_error(h1_agent.desired_state(&cluster(), &h2).await),
        ),
        (
            "events",
            api_error(h1_agent.host_event(d.id, &h2, &done).await),
        ),
    ];
    for (what, (status, code, message)) in refusals {
        assert_eq!(
            (status, code.as_str()),
            (403, "forbidden"),
            "{what}: {message}"
        );
        assert!(
            message.contains("`h1`") && (message.contains("`h2`") || message.contains("`ghost`")),
            "{what}: {message}"
        );
    }
    // Nothing changed for h2, and no phantom host was registered.
    let now = t.admin.deploy(d.id).await?;
    let h2_row = now
        .hosts
        .iter()
        .find(|h| h.host == h2)
        .expect("h2 is targeted");
    assert_eq!(h2_row.phase, HostPhase::Pending);
    let hosts: Vec<String> = t
        .admin
        .hosts()
        .await?
        .into_iter()
        .map(|h| h.name.to_string())
        .collect();
    assert_eq!(hosts, ["h1", "h2"]);

    // Free text is capped on the server (the first 16 KiB of `message`, the
    // last 1 MiB of `log_tail`), and once h1 has ended in this deploy its
    // events change nothing and are not kept.
    let huge = HostEvent {
        phase: HostPhase::Failed,
        failed_phase: Some(HostPhase::Starting),
        message: Some(format!("{}END", "m".repeat(100_000))),
        log_tail: Some(format!("START{}", "l".repeat(3 << 20))),
        ..event.clone()
    };
    let row = h1_agent.host_event(d.id, &h1, &huge).await?;
    assert_eq!(row.phase, HostPhase::Failed);
    let message = row.message.unwrap_or_default();
    assert!(
        message.len() < 17 << 10 && message.ends_with("bytes dropped)"),
        "{}",
        message.len()
    );
    let tail = row.log_tail.unwrap_or_default();
    assert!(
        tail.len() < (1 << 20) + 100 && !tail.contains("START"),
        "{}",
        tail.len()
    );
    assert!(
        tail.ends_with('l') && tail.starts_with('('),
        "{}",
        &tail[..40]
    );
    let kept = t.admin.deploy_events(d.id).await?.len();
    for phase in [HostPhase::Skipped, HostPhase::Done] {
        let row = h1_agent
            .host_event(
                d.id,
                &h1,
                &HostEvent {
                    phase,
                    ..event.clone()
                },
            )
            .await?;
        assert_eq!(row.phase, HostPhase::Failed, "a terminal row stays");
    }
    assert_eq!(
        t.admin.deploy_events(d.id).await?.len(),
        kept,
        "no history for an ended host"
    );

    // A cluster-wide agent token still reports for any host (the weaker
    // option, documented as such).
    cluster_agent.host_event(d.id, &h2, &event).await?;
    cluster_agent.desired_state(&cluster(), &h1).await?;
    t.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_token_is_refused_for_another_host() -> anyhow::Result<()> {
    host_tokens_report_for_their_host_only(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_token_is_refused_for_another_host_on_postgresql() -> anyhow::Result<()> {
    let Some(db) = services::postgres().await else {
        return Ok(());
    };
    host_tokens_report_for_their_host_only(Some(db.url.clone())).await
}

// ------------------------------------------------------------ streams

/// Waits for a stream to end (a deadline, not a timing assertion: the
/// stream must end within the re-check interval, and a broken one would
/// hang until the deadline).
async fn ends<S: futures::Stream + Unpin>(mut s: S, what: &str) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), async {
        while s.next().await.is_some() {}
    })
    .await
    .map_err(|_| anyhow::anyhow!("{what}: the stream did not end after its token was revoked"))
}

/// The bus relay and a deploy stream end when their token is revoked:
/// through another replica (seen at the next `token_recheck`), or through
/// the replica serving the stream (at once). A stream whose token stays
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_tokens_event_streams_end() -> anyhow::Result<()> {
    let mut t = Tracker::start(None, |c| c.token_recheck = Duration::from_secs(1)).await?;
    let replica = t.replica().await?;
    let other = Client::new(replica).with_token(t.admin_token.clone());
    let app = t.app("app", None).await?;
    let agent = t.client(&t.token(CreateToken::agent("agent", cluster())).await?);
    t.heartbeat(&agent, "h1").await?;
    // No builder: the deploy stays `building`, its stream open.
    let d = t
        .admin
        .create_deploy(&deploy_req(&app, None, Some("main")))
        .await?;
    let viewer = t.client(&t.token(CreateToken::new("viewer", "viewer")).await?);
    let kept = t.client(&t.token(CreateToken::new("kept", "viewer")).await?);
    let agent2 = t.client(&t.token(CreateToken::agent("agent-2", cluster())).await?);

    let mut bus = Box::pin(agent.bus_stream(&cluster()).await?);
    assert!(matches!(
        bus.next().await,
        Some(Ok(deploy::BusMessage::Sync))
    ));
    let mut deploy_events = Box::pin(viewer.deploy_stream(d.id).await?);
    assert!(
        deploy_events.next().await.is_some(),
        "the snapshot comes first"
    );
    let mut bus2 = Box::pin(agent2.bus_stream(&cluster()).await?);
    assert!(bus2.next().await.is_some());
    let mut kept_events = Box::pin(kept.deploy_stream(d.id).await?);
    assert!(kept_events.next().await.is_some());

    // Revoked through the other replica: this one finds out on its own.
    other.revoke_token("agent").await?;
    other.revoke_token("viewer").await?;
    ends(&mut bus, "bus, revoked elsewhere").await?;
    ends(&mut deploy_events, "deploy stream, revoked elsewhere").await?;
    // Revoked here.
    t.admin.revoke_token("agent-2").await?;
    ends(&mut bus2, "bus, revoked here").await?;
    // The revoked tokens are refused a new stream.
    let e = agent.bus_stream(&cluster()).await.err().expect("refused");
    assert_eq!(e.code(), Some("unauthorized"));
    // The stream of a token that was not revoked is still open: it gets
    // the deploy's end.
    t.admin.cancel_deploy(d.id).await?;
    let mut saw_end = false;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = kept_events.next().await {
            if let Ok(deploy::DeployEvent::Status { status, .. }) = ev
                && status.is_terminal()
            {
                saw_end = true;
            }
        }
    })
    .await?;
    assert!(
        saw_end,
        "a kept token's stream carries the deploy to its end"
    );
    t.stop().await
}
