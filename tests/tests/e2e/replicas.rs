//! Two AppTracker replicas on different ports sharing PostgreSQL, Redis and
//! S3: a deploy created on one is followed live from the other.

use deploy::{DeployEvent, DeployStatus, HostPhase};
use futures::StreamExt;
use slipway_tests::services::{postgres, redis, s3};
use slipway_tests::{AppRepo, commit_hello, platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_made_on_one_replica_is_followed_live_on_the_other() -> anyhow::Result<()> {
    let (Some(db), Some(redis), Some(s3)) = (postgres().await, redis().await, s3().await) else {
        return Ok(());
    };
    let db_url = db.url.clone();
    let hosts = ["local-1", "local-2"];
    let mut p = platform()
        .hosts(&hosts)
        .configure(move |c| {
            c.database_url = Some(db_url);
            c.redis_url = Some(redis);
            c.s3 = Some(s3.config());
        })
        .start()
        .await?;
    let replica_url = p.start_replica().await?;
    assert_ne!(replica_url, p.base_url);
    let replica = deploy::Client::new(replica_url).with_token(p.admin_token.clone());
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;

    // With the grabbers away, the deploy waits: everything the replica's
    // watcher sees after its snapshot happens live.
    p.stop_grabber(0).await?;
    p.stop_grabber(1).await?;
    let d = p.release(&app, "main", None).await?;
    let mut events = Box::pin(replica.deploy_stream(d.id).await?);
    let mut seen: Vec<(String, HostPhase)> = Vec::new();
    let mut snapshot_done = false;
    p.start_grabber(0);
    p.start_grabber(1);
    let status = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        while let Some(ev) = events.next().await {
            match ev? {
                DeployEvent::Host { host, .. } if snapshot_done => {
                    seen.push((host.host.to_string(), host.phase));
                }
                DeployEvent::Host { host, .. } => {
                    assert!(
                        !host.phase.is_terminal(),
                        "snapshot before any host moved: {host:?}"
                    );
                }
                DeployEvent::Status { status, .. } => {
                    snapshot_done = true;
                    if status.is_terminal() {
                        return Ok::<_, anyhow::Error>(status);
                    }
                }
                DeployEvent::Unknown => {}
            }
        }
        anyhow::bail!("the replica's stream ended before the deploy did")
    })
    .await??;
    assert_eq!(status, DeployStatus::Succeeded);
    for host in hosts {
        let phases: Vec<HostPhase> = seen
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, ph)| *ph)
            .collect();
        assert!(
            phases.contains(&HostPhase::Downloading),
            "{host}: {phases:?}"
        );
        assert_eq!(phases.last(), Some(&HostPhase::Done), "{host}: {phases:?}");
        let done = phases.iter().filter(|ph| **ph == HostPhase::Done).count();
        assert_eq!(done, 1, "each row is sent once: {host}: {phases:?}");
    }
    // The replica reads the same record.
    assert_eq!(replica.deploy(d.id).await?.status, DeployStatus::Succeeded);
    p.shutdown().await
}
