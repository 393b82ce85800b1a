//! Build failures are clear, and visible through the API: in the build's
//! error line and in its log (a missing run command, an unknown type, a
//! failing command, a timeout, no `slipway.toml`, a dependency that does not
//! exist, an interpreter pin the builder lacks, a package manager that
//! cannot be had). Builds without a ref follow the app's branch, and `HEAD`
//! counts back from its tip.

use std::time::Duration;

use deploy::{
    AppName, Build, BuildStatus, ClientError, DeployStatus, GitRef, RegisterApp, RequestBuild,
};
use slipway_tests::{AppRepo, Platform, commit_hello, get_app, platform, poll};

/// Commits `files` as the whole app and builds it to its end.
async fn build(p: &Platform, name: &str, files: &[(&str, &str)]) -> anyhow::Result<Build> {
    let repo = AppRepo::new(p.dir().join(name))?;
    repo.commit(files, "try")?;
    let app = p.register(name, &repo.path).await?;
    let b = p
        .client
        .request_build(&app, &RequestBuild::default())
        .await?;
    poll(Duration::from_secs(60), || async {
        Ok(p.client.build(b.id).await?.status.is_terminal())
    })
    .await?;
    Ok(p.client.build(b.id).await?)
}

fn failed(b: &Build) -> String {
    assert_eq!(b.status, BuildStatus::Failed, "{b:#?}");
    b.error.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn build_failures_say_what_went_wrong() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;

    let b = build(
        &p,
        "no-run",
        &[(
            "slipway.toml",
            "type = \"generic\"\n[build]\ncommand = \"true\"\n[run]\nport = 8000\n",
        )],
    )
    .await?;
    let e = failed(&b);
    assert!(
        e.contains("command") && e.contains("run"),
        "missing run command: {e}"
    );

    let b = build(
        &p,
        "bad-type",
        &[("slipway.toml", "type = \"cobol\"\n[run]\ncommand = \"x\"\n")],
    )
    .await?;
    let e = failed(&b);
    assert!(
        e.contains("type") && e.contains("line 1") && e.contains("cobol"),
        "unknown type: {e}"
    );

    let b = build(
        &p,
        "exits",
        &[("slipway.toml", "type = \"generic\"\n[build]\ncommand = \"echo compiling; echo boom >&2; exit 3\"\n[run]\ncommand = \"x\"\n")],
    )
    .await?;
    let e = failed(&b);
    assert!(e.contains('3'), "the exit status is named: {e}");
    assert!(
        b.log.contains("compiling") && b.log.contains("boom"),
        "the log has the output: {}",
        b.log
    );

    let b = build(
        &p,
        "slow",
        &[("slipway.toml", "type = \"generic\"\n[build]\ncommand = \"echo started; sleep 30\"\ntimeout = \"1s\"\n[run]\ncommand = \"x\"\n")],
    )
    .await?;
    let e = failed(&b);
    assert!(
        e.contains("timed out") || e.contains("timeout"),
        "over its timeout: {e}"
    );
    assert!(
        b.log.contains("started"),
        "the log keeps what ran: {}",
        b.log
    );

    let b = build(&p, "no-toml", &[("README", "no slipway.toml here\n")]).await?;
    let e = failed(&b);
    assert!(e.contains("slipway.toml"), "{e}");

    // A requirement PyPI does not have: pip's own words name it.
    let b = build(
        &p,
        "no-such-dep",
        &[
            ("requirements.txt", "slipway-no-such-package-77ab==1.0\n"),
            ("app.py", "\n"),
            ("slipway.toml", "[run]\ncommand = \"python3 app.py\"\n"),
        ],
    )
    .await?;
    let e = failed(&b);
    assert!(
        e.contains("pip") && e.contains("slipway-no-such-package-77ab"),
        "a missing dependency: {e}"
    );
    assert!(
        b.log
            .contains("No matching distribution found for slipway-no-such-package-77ab"),
        "the log has pip's output: {}",
        b.log
    );

    // An interpreter version the builder lacks, and a package manager
    // that cannot be had: each named with where it was asked for.
    let b = build(
        &p,
        "py-pin",
        &[
            (".python-version", "3.99\n"),
            ("app.py", "\n"),
            ("slipway.toml", "[run]\ncommand = \"python3 app.py\"\n"),
        ],
    )
    .await?;
    let e = failed(&b);
    assert!(
        e.contains("no Python on this build machine matches `3.99` (from .python-version)"),
        "{e}"
    );
    let b = build(
        &p,
        "no-pnpm",
        &[
            (
                "package.json",
                r#"{"packageManager": "pnpm@0.0.404", "dependencies": {"ms": "2.1.3"}}"#,
            ),
            ("slipway.toml", "[run]\ncommand = \"node x.js\"\n"),
        ],
    )
    .await?;
    let e = failed(&b);
    assert!(
        e.contains("pnpm@0.0.404 (asked for by package.json packageManager) is not available"),
        "{e}"
    );

    // None of them left an artifact or a deploy behind.
    for name in [
        "no-run",
        "bad-type",
        "exits",
        "slow",
        "no-toml",
        "no-such-dep",
        "py-pin",
        "no-pnpm",
    ] {
        let builds = p.client.builds(&AppName::parse(name)?).await?;
        assert!(builds.iter().all(|b| b.artifact.is_none()), "{name}");
    }
    assert!(p.client.deploys(10).await?.is_empty());
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_build_shows_its_log_as_it_goes() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    // The build is sandboxed: of the outside it sees only its checkout and
    // its app's download caches, so `go` goes in its pip cache, which the
    // sandbox shows at /cache/pip.
    let go = p.dir().join("apptracker/cache/pip/slow-build/go");
    let command = "printf 'waiting-%s\\n' for-go; while [ ! -f /cache/pip/go ]; do sleep 0.05; done; printf 'we%s\\n' nt";
    let toml =
        // The timeout ends the build should the test fail before `go`.
        format!("type = \"generic\"\n[build]\ncommand = \"{command}\"\ntimeout = \"60s\"\n[run]\ncommand = \"x\"\n");
    let repo = AppRepo::new(p.dir().join("slow-build"))?;
    repo.commit(&[("slipway.toml", &toml)], "slow")?;
    let app = p.register("slow-build", &repo.path).await?;
    let b = p
        .client
        .request_build(&app, &RequestBuild::default())
        .await?;
    // The command's first line reaches the API while it still waits.
    poll(Duration::from_secs(30), || async {
        let now = p.client.build(b.id).await?;
        Ok(now.log.contains("waiting-for-go\n"))
    })
    .await?;
    let running = p.client.build(b.id).await?;
    assert_eq!(running.status, BuildStatus::Running, "{running:#?}");
    assert!(
        running.log.contains("build type: generic"),
        "{}",
        running.log
    );
    assert!(!running.log.contains("went\n"), "{}", running.log);

    std::fs::write(&go, "")?;
    poll(Duration::from_secs(30), || async {
        Ok(p.client.build(b.id).await?.status.is_terminal())
    })
    .await?;
    let done = p.client.build(b.id).await?;
    assert_eq!(done.status, BuildStatus::Succeeded, "{done:#?}");
    assert!(
        done.log.contains("waiting-for-go\nwent\n") && done.log.contains("packed"),
        "{}",
        done.log
    );
    assert_eq!(
        done.log.matches("waiting-for-go").count(),
        1,
        "{}",
        done.log
    );
    p.shutdown().await
}

/// Waits for build `id` to end; it must succeed.
async fn succeeded(p: &Platform, id: deploy::BuildId) -> anyhow::Result<Build> {
    poll(Duration::from_secs(90), || async {
        Ok(p.client.build(id).await?.status.is_terminal())
    })
    .await?;
    let b = p.client.build(id).await?;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    Ok(b)
}

/// A build asked for without a ref builds the tip of the app's registered
/// branch (`dev`, not `main`), labelled with the branch; `HEAD~1`, built or
/// deployed, is the parent of that tip, labelled as typed; a step past the
/// branch's history is refused saying how far it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builds_follow_the_apps_branch_and_head_counts_back_from_its_tip() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("branchy"))?;
    commit_hello(&repo, "main-1", true)?;
    repo.switch("dev")?;
    let dev_1 = commit_hello(&repo, "dev-1", true)?;
    let dev_2 = commit_hello(&repo, "dev-2", true)?;
    repo.switch("main")?;
    let main_2 = commit_hello(&repo, "main-2", true)?;
    let app = AppName::parse("branchy")?;
    let mut register = RegisterApp::new(app.clone(), repo.path.display().to_string());
    register.branch = Some("dev".into());
    p.client.register_app(&register).await?;

    let build = |git_ref: Option<&str>| {
        let git_ref = git_ref.map(GitRef::parse).transpose();
        let (client, app) = (&p.client, &app);
        async move {
            let req = RequestBuild { git_ref: git_ref? };
            anyhow::Ok(client.request_build(app, &req).await?)
        }
    };
    let tip = build(None).await?;
    assert_eq!(tip.commit, dev_2, "the tip of dev, not main: {tip:#?}");
    assert_eq!(tip.git_ref, "dev");
    succeeded(&p, tip.id).await?;

    let parent = build(Some("HEAD~1")).await?;
    assert_eq!(parent.commit, dev_1, "{parent:#?}");
    assert_eq!(parent.git_ref, "HEAD~1", "the label is the ref as typed");
    assert_ne!(parent.id, tip.id);
    assert_eq!(build(Some("HEAD")).await?.id, tip.id, "HEAD is dev's tip");
    assert_eq!(build(Some("main")).await?.commit, main_2);

    // A release of `HEAD~1` reuses that build and runs dev-1.
    p.wait_for_hosts(1).await?;
    let d = p.release_and_wait(&app, "HEAD~1", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    assert_eq!(d.build_id, Some(parent.id));
    assert_eq!(d.git_ref.as_deref(), Some("HEAD~1"));
    let shown = p.client.build(parent.id).await?;
    assert_eq!(Some(&shown.version), d.version.as_ref());
    let served = get_app(p.hosts[0].port).await?;
    assert!(served.starts_with("dev-1 "), "{served}");

    // dev holds main-1, dev-1 and dev-2.
    let e = build(Some("HEAD~9")).await.unwrap_err();
    let Some(ClientError::Api {
        status,
        code,
        message,
    }) = e.downcast_ref::<ClientError>()
    else {
        panic!("an API error: {e:#}");
    };
    assert_eq!((*status, code.as_str()), (422, "bad_ref"), "{message}");
    assert_eq!(
        message,
        "cannot resolve `HEAD~9`: `HEAD~9` names no commit: it goes back past the first commit: \
         `HEAD` (the tip of branch `dev`) has only 3 commits in its first-parent history, so \
         `HEAD~2` is the oldest it can name"
    );

    // A ref that is not one commit never reaches git: the API says why.
    let r = slipway_tests::http()
        .post(format!("{}/api/v1/apps/branchy/builds", p.base_url))
        .bearer_auth(&p.admin_token)
        .json(&serde_json::json!({ "git_ref": "main..dev" }))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body = r.text().await?;
    assert!(
        body.contains("a range names many commits; name one (`dev`)"),
        "{body}"
    );

    // A branch names a branch: registering a commit as one is refused.
    let mut bad = RegisterApp::new(AppName::parse("tilde")?, repo.path.display().to_string());
    bad.branch = Some("main~1".into());
    let e = p.client.register_app(&bad).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("names a commit, not a branch: register the branch (`main`)"),
        "{e}"
    );
    p.shutdown().await
}
