//! The fault suite's outages: the control plane's services, or a host's
//! network, away in the middle of a deploy. Redis down for 30 s;
//! PostgreSQL restarted; the object store refusing, then stalling, under
//! AppTracker; a host cut off from AppTracker and Redis (packets dropped,
//! as a partition does). In each, the deploy ends within its deadlines,
//! every host's end is in the history, and every host runs its desired
//! version afterwards: nothing is lost, nothing hangs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use deploy::{
    CreateDeploy, Deploy, DeployEvent, DeployStatus, HostPhase, Portion, Strategy, Version,
};
use futures::StreamExt;
use slipway_tests::proxy::{FaultProxy, Link};
use slipway_tests::services::{OwnPostgres, OwnRedis, postgres, redis, s3};
use slipway_tests::{AppRepo, Platform, commit_hello, free_port, get_app, platform, poll};

/// How long Redis stays down (the 30 s; `SLIPWAY_FAULT_OUTAGE_SECS`
/// to try others by hand).
fn outage() -> Duration {
    let secs = std::env::var("SLIPWAY_FAULT_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Deploys `version` everywhere with `strategy`.
async fn rollout(
    p: &Platform,
    app: &deploy::AppName,
    version: &Version,
    strategy: Strategy,
) -> anyhow::Result<Deploy> {
    Ok(p.client
        .create_deploy(&CreateDeploy {
            app: app.clone(),
            version: Some(version.clone()),
            git_ref: None,
            cluster: p.cluster.clone(),
            hosts: None,
            strategy,
            max_failures: Portion::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
        .await?)
}

/// Commits `message` and builds it (without deploying): its version.
async fn build(
    p: &Platform,
    repo: &AppRepo,
    app: &deploy::AppName,
    message: &str,
) -> anyhow::Result<Version> {
    commit_hello(repo, message, true)?;
    let b = p
        .client
        .request_build(app, &deploy::RequestBuild::default())
        .await?;
    poll(Duration::from_secs(120), || async {
        Ok(p.client.build(b.id).await?.status.is_terminal())
    })
    .await?;
    let b = p.client.build(b.id).await?;
    anyhow::ensure!(
        b.status == deploy::BuildStatus::Succeeded,
        "the build of {message} failed: {b:#?}"
    );
    Ok(b.version)
}

/// Waits until some host of deploy `id` is checking its new release (or
/// past it): the middle of the deploy.
async fn until_mid_deploy(p: &Platform, id: deploy::DeployId) -> anyhow::Result<()> {
    poll(Duration::from_secs(120), || async {
        let d = p.client.deploy(id).await?;
        Ok(d.hosts
            .iter()
            .any(|h| matches!(h.phase, HostPhase::Checking | HostPhase::Done)))
    })
    .await
}

/// Every host of `d` ended `done`, its end is in the history, and it
/// answers with `message` at `d`'s version.
async fn all_done(p: &Platform, d: &Deploy, message: &str) -> anyhow::Result<()> {
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let history = p.client.deploy_events(d.id).await?;
    let version = d.version.as_ref().expect("a version");
    for h in &p.hosts {
        assert!(
            history
                .iter()
                .any(|e| e.host == h.name && e.phase == HostPhase::Done),
            "{}'s end is missing from the history: {history:#?}",
            h.name
        );
        assert_eq!(
            get_app(h.port).await?,
            format!("{message} {version}\n"),
            "{}",
            h.name
        );
    }
    Ok(())
}

/// Registers `hello`, deploys its first commit (`A`) everywhere and checks
/// it runs: where every scenario starts from. Its repository, the app and
/// A's version.
async fn running_a(p: &Platform) -> anyhow::Result<(AppRepo, deploy::AppName, Version)> {
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let a = p.release_and_wait(&app, "main", None).await?;
    all_done(p, &a, "A").await?;
    let version = a.version.clone().expect("a version");
    Ok((repo, app, version))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_for_30_s_mid_deploy_holds_nothing_up_and_loses_nothing() -> anyhow::Result<()> {
    let (Some(mut redis), Some(db)) = (OwnRedis::start().await, postgres().await) else {
        return Ok(());
    };
    let (db_url, redis_url) = (db.url.clone(), redis.url());
    let p = platform()
        .hosts(["r-1", "r-2", "r-3"])
        .configure(move |c| {
            c.database_url = Some(db_url);
            c.redis_url = Some(redis_url);
            c.host_deadline = Duration::from_secs(180);
            c.republish_after = Duration::from_secs(2);
        })
        .start()
        .await?;
    let (repo, app, _) = running_a(&p).await?;
    let b = build(&p, &repo, &app, "B").await?;

    // One host at a time: the first is checking when Redis goes, the
    // others are asked while it is away.
    let strategy = Strategy::Rolling {
        batch: Portion::Count(1),
        bake_ms: 0,
        max_unavailable: None,
    };
    let d = rollout(&p, &app, &b, strategy).await?;
    let mut stream = Box::pin(p.client.deploy_stream(d.id).await?);
    until_mid_deploy(&p, d.id).await?;
    redis.kill().await?;
    let down = Instant::now();
    let mid = p.client.deploy(d.id).await?;
    assert!(
        mid.hosts.iter().any(|h| h.phase == HostPhase::Pending),
        "the next batches were not waiting: the test proves nothing: {mid:#?}"
    );
    // The later batches are asked with Redis away: the hosts learn it from
    // their heartbeat's answer (the desired state's fingerprint), so the
    // deploy does not wait for Redis.
    poll(outage(), || async {
        Ok(p.client.deploy(d.id).await?.status.is_terminal())
    })
    .await
    .map_err(|e| anyhow::anyhow!("the deploy waited for Redis: {e}"))?;
    let ended = down.elapsed();
    // The rest of the outage: its length, not a wait for something.
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    redis.restart().await?;

    // The stream opened before the outage ends with the deploy's status.
    let mut last = None;
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(ev) = stream.next().await {
            last = Some(ev?);
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the deploy's stream never ended"))??;
    assert!(
        matches!(
            &last,
            Some(DeployEvent::Status {
                status: DeployStatus::Succeeded,
                ..
            })
        ),
        "{last:#?}"
    );
    let d = p.wait_deploy(d.id).await?;
    all_done(&p, &d, "B").await?;
    eprintln!(
        "redis down {:?}: the deploy ended {ended:?} into it",
        outage()
    );

    // Redis is back: the grabbers subscribe again and hear the next deploy.
    commit_hello(&repo, "C", true)?;
    let c = p.release_and_wait(&app, "main", None).await?;
    all_done(&p, &c, "C").await?;
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_deploy_loses_no_host_event() -> anyhow::Result<()> {
    let Some(mut pg) = OwnPostgres::start().await else {
        return Ok(());
    };
    let url = pg.url();
    let p = platform()
        .hosts(["pg-1", "pg-2", "pg-3"])
        .configure(move |c| {
            c.database_url = Some(url);
            c.host_deadline = Duration::from_secs(120);
        })
        .start()
        .await?;
    let (repo, app, _) = running_a(&p).await?;
    let b = build(&p, &repo, &app, "B").await?;

    let d = rollout(&p, &app, &b, Strategy::AllAtOnce).await?;
    until_mid_deploy(&p, d.id).await?;
    pg.stop().await?;
    // While it is down the API says so within the pool's acquire timeout
    // (10 s): 503, to retry; hosts finishing their checks keep their
    // reports until it is back.
    let refused = tokio::time::timeout(Duration::from_secs(20), p.client.deploy(d.id)).await;
    assert!(
        matches!(
            refused,
            Ok(Err(deploy::ClientError::Api { status: 503, .. }))
        ),
        "with the database down a read must fail with 503, within 10 s: {refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.restart().await?;
    let d = p.wait_deploy(d.id).await?;
    all_done(&p, &d, "B").await?;
    // The pool is whole again: the next deploy goes through.
    commit_hello(&repo, "C", true)?;
    let c = p.release_and_wait(&app, "main", None).await?;
    all_done(&p, &c, "C").await?;
    p.shutdown().await
}

/// `127.0.0.1:PORT` of an `http://` or `redis://` URL.
fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    Ok(host_port.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_object_store_refusing_or_stalling_fails_the_build_cleanly() -> anyhow::Result<()> {
    let Some(s3) = s3().await else {
        return Ok(());
    };
    let proxy = FaultProxy::start(addr_of(&s3.endpoint)?).await?;
    let mut store = s3.config();
    store.endpoint_url = Some(format!("http://{}", proxy.addr()));
    store.timeout = Duration::from_secs(2);
    let p = platform()
        .hosts(["s-1", "s-2"])
        .configure(move |c| c.s3 = Some(store))
        .start()
        .await?;
    let (repo, app, version_a) = running_a(&p).await?;

    for (link, message) in [(Link::Refusing, "B"), (Link::Partitioned, "C")] {
        proxy.set(link);
        commit_hello(&repo, message, true)?;
        let started = Instant::now();
        let d = p.release_and_wait(&app, "main", None).await?;
        assert_eq!(d.status, DeployStatus::Failed, "{link:?}: {d:#?}");
        eprintln!(
            "store {link:?}: the deploy failed in {:?}",
            started.elapsed()
        );
        for h in &p.hosts {
            assert_eq!(
                get_app(h.port).await?,
                format!("A {version_a}\n"),
                "{link:?}: {} runs the old release",
                h.name
            );
        }
        let builds = p.client.builds(&app).await?;
        let last = builds.first().expect("the build");
        assert_eq!(
            last.status,
            deploy::BuildStatus::Failed,
            "{link:?}: {last:#?}"
        );
    }

    // The store is back: the same commit builds and deploys.
    proxy.set(Link::Up);
    let c = p.release_and_wait(&app, "main", None).await?;
    all_done(&p, &c, "C").await?;
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_cut_off_mid_deploy_is_unreachable_then_converges() -> anyhow::Result<()> {
    let Some(redis_url) = redis().await else {
        return Ok(());
    };
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    // The cut host reaches AppTracker and Redis through these.
    let http = FaultProxy::start(listen).await?;
    let bus = FaultProxy::start(addr_of(&redis_url)?).await?;
    let (via_http, via_bus) = (
        format!("http://{}", http.addr()),
        format!("redis://{}", bus.addr()),
    );
    let p = platform()
        .hosts(["cut-1", "cut-2"])
        .configure(move |c| {
            c.listen = listen;
            c.redis_url = Some(redis_url);
            c.host_unreachable = Duration::from_secs(4);
            c.host_deadline = Duration::from_secs(120);
        })
        .configure_grabbers(move |g| {
            if g.host.as_str() == "cut-1" {
                g.server = via_http.clone();
                g.redis_url = Some(via_bus.clone());
            }
        })
        .start()
        .await?;
    let (repo, app, version_a) = running_a(&p).await?;
    let b = build(&p, &repo, &app, "B").await?;

    let d = rollout(&p, &app, &b, Strategy::AllAtOnce).await?;
    poll(Duration::from_secs(120), || async {
        let d = p.client.deploy(d.id).await?;
        Ok(d.hosts
            .iter()
            .any(|h| h.host.as_str() == "cut-1" && h.phase == HostPhase::Checking))
    })
    .await?;
    http.set(Link::Partitioned);
    bus.set(Link::Partitioned);
    let d = p.wait_deploy(d.id).await?;
    let phase = |d: &Deploy, host: &str| {
        d.hosts
            .iter()
            .find(|h| h.host.as_str() == host)
            .map(|h| h.phase)
    };
    assert_eq!(phase(&d, "cut-1"), Some(HostPhase::Unreachable), "{d:#?}");
    assert_eq!(phase(&d, "cut-2"), Some(HostPhase::Done), "{d:#?}");
    // One host of two done: `partial`, not `succeeded`.
    assert_eq!(d.status, DeployStatus::Partial, "{d:#?}");
    let cut = deploy::HostName::parse("cut-1")?;
    let desired = p.client.desired_state(&p.cluster, &cut).await?;
    assert!(
        desired.apps.iter().any(|r| r.version == version_a),
        "the unreachable host's desired version is the one before: {desired:#?}"
    );

    // Back on the network: it goes back to what it should run, says so,
    // and the deploy stays as it ended.
    http.set(Link::Up);
    bus.set(Link::Up);
    let port = p.host("cut-1").port;
    poll(Duration::from_secs(60), || async {
        Ok(get_app(port)
            .await
            .is_ok_and(|s| s == format!("A {version_a}\n")))
    })
    .await?;
    poll(Duration::from_secs(30), || async {
        let hosts = p.client.hosts().await?;
        Ok(hosts.iter().any(|h| {
            h.name == cut
                && h.apps
                    .iter()
                    .any(|a| a.app == app && a.version.as_ref() == Some(&version_a))
        }))
    })
    .await?;
    let after = p.client.deploy(d.id).await?;
    assert_eq!(after.status, DeployStatus::Partial, "{after:#?}");
    assert_eq!(
        phase(&after, "cut-1"),
        Some(HostPhase::Unreachable),
        "its late reports changed how the deploy ended: {after:#?}"
    );
    p.shutdown().await
}
