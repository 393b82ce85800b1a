//! `--output json` of every read command parses as the API's own type and
//! says what the API says.

use deploy::{
    App, AppConfig, AuditEntry, Build, ClusterSettings, Deploy, DeployStatus, DriftReport, Host,
    Targets, TokenInfo, WhoAmI,
};
use serde::de::DeserializeOwned;
use slipway_tests::{AppRepo, commit_hello, platform};

use super::{admin, first_version};

/// `deploy ARGS -o json` as the admin: its stdout as a `T`.
async fn json<T: DeserializeOwned>(
    p: &slipway_tests::Platform,
    args: &[&str],
) -> anyhow::Result<T> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = admin(p, &all).await?.ok();
    serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("deploy {args:?} -o json: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_read_command_prints_the_apis_types() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let sha = commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let c = &p.client;
    admin(&p, &["env", "set", "hello", "GREETING=hi"])
        .await?
        .ok();

    let apps: Vec<App> = json(&p, &["apps"]).await?;
    assert_eq!(apps, c.apps().await?);
    let one: App = json(&p, &["apps", "show", "hello"]).await?;
    assert_eq!(one, c.app(&app).await?);
    let builds: Vec<Build> = json(&p, &["builds", "hello"]).await?;
    assert_eq!(builds, c.builds(&app).await?);
    assert_eq!(builds[0].version.as_str(), first_version(&sha));

    let deploys: Vec<Deploy> = json(&p, &["deploys"]).await?;
    assert_eq!(deploys, c.deploys(20).await?);
    let failed: Vec<Deploy> =
        json(&p, &["deploys", "--app", "hello", "--status", "failed"]).await?;
    assert!(failed.is_empty(), "{failed:#?}");
    let ok: Vec<Deploy> = json(&p, &["deploys", "--status", "succeeded,partial"]).await?;
    assert_eq!(ok.iter().map(|d| d.id).collect::<Vec<_>>(), [d.id]);
    let shown: Deploy = json(&p, &["status", &d.id.to_string()]).await?;
    assert_eq!(shown, c.deploy(d.id).await?);

    // Hosts and tokens carry times that move (last seen, last used): the
    // same rows by name.
    let hosts: Vec<Host> = json(&p, &["hosts"]).await?;
    let names = |h: &[Host]| h.iter().map(|h| h.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&hosts), names(&c.hosts().await?));
    let tokens: Vec<TokenInfo> = json(&p, &["token", "list"]).await?;
    let names = |t: &[TokenInfo]| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&tokens), names(&c.tokens().await?));

    let me: WhoAmI = json(&p, &["whoami"]).await?;
    assert_eq!(me, c.whoami().await?);
    let drift: DriftReport = json(&p, &["drift", "--all"]).await?;
    assert!(drift.hosts.iter().all(|h| h.app == app), "{drift:#?}");
    let clusters: Vec<ClusterSettings> = json(&p, &["clusters"]).await?;
    assert_eq!(clusters, c.clusters().await?);
    let targets: Targets = json(&p, &["targets", "--cluster", "local"]).await?;
    assert_eq!(targets.hosts.len(), 1, "{targets:#?}");
    let config: AppConfig = json(&p, &["env", "list", "hello"]).await?;
    assert_eq!(config, c.app_config(&app, None).await?);
    assert_eq!(config.vars.len(), 1);
    let notes: Vec<deploy::api::Notification> = json(&p, &["notify", "list"]).await?;
    assert_eq!(notes, c.notifications().await?);
    let secrets: Vec<deploy::WebhookSecretInfo> = json(&p, &["webhook-secrets", "hello"]).await?;
    assert_eq!(secrets, c.webhook_secrets(&app).await?);
    let audit: Vec<AuditEntry> = json(&p, &["audit", "--limit", "3"]).await?;
    let page = c
        .audit_page(&deploy::AuditQuery {
            limit: Some(3),
            ..Default::default()
        })
        .await?;
    // The CLI's own reads are not audited: the same page.
    assert_eq!(audit, page.items);
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_hosts_and_build_logs_are_managed_from_the_cli() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let git_url = repo.path.display().to_string();

    // Edit: the answer is the app as it now is.
    let edited: App = json(
        &p,
        &[
            "apps",
            "edit",
            "hello",
            "--branch",
            "dev",
            "--auto-deploy",
            "local",
        ],
    )
    .await?;
    assert_eq!(edited.branch, "dev");
    assert_eq!(
        edited.auto_deploy.as_ref().map(|a| a.cluster.as_str()),
        Some("local")
    );
    assert_eq!(edited, p.client.app(&app).await?);
    let cleared: App = json(
        &p,
        &[
            "apps",
            "edit",
            "hello",
            "--no-auto-deploy",
            "--branch",
            "main",
        ],
    )
    .await?;
    assert_eq!(
        (cleared.branch.as_str(), cleared.auto_deploy),
        ("main", None)
    );
    let run = admin(&p, &["apps", "edit", "hello"]).await?;
    assert_eq!(run.code, 2, "{run:#?}");

    // A build's log, whole or followed to the end: the same text.
    let out = admin(&p, &["build", "hello", "--follow"]).await?.ok();
    // (Lists leave the log out; one build has it.)
    let b = p.client.build(p.client.builds(&app).await?[0].id).await?;
    assert_eq!(b.status, deploy::BuildStatus::Succeeded);
    assert!(!b.log.is_empty());
    assert!(out.contains(b.log.trim_end()), "{out}");
    let whole = admin(&p, &["build-logs", &b.id.to_string()]).await?.ok();
    assert_eq!(whole, b.log);
    let followed = admin(&p, &["build-logs", &b.id.to_string(), "--follow"])
        .await?
        .ok();
    assert_eq!(followed.trim_end(), b.log.trim_end());

    // Remove: refused without a person to confirm, done with --yes.
    admin(&p, &["register", "old", &git_url]).await?.ok();
    let run = admin(&p, &["apps", "remove", "old"]).await?;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("needs --yes"), "{run:#?}");
    let out = admin(&p, &["apps", "remove", "old", "--yes"]).await?.ok();
    assert!(out.starts_with("removed old: "), "{out}");
    let run = admin(&p, &["apps", "show", "old"]).await?;
    assert_eq!(run.code, 4, "{run:#?}");
    assert!(run.stderr.contains("registered apps: hello"), "{run:#?}");

    // A host that does not exist, then a real one.
    let run = admin(&p, &["hosts", "remove", "local", "ghost"]).await?;
    assert_eq!(run.code, 4, "{run:#?}");
    let out = admin(&p, &["hosts", "remove", "local", "local-1"])
        .await?
        .ok();
    assert!(out.starts_with("removed host local-1 of local"), "{out}");
    p.shutdown().await
}
