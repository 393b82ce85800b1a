//! The audit log: every state-changing request is recorded with who made it
//! (the token's name, never the token), what it asked for, from where and
//! how it ended; agent traffic is not; pages are disjoint and in order. The
//! same on SQLite and PostgreSQL.

use deploy::{
    AuditEntry, AuditQuery, ClaimBuild, Client, CreateDeploy, CreateToken, DeployStatus, GitRef,
    Heartbeat, HostName, HostSelector, Timestamp,
};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use slipway_tests::{AppRepo, Platform, commit_hello, platform};
use sqlx::Row;

async fn token(p: &Platform, name: &str, role: &str) -> anyhow::Result<String> {
    Ok(p.client
        .create_token(&CreateToken {
            name: name.into(),
            role: role.into(),
            cluster: None,
            host: None,
        })
        .await?
        .token)
}

/// Every entry, newest first, in one page.
async fn all(p: &Platform) -> anyhow::Result<Vec<AuditEntry>> {
    Ok(p.client
        .audit(&AuditQuery {
            limit: Some(500),
            ..AuditQuery::default()
        })
        .await?)
}

/// The one entry of `method route` by `actor` with `status`.
fn find<'a>(
    entries: &'a [AuditEntry],
    actor: &str,
    method: &str,
    route: &str,
    status: u16,
) -> &'a AuditEntry {
    let found: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| {
            e.actor == actor
                && e.method == method
                && e.route.as_deref() == Some(route)
                && e.status == status
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {method} {route} by {actor} ({status}) in {entries:#?}"
    );
    found[0]
}

/// The text of every audit row as stored, every column joined.
async fn stored_rows(database_url: &str) -> anyhow::Result<Vec<String>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await?;
    let rows = sqlx::query(
        "SELECT CAST(id AS TEXT) || '|' || CAST(at AS TEXT) || '|' || actor || '|' || \
         COALESCE(role, '') || '|' || method || '|' || COALESCE(route, '') || '|' || path || '|' || \
         COALESCE(app, '') || '|' || COALESCE(target, '') || '|' || COALESCE(peer, '') || '|' || \
         CAST(status AS TEXT) || '|' || COALESCE(error_code, '') FROM audit_log",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
}

async fn changes_are_recorded(p: &Platform, database_url: &str) -> anyhow::Result<()> {
    let started = Timestamp::now();
    let http = slipway_tests::http();
    let url = |path: &str| format!("{}{path}", p.base_url);
    // Worker traffic, which is not recorded: a packer worker's claim poll
    // (first, while nothing is queued, so it claims nothing).
    let builder = token(p, "packer-workers", "builder").await?;
    let r = http
        .post(url("/api/v1/builds/claim"))
        .bearer_auth(&builder)
        .json(&ClaimBuild {
            worker: "w".into(),
            roots: true,
        })
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert!(r.json::<Option<deploy::BuildJob>>().await?.is_none());
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let deployer = token(p, "ops-deployer", "deployer").await?;
    let viewer = token(p, "ops-viewer", "viewer").await?;
    let as_deployer = Client::new(p.base_url.clone()).with_token(deployer.clone());
    let as_viewer = Client::new(p.base_url.clone()).with_token(viewer.clone());
    let as_agent = Client::new(p.base_url.clone()).with_token(p.agent_token.clone());
    let deploy = |hosts: Option<&str>| -> anyhow::Result<CreateDeploy> {
        Ok(CreateDeploy {
            app: app.clone(),
            version: None,
            git_ref: Some(GitRef::parse("main")?),
            cluster: p.cluster.clone(),
            hosts: hosts.map(HostSelector::parse).transpose()?,
            strategy: Default::default(),
            max_failures: Default::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
    };

    // Refused: a viewer may not deploy (403), no host matches (422), no
    // token at all (401).
    let e = as_viewer
        .create_deploy(&deploy(None)?)
        .await
        .expect_err("a viewer may not deploy");
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let e = as_deployer
        .create_deploy(&deploy(Some("nowhere-.*"))?)
        .await
        .expect_err("no host matches");
    assert_eq!(e.code(), Some("no_matching_hosts"), "{e}");
    let r = http
        .post(url("/api/v1/deploys"))
        .json(&json!({"app": "hello", "git_ref": "main", "cluster": "local"}))
        .send()
        .await?;
    assert_eq!(r.status(), 401);

    // A deploy that runs to the end: its hosts report events all along.
    let d = as_deployer.create_deploy(&deploy(None)?).await?;
    assert_eq!(p.wait_deploy(d.id).await?.status, DeployStatus::Succeeded);

    // And a heartbeat.
    as_agent
        .heartbeat(&Heartbeat {
            cluster: p.cluster.clone(),
            host: HostName::parse("local-1")?,
            root: p.host("local-1").root.display().to_string(),
            apps: vec![],
            peer: None,
        })
        .await?;

    // A build-trigger URL: the secret in its path is never recorded, nor
    // when the URL is mistyped and matches no route.
    let r = http
        .post(url("/api/v1/apps/hello/trigger"))
        .bearer_auth(&p.admin_token)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let trigger: deploy::TriggerUrl = r.json().await?;
    assert_eq!(http.post(&trigger.url).send().await?.status(), 202);
    let r = http.post(format!("{}/", trigger.url)).send().await?;
    assert_eq!(r.status(), 404);
    // Webhooks act as their provider, proven or not; making the app's
    // secret is recorded, the secret never.
    let hook = p
        .client
        .set_webhook_secret(
            &app,
            deploy::WebhookProvider::GitHub,
            &deploy::SetWebhookSecret::default(),
        )
        .await?;
    let ping = |signature: String| {
        http.post(url("/api/v1/webhooks/github/hello"))
            .header("x-github-event", "ping")
            .header("x-hub-signature-256", signature)
            .body("{}")
            .send()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(hook.secret.as_bytes())?;
    mac.update(b"{}");
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(ping(good).await?.status(), 200);
    assert_eq!(
        ping(format!("sha256={}", "0".repeat(64))).await?.status(),
        401
    );
    let secret = trigger
        .url
        .rsplit('/')
        .next()
        .expect("a secret")
        .to_string();

    // Only deployers and admins read the log.
    let e = as_viewer
        .audit(&AuditQuery::default())
        .await
        .expect_err("a viewer may not read the log");
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    as_deployer.audit(&AuditQuery::default()).await?;

    let entries = all(p).await?;
    let now = Timestamp::now();
    for e in &entries {
        assert!(started <= e.at && e.at <= now, "{e:?}");
        assert_eq!(e.peer.as_deref(), Some("127.0.0.1"), "{e:?}");
    }

    let e = find(&entries, "test-admin", "POST", "/api/v1/apps", 201);
    assert_eq!(e.role.as_deref(), Some("admin"));
    assert_eq!(e.app.as_ref(), Some(&app));
    assert_eq!(e.target.as_deref(), Some("app hello"));
    let mut tokens: Vec<&str> = entries
        .iter()
        .filter(|e| e.route.as_deref() == Some("/api/v1/tokens"))
        .map(|e| {
            assert_eq!((e.actor.as_str(), e.status), ("test-admin", 201), "{e:?}");
            e.target.as_deref().unwrap_or("")
        })
        .collect();
    tokens.sort();
    assert_eq!(
        tokens,
        [
            "token ops-deployer (deployer)",
            "token ops-viewer (viewer)",
            "token packer-workers (builder)"
        ]
    );

    let e = find(&entries, "ops-viewer", "POST", "/api/v1/deploys", 403);
    assert_eq!(e.role.as_deref(), Some("viewer"));
    assert_eq!(e.error_code.as_deref(), Some("forbidden"));
    assert_eq!(e.app.as_ref(), Some(&app));
    assert_eq!(e.target.as_deref(), Some("main to local"));
    let e = find(&entries, "ops-deployer", "POST", "/api/v1/deploys", 422);
    assert_eq!(e.error_code.as_deref(), Some("no_matching_hosts"));
    assert_eq!(
        e.target.as_deref(),
        Some("main to local hosts ~ nowhere-.*")
    );
    let e = find(&entries, "anonymous", "POST", "/api/v1/deploys", 401);
    assert_eq!(
        (e.role.as_deref(), e.error_code.as_deref()),
        (None, Some("unauthorized"))
    );
    let e = find(&entries, "ops-deployer", "POST", "/api/v1/deploys", 201);
    assert_eq!(e.role.as_deref(), Some("deployer"));
    assert_eq!(e.path, "/api/v1/deploys");
    assert_eq!(e.error_code, None);
    assert_eq!(
        e.target.as_deref(),
        Some(format!("deploy {} of main to local", d.id).as_str())
    );

    let e = find(
        &entries,
        "test-admin",
        "POST",
        "/api/v1/apps/{app}/trigger",
        201,
    );
    assert_eq!(e.path, "/api/v1/apps/hello/trigger");
    let e = find(
        &entries,
        "build-trigger",
        "POST",
        "/api/v1/trigger/{secret}",
        202,
    );
    assert_eq!(e.path, "/api/v1/trigger/{secret}");
    assert_eq!(e.app.as_ref(), Some(&app));
    assert!(
        e.target
            .as_deref()
            .is_some_and(|t| t.starts_with("built: builds ")),
        "{e:?}"
    );
    let e = find(
        &entries,
        "test-admin",
        "POST",
        "/api/v1/apps/{app}/webhook-secrets/{provider}",
        201,
    );
    assert_eq!(
        (e.app.as_ref(), e.target.as_deref()),
        (Some(&app), Some("github webhook secret of app hello: made"))
    );
    let e = find(
        &entries,
        "webhook:github",
        "POST",
        "/api/v1/webhooks/{provider}/{app}",
        200,
    );
    assert_eq!(
        (e.role.as_deref(), e.target.as_deref(), e.app.as_ref()),
        (Some("webhook"), Some("pong"), Some(&app))
    );
    let e = find(
        &entries,
        "webhook:github",
        "POST",
        "/api/v1/webhooks/{provider}/{app}",
        401,
    );
    assert_eq!(e.error_code.as_deref(), Some("unauthorized"));
    let e = entries
        .iter()
        .find(|e| e.route.is_none())
        .expect("the mistyped trigger URL");
    assert_eq!(
        (e.status, e.path.as_str()),
        (404, "/api/v1/trigger/slp_***/")
    );

    // The agents' protocol is left out, though it happened.
    for route in [
        "/api/v1/hosts/heartbeat",
        "/api/v1/deploys/{id}/hosts/{host}/events",
        "/api/v1/builds/claim",
    ] {
        assert!(
            !entries.iter().any(|e| e.route.as_deref() == Some(route)),
            "{route} recorded: {entries:#?}"
        );
    }
    assert!(!p.client.deploy(d.id).await?.hosts.is_empty());
    // Reads are not changes.
    assert!(entries.iter().all(|e| e.method != "GET"), "{entries:#?}");

    // Filters.
    let mine = p
        .client
        .audit(&AuditQuery {
            actor: Some("ops-viewer".into()),
            ..AuditQuery::default()
        })
        .await?;
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0].status, 403);
    let of_app = p
        .client
        .audit(&AuditQuery {
            app: Some(app.clone()),
            limit: Some(500),
            ..AuditQuery::default()
        })
        .await?;
    assert!(of_app.iter().all(|e| e.app.as_ref() == Some(&app)));
    assert_eq!(
        of_app.len(),
        entries
            .iter()
            .filter(|e| e.app.as_ref() == Some(&app))
            .count()
    );
    assert!(of_app.len() >= 6, "{of_app:#?}");

    // Pages of 3 are disjoint, newest first, and together are everything.
    assert!(entries.len() > 7, "enough for several pages: {entries:#?}");
    let mut paged: Vec<AuditEntry> = Vec::new();
    let mut before = None;
    loop {
        let page = p
            .client
            .audit(&AuditQuery {
                limit: Some(3),
                before,
                ..AuditQuery::default()
            })
            .await?;
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        paged.extend(page);
    }
    assert_eq!(paged, entries);
    assert!(
        paged.windows(2).all(|w| w[0].id > w[1].id),
        "strictly newest first"
    );

    // No token or trigger secret anywhere in what is stored.
    let rows = stored_rows(database_url).await?;
    assert_eq!(rows.len(), entries.len());
    for row in &rows {
        for (what, secret) in [
            ("the deployer token", &deployer),
            ("the viewer token", &viewer),
            ("the admin token", &p.admin_token),
            ("the agent token", &p.agent_token),
            ("the builder token", &builder),
            ("the trigger secret", &secret),
            ("the webhook secret", &hook.secret),
        ] {
            assert!(
                !row.contains(&secret[4..]),
                "{what} in the audit log: {row}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_are_recorded_and_agent_traffic_is_not() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let db = format!(
        "sqlite://{}",
        p.dir().join("apptracker").join("apptracker.db").display()
    );
    changes_are_recorded(&p, &db).await?;
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_on_postgresql() -> anyhow::Result<()> {
    let Some(db) = slipway_tests::services::postgres().await else {
        return Ok(());
    };
    let url = db.url.clone();
    let p = platform()
        .hosts(&["local-1"])
        .configure(move |c| c.database_url = Some(url))
        .start()
        .await?;
    changes_are_recorded(&p, &db.url).await?;
    p.shutdown().await
}
