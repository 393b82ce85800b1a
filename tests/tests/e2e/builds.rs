//! Build failures are clear, and visible through the API: in the build's
//! error line and in its log (a missing run command, an unknown type, a
//! failing command, a timeout, no `slipway.toml`, a dependency that does not
//! exist, an interpreter pin the builder lacks, a package manager that
//! cannot be had).

use std::time::Duration;

use deploy::{AppName, Build, BuildStatus, RequestBuild};
use slipway_tests::{AppRepo, Platform, platform, poll};

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
