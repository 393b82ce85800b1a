//! The fault suite's in-process scenarios: the control plane's own parts
//! failing under a deploy. A lost bus message (a failed Redis publish)
//! costs `republish_after`, not `host_deadline`, and a lost final status
//! never leaves a watcher waiting: nothing is lost, nothing hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apptracker::Outgoing;
use deploy::{BusMessage, DeployEvent, DeployStatus, HostPhase};
use futures::StreamExt;
use slipway_tests::services::{postgres, redis};
use slipway_tests::{AppRepo, commit_hello, platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_deploy_message_is_sent_again_and_a_lost_end_still_ends_the_stream()
-> anyhow::Result<()> {
    let p = platform()
        .hosts(&["lossy-1", "lossy-2"])
        // Far beyond what the test waits: only asking again ends it.
        .configure(|c| {
            c.host_deadline = Duration::from_secs(600);
            c.republish_after = Duration::from_secs(1);
        })
        // Heartbeats would carry the deploy too (their answer's desired
        // fingerprint, `e2e::outages`): far apart here, so only asking
        // again can.
        .configure_grabbers(|g| g.heartbeat_interval = Duration::from_secs(60))
        .start()
        .await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;
    commit_hello(&repo, "A", true)?;

    // The first deploy message never leaves, nor does any final status.
    let deploys_lost = Arc::new(AtomicUsize::new(0));
    let ends_lost = Arc::new(AtomicUsize::new(0));
    let (d, e) = (deploys_lost.clone(), ends_lost.clone());
    p.tracker.bus().lose(move |m| match m {
        Outgoing::Deploy(_, BusMessage::Deploy(_)) => d.fetch_add(1, Ordering::SeqCst) == 0,
        Outgoing::Event(DeployEvent::Status { status, .. }) if status.is_terminal() => {
            e.fetch_add(1, Ordering::SeqCst);
            true
        }
        _ => false,
    });

    let created = p.release(&app, "main", None).await?;
    let mut stream = Box::pin(p.client.deploy_stream(created.id).await?);
    let mut last = None;
    let watched = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(ev) = stream.next().await {
            last = Some(ev?);
        }
        anyhow::Ok(())
    })
    .await;
    assert!(
        watched.is_ok(),
        "the deploy's stream never ended: {:#?}",
        p.client.deploy(created.id).await?
    );
    watched??;
    match &last {
        Some(DeployEvent::Status { status, .. }) => {
            assert_eq!(*status, DeployStatus::Succeeded, "{last:#?}")
        }
        other => panic!("the stream did not end with the deploy's status: {other:#?}"),
    }
    let done = p.client.deploy(created.id).await?;
    assert_eq!(done.status, DeployStatus::Succeeded, "{done:#?}");
    assert!(
        done.hosts.iter().all(|h| h.phase == HostPhase::Done),
        "{done:#?}"
    );
    assert!(
        deploys_lost.load(Ordering::SeqCst) >= 2,
        "the deploy was never published again"
    );
    assert!(
        ends_lost.load(Ordering::SeqCst) >= 1,
        "no final status was lost: the test proves nothing"
    );
    p.shutdown().await
}

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");

/// Where the killed AppTracker keeps its state.
enum Backend {
    /// SQLite, one AppTracker, killed and started again.
    Sqlite,
    /// PostgreSQL and Redis, two replicas: the one the deploy was made on
    /// is killed; the hosts talk to the other.
    Replicas { database_url: String, redis: String },
}

/// AppTracker (processes) is SIGKILLed while its hosts are in the middle
/// of a deploy: the deploy resumes and ends, every host's end reaches the
/// history (grabbers keep reporting until AppTracker answers), and every
/// host runs the new release.
async fn killed_mid_deploy(backend: Backend) -> anyhow::Result<()> {
    use slipway_tests::procs::{Proc, start_apptracker};
    use slipway_tests::{free_port, get_app, poll};

    let dir = tempfile::Builder::new().prefix("slipway-kill-").tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let prefix = format!("kill-{}", std::process::id());
    let mut extra = "host_deadline = \"90s\"\nrepublish_after = \"1s\"\n".to_string();
    if let Backend::Replicas {
        database_url,
        redis,
    } = &backend
    {
        extra.push_str(&format!(
            "database_url = \"{database_url}\"\nredis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"\n"
        ));
    }
    let tracker = start_apptracker(APPTRACKER, dir.path(), &logs, &extra).await?;
    let client = tracker.client.clone();
    let mut killed = tracker.proc;
    let config = dir.path().join("apptracker.toml");
    // The replica the hosts talk to: the same config on another port.
    let (hosts_url, _replica) = match &backend {
        Backend::Sqlite => (tracker.url.clone(), None),
        Backend::Replicas { .. } => {
            let port = free_port()?;
            let text = std::fs::read_to_string(&config)?;
            let listen = text
                .lines()
                .find(|l| l.starts_with("listen = "))
                .ok_or_else(|| anyhow::anyhow!("no listen line in {text}"))?;
            let other = dir.path().join("apptracker-b.toml");
            std::fs::write(
                &other,
                text.replace(listen, &format!("listen = \"127.0.0.1:{port}\"")),
            )?;
            let b = Proc::spawn(
                "apptracker-b",
                APPTRACKER,
                &[
                    "serve".into(),
                    "--config".into(),
                    other.display().to_string(),
                ],
                &[],
                &logs,
            )?;
            let url = format!("http://127.0.0.1:{port}");
            let health = format!("{url}/healthz");
            poll(Duration::from_secs(30), || async {
                Ok(reqwest::get(&health)
                    .await
                    .is_ok_and(|r| r.status().is_success()))
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: {}", b.tail()))?;
            (url, Some(b))
        }
    };
    let agent = client
        .create_token(&deploy::CreateToken::agent(
            "agents",
            deploy::Cluster::parse("local")?,
        ))
        .await?
        .token;
    let mut hosts = Vec::new();
    for name in ["k-1", "k-2", "k-3"] {
        let port = free_port()?;
        let mut args: Vec<String> = [
            "--server",
            &hosts_url,
            "--cluster",
            "local",
            "--host",
            name,
            "--root",
            &dir.path().join("hosts").join(name).display().to_string(),
            "--port-offset",
            &(i32::from(port) - i32::from(slipway_tests::APP_PORT)).to_string(),
            "--heartbeat",
            "500ms",
            "--stop-apps-on-exit",
            "--trusted-key",
            &tracker.public_key.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Backend::Replicas { redis, .. } = &backend {
            args.extend([
                "--redis".into(),
                redis.clone(),
                "--redis-prefix".into(),
                prefix.clone(),
            ]);
        }
        let proc = Proc::spawn(
            name,
            GRABBER,
            &args,
            &[("SLIPWAY_TOKEN", agent.clone())],
            &logs,
        )?;
        hosts.push((name, port, proc));
    }
    poll(Duration::from_secs(30), || async {
        Ok(client.hosts().await?.len() == 3)
    })
    .await?;
    let repo = AppRepo::new(dir.path().join("repo"))?;
    let app = deploy::AppName::parse("hello")?;
    client
        .register_app(&deploy::RegisterApp::new(
            app.clone(),
            repo.path.display().to_string(),
        ))
        .await?;
    commit_hello(&repo, "A", true)?;
    let req = deploy::CreateDeploy {
        app: app.clone(),
        version: None,
        git_ref: Some(deploy::GitRef::parse("main")?),
        cluster: deploy::Cluster::parse("local")?,
        hosts: None,
        strategy: Default::default(),
        max_failures: Default::default(),
        rollback_on_failure: false,
        confirm: None,
        wait: false,
    };
    let d = client.create_deploy(&req).await?;

    // Killed once a host is checking its new release (the 2 s bake
    // follows): the other reports are under way or still to come.
    poll(Duration::from_secs(120), || async {
        let d = client.deploy(d.id).await?;
        Ok(d.hosts.iter().any(|h| h.phase == HostPhase::Checking))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", killed.tail()))?;
    killed.kill().await?;
    let _again = Proc::spawn(
        "apptracker-again",
        APPTRACKER,
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &[],
        &logs,
    )?;
    poll(Duration::from_secs(120), || async {
        Ok(client
            .deploy(d.id)
            .await
            .is_ok_and(|d| d.status.is_terminal()))
    })
    .await?;
    let done = client.deploy(d.id).await?;
    assert_eq!(done.status, DeployStatus::Succeeded, "{done:#?}");
    let history = client.deploy_events(d.id).await?;
    for (name, port, _) in &hosts {
        assert!(
            history
                .iter()
                .any(|e| e.host.as_str() == *name && e.phase == HostPhase::Done),
            "{name}'s end is missing from the history: {history:#?}"
        );
        let version = done.version.as_ref().expect("a version");
        assert_eq!(get_app(*port).await?, format!("A {version}\n"), "{name}");
    }
    for (name, _, proc) in &mut hosts {
        assert!(proc.stop().await?, "{name} exits cleanly: {}", proc.tail());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apptracker_killed_mid_deploy_resumes_and_loses_no_end_on_sqlite() -> anyhow::Result<()> {
    killed_mid_deploy(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_deploy_the_other_ends_it_on_postgres() -> anyhow::Result<()> {
    let (Some(db), Some(redis)) = (postgres().await, redis().await) else {
        return Ok(());
    };
    killed_mid_deploy(Backend::Replicas {
        database_url: db.url.clone(),
        redis,
    })
    .await
}
