//! Apps in a monorepo: two apps registered from one repository with
//! different roots; signed GitHub pushes build only the app whose root
//! (or `[build] watch` path) they touch, a `[skip deploy]` push builds
//! nothing, a push whose changes cannot be known builds, and roots are
//! validated at registration.

use std::time::Duration;

use deploy::{
    AppName, AuditQuery, BuildStatus, ClientError, RegisterApp, RequestBuild, SetWebhookSecret,
    WebhookOutcome, WebhookProvider,
};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use slipway_tests::{AppRepo, Platform, platform, poll};

use crate::cli::admin;

const ZERO: &str = "0000000000000000000000000000000000000000";

/// A generic app's `slipway.toml`, watching `watch`.
fn app_toml(name: &str, watch: &[&str]) -> String {
    format!(
        "type = \"generic\"\n[build]\ncommand = \"echo {name} > built.txt\"\nwatch = {watch:?}\n\
         [run]\ncommand = \"sleep 600\"\n"
    )
}

/// A GitHub push of `after` onto `before`, one commit changing `modified`.
fn github_push(
    repo_url: &str,
    before: &str,
    after: &str,
    message: &str,
    modified: &[&str],
) -> String {
    json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": before == ZERO,
        "deleted": false,
        "forced": false,
        "repository": {"name": "mono", "full_name": "acme/mono", "clone_url": repo_url},
        "commits": [{
            "id": after, "distinct": true, "message": message,
            "added": [], "removed": [], "modified": modified,
        }],
        "head_commit": {"id": after, "message": message},
    })
    .to_string()
}

/// Sends a signed GitHub push to `app`'s webhook.
async fn send(p: &Platform, app: &AppName, secret: &str, body: String, id: &str) -> WebhookOutcome {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let resp = slipway_tests::http()
        .post(format!("{}/api/v1/webhooks/github/{app}", p.base_url))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", format!("{id}-{app}"))
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .expect("the webhook is answered");
    assert_eq!(resp.status().as_u16(), 202);
    resp.json().await.expect("an outcome")
}

/// Waits for every build of `app` to end, and returns how many it has.
async fn settled_builds(p: &Platform, app: &AppName) -> anyhow::Result<usize> {
    poll(Duration::from_secs(90), || async {
        let builds = p.client.builds(app).await?;
        Ok(builds.iter().all(|b| b.status.is_terminal()))
    })
    .await?;
    let builds = p.client.builds(app).await?;
    for b in &builds {
        assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    }
    Ok(builds.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_build_only_the_apps_whose_root_or_watch_paths_they_touch() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("mono"))?;
    let repo_url = format!("file://{}", repo.path.display());
    let (toml_a, toml_b) = (app_toml("a", &[]), app_toml("b", &["libs/shared"]));
    let first = repo.commit(
        &[
            ("services/a/slipway.toml", &toml_a),
            ("services/a/a.txt", "a1"),
            ("services/b/slipway.toml", &toml_b),
            ("services/b/b.txt", "b1"),
            ("libs/shared/lib.txt", "lib1"),
            ("README.md", "the monorepo"),
        ],
        "two apps",
    )?;

    // Roots are checked at registration: a clear 400 naming the field.
    for bad in ["../x", "/srv/a", "services//a", "services/a b", "./a", ""] {
        let mut reg = RegisterApp::new(AppName::parse("bad")?, repo.path.display().to_string());
        reg.root = Some(bad.to_string());
        match p.client.register_app(&reg).await {
            Err(ClientError::Api {
                status: 400,
                code,
                message,
            }) => {
                assert_eq!(code, "invalid_input");
                assert!(
                    message.starts_with("`root`: invalid app root"),
                    "{bad:?}: {message}"
                );
            }
            other => panic!("{bad:?} was not refused: {other:?}"),
        }
    }
    let register = |name: &str, root: &str| {
        let mut reg = RegisterApp::new(
            AppName::parse(name).expect("a name"),
            repo.path.display().to_string(),
        );
        reg.root = Some(root.to_string());
        reg
    };
    let a = p
        .client
        .register_app(&register("app-a", "services/a"))
        .await?;
    assert_eq!(a.root.as_deref(), Some("services/a"));
    // The CLI takes `--root`, checks it before asking, and shows it.
    let url = repo.path.display().to_string();
    let run = admin(&p, &["register", "app-b", &url, "--root", "../b"]).await?;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("invalid app root"), "{run:#?}");
    assert_eq!(
        admin(&p, &["register", "app-b", &url, "--root", "services/b/"])
            .await?
            .ok(),
        format!("registered app-b ({url}, root services/b)\n")
    );
    let apps = admin(&p, &["apps"]).await?.ok();
    let rows: Vec<Vec<&str>> = apps
        .lines()
        .skip(1)
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r[..5].to_vec()).collect::<Vec<_>>(),
        [
            ["app-a", url.as_str(), "main", "-", "services/a"],
            ["app-b", url.as_str(), "main", "-", "services/b"]
        ],
        "{apps}"
    );
    let b = AppName::parse("app-b")?;
    assert_eq!(p.client.app(&b).await?.root.as_deref(), Some("services/b"));
    let a = a.name;

    // First builds: they record each app's `[build] watch`.
    for app in [&a, &b] {
        p.client
            .request_build(app, &RequestBuild::default())
            .await?;
        assert_eq!(settled_builds(&p, app).await?, 1);
    }
    let mut secrets = Vec::new();
    for app in [&a, &b] {
        let made = p
            .client
            .set_webhook_secret(app, WebhookProvider::GitHub, &SetWebhookSecret::default())
            .await?;
        secrets.push(made.secret);
    }
    let (secret_a, secret_b) = (&secrets[0], &secrets[1]);

    // A push touching only a's root: a builds, b does not, and says why.
    let second = repo.commit(&[("services/a/a.txt", "a2")], "change a")?;
    let push = github_push(
        &repo_url,
        &first,
        &second,
        "change a",
        &["services/a/a.txt"],
    );
    let out = send(&p, &a, secret_a, push.clone(), "d1").await;
    assert_eq!(out.result, "built", "{out:?}");
    assert_eq!(out.builds.len(), 1, "{out:?}");
    let out = send(&p, &b, secret_b, push, "d1").await;
    assert_eq!(out.result, "skipped", "{out:?}");
    assert!(out.builds.is_empty() && out.deploys.is_empty(), "{out:?}");
    assert!(
        out.message.contains("`services/a/a.txt`")
            && out.message.contains("root `services/b`")
            && out.message.contains("libs/shared"),
        "{}",
        out.message
    );
    assert_eq!(settled_builds(&p, &a).await?, 2, "a built");
    assert_eq!(settled_builds(&p, &b).await?, 1, "b has no new build");
    let built = &p.client.builds(&a).await?[0];
    assert_eq!(built.commit, second);

    // The skip is in the audit log, with its reason.
    poll(Duration::from_secs(10), || async {
        let entries = p
            .client
            .audit(&AuditQuery {
                app: Some(b.clone()),
                ..Default::default()
            })
            .await?;
        Ok(entries.iter().any(|e| {
            e.actor == "webhook:github"
                && e.target
                    .as_deref()
                    .is_some_and(|t| t.starts_with("skipped: app-b: nothing built"))
        }))
    })
    .await?;

    // `[skip deploy]` in the head commit: nothing builds, whatever it touches.
    let third = repo.commit(
        &[("services/a/a.txt", "a3"), ("services/b/b.txt", "b3")],
        "both [skip deploy]",
    )?;
    let touched = ["services/a/a.txt", "services/b/b.txt"];
    let push = github_push(&repo_url, &second, &third, "both [skip deploy]", &touched);
    for (app, secret) in [(&a, secret_a), (&b, secret_b)] {
        let out = send(&p, app, secret, push.clone(), "d2").await;
        assert_eq!(out.result, "skipped", "{out:?}");
        assert!(
            out.message.contains("says `[skip deploy]`"),
            "{}",
            out.message
        );
    }
    assert_eq!(settled_builds(&p, &a).await?, 2);
    assert_eq!(settled_builds(&p, &b).await?, 1);

    // A change to b's watch path (a shared library) builds b, not a.
    let fourth = repo.commit(&[("libs/shared/lib.txt", "lib2")], "shared")?;
    let push = github_push(
        &repo_url,
        &third,
        &fourth,
        "shared",
        &["libs/shared/lib.txt"],
    );
    let out = send(&p, &a, secret_a, push.clone(), "d3").await;
    assert_eq!(out.result, "skipped", "{out:?}");
    assert!(
        out.message.contains("no `[build] watch`"),
        "{}",
        out.message
    );
    let out = send(&p, &b, secret_b, push, "d3").await;
    assert_eq!(out.result, "built", "{out:?}");
    assert_eq!(settled_builds(&p, &b).await?, 2, "b built");
    assert_eq!(settled_builds(&p, &a).await?, 2, "a has no new build");
    assert_eq!(p.client.builds(&b).await?[0].commit, fourth);

    // A push whose changes cannot be known (a new branch's first push)
    // builds, even touching nothing of a's.
    let fifth = repo.commit(&[("README.md", "v2")], "docs")?;
    let push = github_push(&repo_url, ZERO, &fifth, "docs", &["README.md"]);
    let out = send(&p, &a, secret_a, push, "d4").await;
    assert_eq!(out.result, "built", "{out:?}");
    assert_eq!(settled_builds(&p, &a).await?, 3);
    p.shutdown().await
}
