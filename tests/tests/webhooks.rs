//! VCS webhooks with payloads shaped like the providers' documented push
//! events (`tests/fixtures/webhooks/`), signed and mis-signed, and the
//! build-trigger URL.

use deploy::{AppName, AutoDeploy, DeployStatus, RegisterApp, WebhookOutcome};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use slipway_tests::{AppRepo, Options, Platform, commit_hello};

const SECRET: &str = "hook-s3cret";
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

struct Hook<'a> {
    p: &'a Platform,
    http: reqwest::Client,
}

impl Hook<'_> {
    async fn send(
        &self,
        provider: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> (u16, Option<WebhookOutcome>) {
        let mut req = self
            .http
            .post(format!("{}/api/v1/webhooks/{provider}", self.p.base_url))
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

    async fn github(
        &self,
        event: &str,
        body: String,
        secret: &str,
    ) -> (u16, Option<WebhookOutcome>) {
        let sig = format!("sha256={}", hmac_hex(secret, &body));
        self.send(
            "github",
            &[
                ("x-github-event", event.into()),
                ("x-hub-signature-256", sig),
                ("x-github-delivery", "72d3162e".into()),
            ],
            body,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_build_and_deploy_and_bad_signatures_start_nothing() -> anyhow::Result<()> {
    let opts = Options {
        webhook_secret: Some(SECRET.into()),
        ..Options::default()
    };
    let p = Platform::start_with(&["local-1", "local-2"], opts).await?;
    let repo = AppRepo::new(p.dir.path().join("repo"))?;
    let sha_a = commit_hello(&repo, "A", true)?;
    let repo_url = format!("file://{}", repo.path.display());
    let mut reg = RegisterApp::new(AppName::parse("hello")?, repo.path.display().to_string());
    reg.auto_deploy = Some(AutoDeploy {
        cluster: Platform::cluster(),
        hosts: None,
    });
    p.client.register_app(&reg).await?;
    let hook = Hook {
        p: &p,
        http: slipway_tests::http(),
    };

    // GitHub: ping, then a signed push to main builds and auto-deploys A.
    let (status, out) = hook
        .github(
            "ping",
            "{\"zen\":\"Keep it logically awesome.\",\"hook_id\":1}".into(),
            SECRET,
        )
        .await;
    assert_eq!((status, out.map(|o| o.result)), (200, Some("pong".into())));
    let push_a = payload(
        "github-push.json",
        "refs/heads/main",
        ZERO,
        &sha_a,
        &repo_url,
    );
    let (status, refused) = hook.github("push", push_a.clone(), "wrong-secret").await;
    assert_eq!(status, 401, "a mis-signed push is refused");
    assert!(refused.is_none(), "with an error, not an outcome");
    assert!(p.client.deploys(10).await?.is_empty(), "and starts nothing");
    let (status, out2) = hook.github("push", push_a.clone(), SECRET).await;
    assert_eq!(status, 202);
    let out = out2.expect("an outcome");
    assert_eq!(out.result, "built", "{out:?}");
    assert_eq!(out.deploys.len(), 1, "{out:?}");
    let d = p.wait_deploy(out.deploys[0]).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version_a = d.version.expect("version");
    for h in &p.hosts {
        assert_eq!(h.get().await?, format!("A {version_a}\n"));
    }
    // Unrelated events and tags start nothing.
    let (status, out) = hook
        .github("issues", "{\"action\":\"opened\"}".into(), SECRET)
        .await;
    assert_eq!(
        (status, out.map(|o| o.result)),
        (202, Some("ignored".into()))
    );
    let tag = payload("github-push.json", "refs/tags/v1", ZERO, &sha_a, &repo_url);
    let (status, out) = hook.github("push", tag, SECRET).await;
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
    let gitlab = |token: &str| {
        vec![
            ("x-gitlab-event", "Push Hook".to_string()),
            ("x-gitlab-token", token.to_string()),
        ]
    };
    let (status, _) = hook.send("gitlab", &gitlab("nope"), push_b.clone()).await;
    assert_eq!(status, 401);
    let (status, out) = hook.send("gitlab", &gitlab(SECRET), push_b).await;
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
    let gitea = |body: &str, secret: &str| {
        vec![
            ("x-gitea-event", "push".to_string()),
            ("x-gitea-signature", hmac_hex(secret, body)),
        ]
    };
    let (status, out) = hook
        .send("gitea", &gitea(&other, SECRET), other.clone())
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
        .send("gitea", &gitea(&push_c, "wrong"), push_c.clone())
        .await;
    assert_eq!(status, 401);
    let deploys_before = p.client.deploys(100).await?.len();
    let (status, out) = hook
        .send(
            "forgejo",
            &[
                ("x-forgejo-event", "push".into()),
                ("x-forgejo-signature", hmac_hex(SECRET, &push_c)),
            ],
            push_c,
        )
        .await;
    assert_eq!(status, 202);
    let d = p.wait_deploy(out.expect("an outcome").deploys[0]).await?;
    assert_eq!(d.status, DeployStatus::Succeeded);
    assert_eq!(p.client.deploys(100).await?.len(), deploys_before + 1);

    // A push of a commit already built reuses the build.
    let builds = p.client.builds(&AppName::parse("hello")?).await?.len();
    let again = payload(
        "github-push.json",
        "refs/heads/main",
        ZERO,
        &sha_c,
        &repo_url,
    );
    let (status, out) = hook.github("push", again, SECRET).await;
    assert_eq!(status, 202);
    p.wait_deploy(out.expect("an outcome").deploys[0]).await?;
    assert_eq!(
        p.client.builds(&AppName::parse("hello")?).await?.len(),
        builds,
        "no second build of one commit"
    );
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_trigger_url_starts_a_build_and_a_wrong_one_nothing() -> anyhow::Result<()> {
    let p = Platform::start(&["local-1"]).await?;
    let repo = AppRepo::new(p.dir.path().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
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

    let r = http.post(&url.url).send().await?;
    assert_eq!(r.status(), 202);
    let out: WebhookOutcome = r.json().await?;
    assert_eq!(out.builds.len(), 1);
    let builds = p.client.builds(&app).await?;
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].git_ref, "main");

    // Webhooks are off on this platform: said clearly.
    let r = http
        .post(format!("{}/api/v1/webhooks/github", p.base_url))
        .body("{}")
        .send()
        .await?;
    assert_eq!(r.status(), 404);
    let body: deploy::ErrorBody = r.json().await?;
    assert!(
        body.message.contains("webhook_secret_file"),
        "{}",
        body.message
    );
    p.shutdown().await
}
