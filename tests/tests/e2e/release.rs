//! The release phase: a `[release] command` runs exactly once for a
//! three-host deploy, on the first host by name, before any host switches,
//! and its output is on the deploy; a failing one fails the deploy with its
//! log and no host switches; a deploy of what every host runs already (a
//! restart) does not run it; a host that never answers fails the deploy at
//! the deadline, saying so.

use std::time::Duration;

use deploy::{DeployStatus, HostPhase, ReleasePhaseStatus};
use slipway_tests::{AppRepo, Platform, get_app, hello_app, platform};

const HOSTS: [&str; 3] = ["local-1", "local-2", "local-3"];

/// Commits the test app greeting with `message`, with `release` as its
/// `[release] command`.
fn commit_with_release(repo: &AppRepo, message: &str, release: &str) -> anyhow::Result<String> {
    let mut files = hello_app(message, true);
    let toml = &mut files
        .iter_mut()
        .find(|(name, _)| *name == "slipway.toml")
        .expect("the test app has a slipway.toml")
        .1;
    toml.push_str(&format!(
        "\n[release]\ncommand = {release:?}\ntimeout = \"20s\"\n"
    ));
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, message)
}

/// The lines the release commands appended to `runs`.
fn runs(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_command_runs_once_before_any_switch_and_a_failing_one_switches_nothing()
-> anyhow::Result<()> {
    let p = platform().hosts(&HOSTS).start().await?;
    once_before_any_switch(&p).await?;
    p.shutdown().await
}

/// The same over PostgreSQL and the Redis bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_on_postgresql_and_redis() -> anyhow::Result<()> {
    let (Some(db), Some(redis)) = (
        slipway_tests::services::postgres().await,
        slipway_tests::services::redis().await,
    ) else {
        return Ok(());
    };
    let db_url = db.url.clone();
    let p = platform()
        .hosts(&HOSTS)
        .configure(move |c| {
            c.database_url = Some(db_url);
            c.redis_url = Some(redis);
        })
        .start()
        .await?;
    once_before_any_switch(&p).await?;
    p.shutdown().await
}

/// A runs its release command once before any host switches; B's fails
/// and switches nothing; A again is a restart and runs none.
async fn once_before_any_switch(p: &Platform) -> anyhow::Result<()> {
    p.wait_for_hosts(3).await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let ran = p.dir().join("release-runs.log");
    // Each run appends where and what it ran, and says so on its output.
    let record = format!(
        "echo \"$SLIPWAY_HOST $SLIPWAY_VERSION $SLIPWAY_PHASE $(cat app.py | wc -l)\" >> {}; \
         echo migrating to $SLIPWAY_VERSION",
        ran.display()
    );
    let sha_a = commit_with_release(&repo, "A", &record)?;
    let app = p.register("hello", &repo.path).await?;

    let a = p.release_and_wait(&app, &sha_a, None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let version_a = a.version.clone().expect("a version");
    let lines = runs(&ran);
    assert_eq!(lines.len(), 1, "exactly once for three hosts: {lines:?}");
    let fields: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(
        fields[..3],
        ["local-1", version_a.as_str(), "release"],
        "on the first host by name, from the new release: {lines:?}"
    );
    assert_ne!(fields[3], "0", "it ran from the release directory");
    let phase = a
        .release_phase
        .clone()
        .expect("the deploy shows its release phase");
    assert_eq!(phase.status, ReleasePhaseStatus::Succeeded);
    assert_eq!(phase.host.as_str(), "local-1");
    assert!(
        phase.log.contains(&format!("migrating to {version_a}")),
        "its output is on the deploy: {phase:#?}"
    );
    let done = phase.finished_at.expect("it ended");
    // Ended: AppTracker names no release phase to run any more, to the
    // host that ran it or another, so a replayed message runs nothing.
    let agent = deploy::Client::new(p.base_url.clone()).with_token(p.agent_token.clone());
    for host in ["local-1", "local-2"] {
        let e = agent
            .release_phase_asked(
                a.id,
                &deploy::Cluster::parse("local")?,
                &deploy::HostName::parse(host)?,
            )
            .await
            .expect_err("an ended release phase is asked of no host");
        assert_eq!(e.code(), Some("conflict"), "{host}: {e}");
    }
    let events = p.client.deploy_events(a.id).await?;
    let switches: Vec<_> = events
        .iter()
        .filter(|e| e.phase == HostPhase::Switching)
        .collect();
    assert_eq!(switches.len(), 3, "{events:#?}");
    assert!(
        switches.iter().all(|e| e.at >= done),
        "no host switched before the release phase ended at {done}: {switches:#?}"
    );
    for h in &p.hosts {
        assert!(
            get_app(h.port).await?.starts_with("A "),
            "{} serves A",
            h.name
        );
    }

    // B's release command fails: the deploy fails with its log, no host
    // is asked to switch, A keeps serving everywhere.
    let failing = format!(
        "echo \"$SLIPWAY_HOST $SLIPWAY_VERSION\" >> {}; \
         echo 'ERROR: migration 0042 failed: column users.email exists' >&2; exit 3",
        ran.display()
    );
    let sha_b = commit_with_release(&repo, "B", &failing)?;
    let b = p.release_and_wait(&app, &sha_b, None).await?;
    assert_eq!(b.status, DeployStatus::Failed, "{b:#?}");
    let error = b.error.clone().unwrap_or_default();
    assert!(
        error.contains("release phase failed on local-1") && error.contains("exit status: 3"),
        "{error}"
    );
    assert!(
        error.contains("migration 0042 failed"),
        "the deploy's error carries the command's log: {error}"
    );
    let phase = b.release_phase.clone().expect("a release phase");
    assert_eq!(phase.status, ReleasePhaseStatus::Failed);
    assert!(
        phase.log.contains("column users.email exists"),
        "{phase:#?}"
    );
    assert_eq!(runs(&ran).len(), 2, "B's ran once too: {:?}", runs(&ran));
    assert!(
        b.hosts.iter().all(|h| h.phase == HostPhase::NotStarted),
        "{:#?}",
        b.hosts
    );
    let events = p.client.deploy_events(b.id).await?;
    assert!(
        events.iter().all(|e| e.phase == HostPhase::NotStarted),
        "no host did anything: {events:#?}"
    );
    for h in &p.hosts {
        assert_eq!(h.current("hello").as_deref(), Some(version_a.as_str()));
        assert!(
            get_app(h.port).await?.starts_with("A "),
            "{} serves A",
            h.name
        );
    }

    // A again, which every host runs: a restart, no release phase.
    let again = p.release_and_wait(&app, version_a.as_str(), None).await?;
    assert_eq!(again.status, DeployStatus::Succeeded, "{again:#?}");
    assert_eq!(again.release_phase, None);
    assert_eq!(runs(&ran).len(), 2, "{:?}", runs(&ran));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_phase_nobody_answers_fails_the_deploy_at_its_deadline() -> anyhow::Result<()> {
    let mut p = platform()
        .hosts(&HOSTS)
        .configure(|c| c.host_deadline = Duration::from_secs(1))
        .start()
        .await?;
    p.wait_for_hosts(3).await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let ran = p.dir().join("release-runs.log");
    let sha = commit_with_release(&repo, "A", &format!("echo ran >> {}", ran.display()))?;
    let app = p.register("hello", &repo.path).await?;
    // Built first, so the grabber is stopped only for the deploy.
    let build = p
        .client
        .request_build(
            &app,
            &deploy::RequestBuild {
                git_ref: Some(deploy::GitRef::parse(&sha)?),
            },
        )
        .await?;
    slipway_tests::poll(Duration::from_secs(90), || async {
        Ok(p.client.build(build.id).await?.status == deploy::BuildStatus::Succeeded)
    })
    .await?;
    // local-1's grabber stops: still counted alive (its last heartbeat is
    // recent), so it is asked, and never answers.
    let first = p
        .hosts
        .iter()
        .position(|h| h.name.as_str() == "local-1")
        .expect("local-1");
    p.stop_grabber(first).await?;
    let d = p
        .release_and_wait(&app, build.version.as_str(), None)
        .await?;
    assert_eq!(d.status, DeployStatus::Failed, "{d:#?}");
    let error = d.error.clone().unwrap_or_default();
    assert!(
        error.contains("local-1 did not report within its deadline"),
        "{error}"
    );
    assert_eq!(
        d.release_phase.as_ref().map(|r| r.status),
        Some(ReleasePhaseStatus::Failed)
    );
    assert!(runs(&ran).is_empty(), "{:?}", runs(&ran));
    assert!(
        d.hosts.iter().all(|h| h.phase == HostPhase::NotStarted),
        "{:#?}",
        d.hosts
    );
    for h in &p.hosts {
        assert_eq!(h.current("hello"), None, "{} switched", h.name);
    }
    p.shutdown().await
}
