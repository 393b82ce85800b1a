//! The Redis bus under failure: Redis dies in the middle of a deploy; every
//! targeted host still converges, and grabbers keep receiving deploys once
//! it is back.

use deploy::{DeployStatus, HostPhase};
use slipway_tests::services::{OwnRedis, postgres};
use slipway_tests::{AppRepo, commit_hello, get_app, platform};

const HOSTS: [&str; 3] = ["local-1", "local-2", "local-3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_deploy_loses_nothing() -> anyhow::Result<()> {
    let (Some(mut redis), Some(db)) = (OwnRedis::start().await, postgres().await) else {
        return Ok(());
    };
    let (db_url, redis_url) = (db.url.clone(), redis.url());
    let p = platform()
        .hosts(&HOSTS)
        .configure(move |c| {
            c.database_url = Some(db_url);
            c.redis_url = Some(redis_url);
        })
        // Heartbeats would carry the deploy too (their answer's desired
        // fingerprint, `e2e::outages`): far apart here, so only the bus
        // can, and the test sees what a Redis restart does to it.
        .configure_grabbers(|g| g.heartbeat_interval = std::time::Duration::from_secs(60))
        .start()
        .await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");

    // Build B first, so the deploy below publishes at once.
    commit_hello(&repo, "B", true)?;
    let b = p
        .client
        .request_build(&app, &deploy::RequestBuild::default())
        .await?;
    slipway_tests::poll(std::time::Duration::from_secs(60), || async {
        Ok(p.client.build(b.id).await?.status.is_terminal())
    })
    .await?;

    // Redis dies; the deploy is created while it is down, so its message is
    // lost. The record is in the database.
    redis.kill().await?;
    let d = p.release(&app, b.version.as_str(), None).await?;
    let mid = p.client.deploy(d.id).await?;
    assert!(
        mid.hosts.iter().all(|h| h.phase == HostPhase::Pending),
        "nobody heard the deploy while Redis was down: {mid:#?}"
    );
    redis.restart().await?;
    // The grabbers resubscribe, re-read their desired state and converge.
    let d = p.wait_deploy(d.id).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("B {}\n", b.version));
    }

    // The same grabbers, subscribed before the restart, hear the next deploy.
    commit_hello(&repo, "C", true)?;
    let c = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(c.status, DeployStatus::Succeeded, "{c:#?}");
    let version_c = c.version.expect("version");
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("C {version_c}\n"));
    }
    p.shutdown().await
}
