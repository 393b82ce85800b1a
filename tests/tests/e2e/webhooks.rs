//! VCS webhooks with payloads shaped like the providers' documented push
//! events (`tests/fixtures/webhooks/`), signed with each app's own secret
//! per provider, mis-signed, replayed and rotated; pushes of older commits;
//! the build-trigger URL; credentials in a `git_url`.

use std::time::Duration;

use deploy::{
    AppName, AutoDeploy, CreateDeploy, DeployStatus, GitRef, Portion, RegisterApp,
    SetWebhookSecret, Strategy, WebhookOutcome, WebhookProvider,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use slipway_tests::{AppRepo, Platform, commit_hello, get_app, platform, poll};
use sqlx::Row;

const ZERO: &str = "0000000000000000000000000000000000000000";

fn payload(file: &str, git_ref: &str, before: &str, after: &str, repo_url: &str) -> String {
    let path = format!("{}/fixtures/webhooks/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
        .replace("{{REF}}", git_ref)
        .replace("{{BEFORE}}", before)
        .replace("{{AFTER}}", after)
        .replace("{{REPO_URL}}", repo_url)
}

fn hmac_hex(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Sends deliveries to one platform.
struct Hook<'a> {
    p: &'a Platform,
    http: reqwest::Client,
}

/// A delivery's answer: the status and the outcome (none for an error).
type Answer = (u16, Option<WebhookOutcome>);

impl<'a> Hook<'a> {
    fn new(p: &'a Platform) -> Self {
        Self {
            p,
            http: slipway_tests::http(),
        }
    }

    async fn send(
        &self,
        provider: &str,
        app: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Answer {
        let mut req = self
            .http
            .post(format!(
                "{}/api/v1/webhooks/{provider}/{app}",
                self.p.base_url
            ))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("the webhook request is answered");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).ok())
    }

    /// A GitHub delivery signed with `secret`, with delivery id `delivery`.
    async fn github(
        &self,
        app: &str,
        event: &str,
        body: String,
        secret: &str,
        delivery: &str,
    ) -> Answer {
        let sig = format!("sha256={}", hmac_hex(secret, &body));
        self.send(
            "github",
            app,
            &[
                ("x-github-event", event.into()),
                ("x-hub-signature-256", sig),
                ("x-github-delivery", delivery.into()),
            ],
            body,
        )
        .await
    }

    /// A GitLab push with `token` in its header.
    async fn gitlab(&self, app: &str, body: String, token: &str, uuid: &str) -> Answer {
        self.send(
            "gitlab",
            app,
            &[
                ("x-gitlab-event", "Push Hook".into()),
                ("x-gitlab-token", token.into()),
                ("x-gitlab-event-uuid", uuid.into()),
            ],
            body,
        )
        .await
    }
}

/// Makes (or rotates) `app`'s secret for `provider`; returns it.
async fn secret(
    p: &Platform,
    app: &AppName,
    provider: WebhookProvider,
    rotate: bool,
    grace: Option<&str>,
) -> anyhow::Result<String> {
    let made = p
        .client
        .set_webhook_secret(
            app,
            provider,
            &SetWebhookSecret {
                rotate,
                grace: grace.map(str::to_string),
            },
        )
        .await?;
    assert_eq!(
        made.url,
        format!("{}/api/v1/webhooks/{provider}/{app}", p.base_url)
    );
    Ok(made.secret)
}

/// Registers `name` from `repo` with an auto-deploy rule to `local`.
async fn register_auto(p: &Platform, name: &str, repo: &AppRepo) -> anyhow::Result<AppName> {
    let mut reg = RegisterApp::new(AppName::parse(name)?, repo.path.display().to_string());
    reg.auto_deploy = Some(AutoDeploy {
        cluster: p.cluster.clone(),
        hosts: None,
    });
    Ok(p.client.register_app(&reg).await?.name)
}

fn ping() -> String {
    "{\"zen\":\"Keep it logically awesome.\",\"hook_id\":1}".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_build_and_deploy_and_bad_signatures_start_nothing() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1", "local-2"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let sha_a = commit_hello(&repo, "A", true)?;
    let repo_url = format!("file://{}", repo.path.display());
    let app = register_auto(&p, "hello", &repo).await?;
    let github = secret(&p, &app, WebhookProvider::GitHub, false, None).await?;
    let gitlab = secret(&p, &app, WebhookProvider::GitLab, false, None).await?;
    let gitea = secret(&p, &app, WebhookProvider::Gitea, false, None).await?;
    assert!(github != gitlab && gitlab != gitea && github != gitea);
    let hook = Hook::new(&p);

    // GitHub: ping, then a signed push to main builds and auto-deploys A.
    let (status, out) = hook
        .github("hello", "ping", ping(), &github, "d-ping")
        .await;
    assert_eq!((status, out.map(|o| o.result)), (200, Some("pong".into())));
    let push_a = payload(
        "github-push.json",
        "refs/heads/main",
        ZERO,
        &sha_a,
        &repo_url,
    );
    let (status, refused) = hook
        .github("hello", "push", push_a.clone(), "wrong-secret", "d-a")
        .await;
    assert_eq!(status, 401, "a mis-signed push is refused");
    assert!(refused.is_none(), "with an error, not an outcome");
    assert!(p.client.deploys(10).await?.is_empty(), "and starts nothing");
    let (status, out) = hook
        .github("hello", "push", push_a.clone(), &github, "d-a")
        .await;
    assert_eq!(status, 202);
    let out = out.expect("an outcome");
    assert_eq!(out.result, "built", "{out:?}");
    assert_eq!(out.deploys.len(), 1, "{out:?}");
    let d = p.wait_deploy(out.deploys[0]).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version_a = d.version.expect("version");
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("A {version_a}\n"));
    }
    // The build is labelled with the branch it was pushed to.
    let builds = p.client.builds(&app).await?;
    assert_eq!(builds[0].git_ref, "main", "{builds:#?}");
    // Unrelated events and tags start nothing.
    let (status, out) = hook
        .github(
            "hello",
            "issues",
            "{\"action\":\"opened\"}".into(),
            &github,
            "d-i",
        )
        .await;
    assert_eq!(
        (status, out.map(|o| o.result)),
        (202, Some("ignored".into()))
    );
    let tag = payload("github-push.json", "refs/tags/v1", ZERO, &sha_a, &repo_url);
    let (status, out) = hook.github("hello", "push", tag, &github, "d-t").await;
    assert_eq!(
        (status, out.map(|o| o.result)),
        (202, Some("ignored".into()))
    );

    // GitLab: the token header, wrong then right; B is deployed.
    let sha_b = commit_hello(&repo, "B", true)?;
    let push_b = payload(
        "gitlab-push.json",
        "refs/heads/main",
        &sha_a,
        &sha_b,
        &repo_url,
    );
    let (status, _) = hook.gitlab("hello", push_b.clone(), "nope", "u-b").await;
    assert_eq!(status, 401);
    let (status, out) = hook.gitlab("hello", push_b, &gitlab, "u-b").await;
    assert_eq!(status, 202);
    let out = out.expect("an outcome");
    let d = p.wait_deploy(out.deploys[0]).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    assert!(
        d.version
            .as_ref()
            .expect("version")
            .as_str()
            .ends_with(&sha_b[..7])
    );

    // Gitea/Forgejo: a push to another branch builds nothing; mis-signed is
    // refused; signed to main builds and deploys C.
    let sha_c = commit_hello(&repo, "C", true)?;
    let other = payload(
        "gitea-push.json",
        "refs/heads/feature",
        &sha_b,
        &sha_c,
        &repo_url,
    );
    let signed = |body: &str, secret: &str| {
        vec![
            ("x-gitea-event", "push".to_string()),
            ("x-gitea-signature", hmac_hex(secret, body)),
        ]
    };
    let (status, out) = hook
        .send("gitea", "hello", &signed(&other, &gitea), other.clone())
        .await;
    assert_eq!(status, 202);
    let out = out.expect("an outcome");
    assert_eq!(out.result, "ignored");
    assert!(out.message.contains("feature"), "{}", out.message);
    let push_c = payload(
        "gitea-push.json",
        "refs/heads/main",
        &sha_b,
        &sha_c,
        &repo_url,
    );
    let (status, _) = hook
        .send("gitea", "hello", &signed(&push_c, "wrong"), push_c.clone())
        .await;
    assert_eq!(status, 401);
    let deploys_before = p.client.deploys(100).await?.len();
    let (status, out) = hook
        .send(
            "forgejo",
            "hello",
            &[
                ("x-forgejo-event", "push".into()),
                ("x-forgejo-signature", hmac_hex(&gitea, &push_c)),
                ("x-forgejo-delivery", "f-c".into()),
            ],
            push_c,
        )
        .await;
    assert_eq!(status, 202);
    let d = p.wait_deploy(out.expect("an outcome").deploys[0]).await?;
    assert_eq!(d.status, DeployStatus::Succeeded);
    assert_eq!(p.client.deploys(100).await?.len(), deploys_before + 1);

    // A new push of the commit already deployed reuses its build.
    let builds = p.client.builds(&app).await?.len();
    let again = payload(
        "github-push.json",
        "refs/heads/main",
        ZERO,
        &sha_c,
        &repo_url,
    );
    let (status, out) = hook.github("hello", "push", again, &github, "d-c2").await;
    assert_eq!(status, 202);
    p.wait_deploy(out.expect("an outcome").deploys[0]).await?;
    assert_eq!(
        p.client.builds(&app).await?.len(),
        builds,
        "no second build of one commit"
    );

    // The one shared URL of old is gone, and says where webhooks go now.
    let r = hook
        .http
        .post(format!("{}/api/v1/webhooks/github", p.base_url))
        .body("{}")
        .send()
        .await?;
    assert_eq!(r.status(), 404);
    let body: deploy::ErrorBody = r.json().await?;
    assert!(
        body.message.contains("/api/v1/webhooks/github/APP"),
        "{}",
        body.message
    );
    p.shutdown().await
}

/// A replayed delivery (same id) does nothing; the same push with a new id
/// (the id is not signed, so anyone holding a captured push can change
/// it) builds nothing new and deploys nothing, since its commit is older
/// than the one queued; the newer queued deploy is untouched and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replays_and_older_pushes_neither_deploy_nor_cancel_the_newer_queued_deploy()
-> anyhow::Result<()> {
    let p = platform().hosts(&["local-1", "local-2"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let repo_url = format!("file://{}", repo.path.display());
    let sha_a = commit_hello(&repo, "A", true)?;
    let app = register_auto(&p, "hello", &repo).await?;
    let github = secret(&p, &app, WebhookProvider::GitHub, false, None).await?;
    let hook = Hook::new(&p);

    // A, pushed and deployed.
    let push_a = payload(
        "github-push.json",
        "refs/heads/main",
        ZERO,
        &sha_a,
        &repo_url,
    );
    let (status, out) = hook
        .github("hello", "push", push_a.clone(), &github, "delivery-a")
        .await;
    assert_eq!(status, 202);
    let deploy_a = p.wait_deploy(out.expect("an outcome").deploys[0]).await?;
    assert_eq!(deploy_a.status, DeployStatus::Succeeded, "{deploy_a:#?}");
    let version_a = deploy_a.version.clone().expect("version");

    // A deploy someone is holding (a manual canary, paused after its
    // first host), so the next push queues behind it.
    let sha_b = commit_hello(&repo, "B", true)?;
    let held = p
        .client
        .create_deploy(&CreateDeploy {
            app: app.clone(),
            version: Some(version_a.clone()),
            git_ref: None,
            cluster: p.cluster.clone(),
            hosts: None,
            strategy: Strategy::Canary {
                canary: Portion::Count(1),
                bake_ms: 0,
                manual: true,
            },
            max_failures: Default::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
        .await?;
    poll(Duration::from_secs(60), || async {
        Ok(p.client.deploy(held.id).await?.paused_at.is_some())
    })
    .await?;

    // B, pushed: built and queued.
    let push_b = payload(
        "github-push.json",
        "refs/heads/main",
        &sha_a,
        &sha_b,
        &repo_url,
    );
    let (status, out) = hook
        .github("hello", "push", push_b.clone(), &github, "delivery-b")
        .await;
    assert_eq!(status, 202);
    let out = out.expect("an outcome");
    let queued_b = out.deploys[0];
    assert_eq!(
        p.client.deploy(queued_b).await?.status,
        DeployStatus::Queued
    );
    let builds = p.client.builds(&app).await?.len();
    let deploys = p.client.deploys(100).await?.len();

    // The same deliveries again, byte for byte: nothing happens.
    for (body, id) in [(&push_b, "delivery-b"), (&push_a, "delivery-a")] {
        let (status, out) = hook
            .github("hello", "push", body.clone(), &github, id)
            .await;
        let out = out.expect("an outcome");
        assert_eq!((status, out.result.as_str()), (202, "duplicate"), "{out:?}");
        assert!(out.builds.is_empty() && out.deploys.is_empty(), "{out:?}");
    }
    // A's push again under a new delivery id: A's build is reused, and
    // nothing deploys, since B is newer.
    let (status, out) = hook
        .github("hello", "push", push_a.clone(), &github, "delivery-a-again")
        .await;
    let out = out.expect("an outcome");
    assert_eq!((status, out.result.as_str()), (202, "built"), "{out:?}");
    assert!(out.deploys.is_empty(), "{out:?}");
    assert!(
        out.message.contains("not deployed") && out.message.contains(&sha_b[..7]),
        "{}",
        out.message
    );
    assert_eq!(p.client.builds(&app).await?.len(), builds, "no new build");
    assert_eq!(p.client.deploys(100).await?.len(), deploys, "no new deploy");
    assert_eq!(
        p.client.deploy(queued_b).await?.status,
        DeployStatus::Queued,
        "the newer queued deploy is not cancelled"
    );

    // Once the held deploy is let go, B runs and lands everywhere.
    p.client.continue_deploy(held.id).await?;
    assert_eq!(
        p.wait_deploy(held.id).await?.status,
        DeployStatus::Succeeded
    );
    let d = p.wait_deploy(queued_b).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version_b = d.version.clone().expect("version");
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("B {version_b}\n"));
    }

    // After B was built and deployed, an old push of A (new id) builds
    // nothing new and deploys nothing: the hosts keep B.
    let (status, out) = hook
        .github("hello", "push", push_a, &github, "delivery-a-third")
        .await;
    let out = out.expect("an outcome");
    assert_eq!((status, out.result.as_str()), (202, "built"), "{out:?}");
    assert!(out.deploys.is_empty(), "{out:?}");
    assert_eq!(p.client.deploys(100).await?.len(), deploys);
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("B {version_b}\n"));
    }

    // A delivery without an id is handled every time (said in the README).
    let sha_c = commit_hello(&repo, "C", true)?;
    let push_c = payload(
        "github-push.json",
        "refs/heads/main",
        &sha_b,
        &sha_c,
        &repo_url,
    );
    let sig = format!("sha256={}", hmac_hex(&github, &push_c));
    let headers = [
        ("x-github-event", "push".to_string()),
        ("x-hub-signature-256", sig),
    ];
    let (status, out) = hook.send("github", "hello", &headers, push_c).await;
    assert_eq!(status, 202);
    let d = p.wait_deploy(out.expect("an outcome").deploys[0]).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    p.shutdown().await
}

/// Each app's secret per provider signs that app's deliveries from that
/// provider only; rotations keep the old secret for the grace, then not.
async fn secrets_are_per_app_and_provider_and_rotate(
    p: &Platform,
    database_url: &str,
) -> anyhow::Result<()> {
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let repo_url = format!("file://{}", repo.path.display());
    let sha_a = commit_hello(&repo, "A", true)?;
    let hello = p.register("hello", &repo.path).await?;
    let other = p.register("other", &repo.path).await?;
    let hello_github = secret(p, &hello, WebhookProvider::GitHub, false, None).await?;
    let hello_gitlab = secret(p, &hello, WebhookProvider::GitLab, false, None).await?;
    let other_github = secret(p, &other, WebhookProvider::GitHub, false, None).await?;
    let hook = Hook::new(p);
    let push = payload(
        "github-push.json",
        "refs/heads/main",
        ZERO,
        &sha_a,
        &repo_url,
    );
    let gitlab_push = payload(
        "gitlab-push.json",
        "refs/heads/main",
        ZERO,
        &sha_a,
        &repo_url,
    );

    // Signed with another app's secret, or with the app's GitLab token as
    // the GitHub key (or the other way round): refused, nothing started.
    for (app, body, secret, why) in [
        ("hello", &push, &other_github, "another app's secret"),
        ("hello", &push, &hello_gitlab, "the app's GitLab token"),
        ("other", &push, &hello_github, "another app's secret"),
    ] {
        let (status, _) = hook.github(app, "push", body.clone(), secret, "x").await;
        assert_eq!(status, 401, "a GitHub push to {app} signed with {why}");
    }
    let (status, _) = hook
        .gitlab("hello", gitlab_push.clone(), &hello_github, "u")
        .await;
    assert_eq!(status, 401, "a GitLab push carrying the GitHub secret");
    let (status, _) = hook.gitlab("other", gitlab_push, &hello_gitlab, "u").await;
    assert_eq!(status, 404, "`other` takes no GitLab webhooks");
    assert!(p.client.builds(&hello).await?.is_empty());
    assert!(p.client.builds(&other).await?.is_empty());

    // Each with its own: accepted, and each delivery id once per app.
    let (status, out) = hook
        .github("hello", "push", push.clone(), &hello_github, "d-1")
        .await;
    assert_eq!((status, out.map(|o| o.result)), (202, Some("built".into())));
    let (status, out) = hook
        .github("other", "push", push.clone(), &other_github, "d-1")
        .await;
    assert_eq!(
        (status, out.map(|o| o.result)),
        (202, Some("built".into())),
        "the same id for another app is another delivery"
    );
    let (status, out) = hook
        .github("hello", "push", push.clone(), &hello_github, "d-1")
        .await;
    assert_eq!(
        (status, out.map(|o| o.result)),
        (202, Some("duplicate".into()))
    );
    assert_eq!(p.client.builds(&hello).await?.len(), 1);

    // A big delivery (GitHub sends up to 25 MB) is taken, not a 413.
    let big = format!(
        "{{\"zen\":\"big\",\"padding\":\"{}\"}}",
        "x".repeat(5 << 20)
    );
    let (status, out) = hook
        .github("hello", "ping", big, &hello_github, "big")
        .await;
    assert_eq!((status, out.map(|o| o.result)), (200, Some("pong".into())));

    // A second secret for a provider needs `rotate`.
    let e = p
        .client
        .set_webhook_secret(
            &hello,
            WebhookProvider::GitHub,
            &SetWebhookSecret::default(),
        )
        .await
        .expect_err("a second secret without rotate");
    assert_eq!(e.code(), Some("conflict"), "{e}");

    // Rotated with the default grace (24h): both work.
    let accepted = |secret: String| {
        let hook = &hook;
        async move {
            let (status, _) = hook.github("hello", "ping", ping(), &secret, "p").await;
            status == 200
        }
    };
    let s2 = secret(p, &hello, WebhookProvider::GitHub, true, None).await?;
    assert!(
        accepted(hello_github.clone()).await,
        "the old one, in grace"
    );
    assert!(accepted(s2.clone()).await, "the new one");
    let info = p.client.webhook_secrets(&hello).await?;
    let gh = info
        .iter()
        .find(|i| i.provider == WebhookProvider::GitHub)
        .expect("github listed");
    assert!(gh.previous_valid_until.is_some() && gh.rotated_at.is_some());
    let listed = serde_json::to_string(&info)?;
    assert!(!listed.contains(&s2) && !listed.contains(&hello_github));

    // Rotated again with a 1 s grace: the first secret is gone at once
    // (one previous secret is kept), the second is until the grace ends,
    // then only the newest works.
    let s3 = secret(p, &hello, WebhookProvider::GitHub, true, Some("1s")).await?;
    assert!(!accepted(hello_github.clone()).await);
    assert!(accepted(s3.clone()).await);
    poll(Duration::from_secs(20), || {
        let s2 = s2.clone();
        let accepted = &accepted;
        async move { Ok(!accepted(s2).await) }
    })
    .await?;
    assert!(accepted(s3.clone()).await, "the newest, after the grace");
    // `0s` ends the grace at once (a leaked secret).
    let s4 = secret(p, &hello, WebhookProvider::GitHub, true, Some("0s")).await?;
    assert!(!accepted(s3).await);
    assert!(accepted(s4.clone()).await);

    // Secrets are sealed at rest: not in the database in the clear.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await?;
    let rows = sqlx::query(
        "SELECT app || '|' || provider || '|' || secret || '|' || COALESCE(previous, '') \
         FROM webhook_secrets",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let row: String = r.try_get(0)?;
        for s in [&hello_github, &hello_gitlab, &other_github, &s2, &s4] {
            assert!(!row.contains(&s[6..]), "a secret in the clear: {row}");
        }
    }

    // Deleted: that provider's deliveries are refused at once.
    p.client
        .delete_webhook_secret(&hello, WebhookProvider::GitHub)
        .await?;
    let (status, _) = hook.github("hello", "ping", ping(), &s4, "p").await;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_app_and_provider_has_its_own_secret_which_rotates() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let db = format!(
        "sqlite://{}",
        p.dir().join("apptracker").join("apptracker.db").display()
    );
    secrets_are_per_app_and_provider_and_rotate(&p, &db).await?;
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_app_and_provider_has_its_own_secret_on_postgresql() -> anyhow::Result<()> {
    let Some(db) = slipway_tests::services::postgres().await else {
        return Ok(());
    };
    let url = db.url.clone();
    let p = platform()
        .hosts(&["local-1"])
        .configure(move |c| c.database_url = Some(url))
        .start()
        .await?;
    secrets_are_per_app_and_provider_and_rotate(&p, &db.url).await?;
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_trigger_url_builds_and_deploys_only_its_branch() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let sha_a = commit_hello(&repo, "A", true)?;
    commit_hello(&repo, "B", true)?;
    let app = register_auto(&p, "hello", &repo).await?;
    let http = slipway_tests::http();
    let r = http
        .post(format!("{}/api/v1/apps/hello/trigger", p.base_url))
        .bearer_auth(&p.admin_token)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let url: deploy::TriggerUrl = r.json().await?;
    assert!(url.url.starts_with(&p.base_url), "{}", url.url);

    let bad = url.url.replace("slp_", "slp_0");
    assert_eq!(http.post(&bad).send().await?.status(), 401);
    assert!(
        p.client.builds(&app).await?.is_empty(),
        "a wrong URL starts nothing"
    );

    // Another ref (an older commit) on an auto-deploy app: built only.
    let r = http
        .post(&url.url)
        .json(&deploy::RequestBuild {
            git_ref: Some(GitRef::parse(sha_a.as_str())?),
        })
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let out: WebhookOutcome = r.json().await?;
    assert_eq!(out.builds.len(), 1, "{out:?}");
    assert!(out.deploys.is_empty(), "{out:?}");
    assert!(out.message.contains("not deployed"), "{}", out.message);
    assert!(p.client.deploys(10).await?.is_empty());

    // The branch: built and deployed.
    let r = http.post(&url.url).send().await?;
    assert_eq!(r.status(), 202);
    let out: WebhookOutcome = r.json().await?;
    assert_eq!((out.builds.len(), out.deploys.len()), (1, 1), "{out:?}");
    let d = p.wait_deploy(out.deploys[0]).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let builds = p.client.builds(&app).await?;
    assert_eq!(builds.len(), 2);
    assert_eq!(builds[0].git_ref, "main");
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_in_a_git_url_are_refused_and_never_shown() -> anyhow::Result<()> {
    let p = platform().start().await?;
    for url in [
        "https://ci:hunter2@git.example/team/app.git",
        "https://hunter2@git.example/team/app.git",
    ] {
        let e = p
            .client
            .register_app(&RegisterApp::new(AppName::parse("creds")?, url))
            .await
            .expect_err("credentials in the URL");
        assert_eq!(e.code(), Some("invalid_input"), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("[git]"), "points at packer's config: {msg}");
        assert!(!msg.contains("hunter2"), "never echoes them: {msg}");
    }
    assert!(p.client.apps().await?.is_empty(), "nothing registered");
    // An ssh login is no credential.
    p.client
        .register_app(&RegisterApp::new(
            AppName::parse("ssh")?,
            "ssh://git@git.example/team/app.git",
        ))
        .await?;

    // One stored before they were refused is never shown.
    sqlx::any::install_default_drivers();
    let db = format!(
        "sqlite://{}",
        p.dir().join("apptracker").join("apptracker.db").display()
    );
    let pool = sqlx::AnyPool::connect(&db).await?;
    sqlx::query(
        "INSERT INTO apps (name, git_url, branch, created_at) \
         VALUES ('legacy', 'https://ci:hunter2@git.example/team/app.git', 'main', 0)",
    )
    .execute(&pool)
    .await?;
    pool.close().await;
    let legacy = AppName::parse("legacy")?;
    let shown = p.client.app(&legacy).await?;
    assert_eq!(shown.git_url, "https://***@git.example/team/app.git");
    let listed = serde_json::to_string(&p.client.apps().await?)?;
    assert!(!listed.contains("hunter2"), "{listed}");
    let ssh = p.client.app(&AppName::parse("ssh")?).await?;
    assert_eq!(ssh.git_url, "ssh://git@git.example/team/app.git");
    p.shutdown().await
}
