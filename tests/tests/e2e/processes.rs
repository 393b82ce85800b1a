//! The production shape: separate `apptracker`, `packer worker` and five
//! `grabber` processes in two clusters, on PostgreSQL, Redis and S3, each
//! configured as an operator would (a TOML file, flags, environment).

use std::path::Path;
use std::time::Duration;

use deploy::{Client, Cluster, CreateDeploy, CreateToken, DeployStatus, GitRef, HostPhase};
use slipway_tests::procs::{Proc, TrackerProc, output, packer_keygen, start_apptracker};
use slipway_tests::services::{postgres, redis, s3};
use slipway_tests::{APP_PORT, AppRepo, commit_hello, free_port, get_app, poll};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");
const PACKER: &str = env!("CARGO_BIN_EXE_slipway-packer");
/// This test's own Redis channels: other tests (and other runs) share the
/// server.
fn prefix() -> String {
    format!("procs-{}", std::process::id())
}

struct Host {
    cluster: &'static str,
    name: &'static str,
    port: u16,
    proc: Option<Proc>,
}

/// Starts host `h`'s grabber under `root`, trusting the keys listed in
/// `<root>/trusted.keys`.
fn grabber(
    h: &Host,
    server: &str,
    token: &str,
    redis: &str,
    root: &Path,
    logs: &Path,
) -> anyhow::Result<Proc> {
    let args: Vec<String> = [
        "--server",
        server,
        "--cluster",
        h.cluster,
        "--host",
        h.name,
        "--root",
        &root.join(h.name).display().to_string(),
        "--port-offset",
        &(i32::from(h.port) - i32::from(APP_PORT)).to_string(),
        "--heartbeat",
        "500ms",
        "--redis",
        redis,
        "--redis-prefix",
        &prefix(),
        "--stop-apps-on-exit",
        "--trusted-keys-file",
        &root.join("trusted.keys").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::spawn(
        h.name,
        GRABBER,
        &args,
        &[("SLIPWAY_TOKEN", token.to_string())],
        logs,
    )
}

async fn wait_deploy(c: &Client, id: deploy::DeployId) -> anyhow::Result<deploy::Deploy> {
    poll(Duration::from_secs(120), || async {
        Ok(c.deploy(id).await?.status.is_terminal())
    })
    .await?;
    Ok(c.deploy(id).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_processes_on_postgresql_redis_and_s3() -> anyhow::Result<()> {
    let (Some(db), Some(redis), Some(s3)) = (postgres().await, redis().await, s3().await) else {
        return Ok(());
    };
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-procs-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;

    // AppTracker, configured by a file; no builder inside: packer workers build.
    let s3c = s3.config();
    let extra = format!(
        "database_url = \"{}\"\nredis_url = \"{redis}\"\nredis_prefix = \"{}\"\nbuilder = false\n\n[s3]\nbucket = \"{}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\nforce_path_style = true\ncreate_bucket = true\n",
        db.url,
        prefix(),
        s3c.bucket,
        s3.endpoint,
    );
    let TrackerProc {
        proc: mut tracker,
        url: server,
        client,
        public_key: tracker_key,
    } = start_apptracker(APPTRACKER, dir.path(), &logs, &extra).await?;
    // The worker signs with a key of its own; hosts trust it and
    // AppTracker's (unused here: it does not build).
    let signing_key = dir.path().join("packer-signing.key");
    let packer_key = packer_keygen(PACKER, &signing_key).await?;

    let token = |name: &str, cluster: &str| {
        let client = client.clone();
        let (name, cluster) = (name.to_string(), cluster.to_string());
        async move {
            anyhow::Ok(
                client
                    .create_token(&CreateToken::agent(name, Cluster::parse(cluster)?))
                    .await?
                    .token,
            )
        }
    };
    let builders = client
        .create_token(&CreateToken::new("builders", "builder"))
        .await?
        .token;
    let alpha = token("agents-alpha", "alpha").await?;
    let beta = token("agents-beta", "beta").await?;

    let mut packer = Proc::spawn(
        "packer",
        PACKER,
        &["worker", "--server", &server, "--poll", "200ms"].map(String::from),
        &[
            ("SLIPWAY_TOKEN", builders.clone()),
            (
                "SLIPWAY_PACKER_CACHE",
                dir.path().join("packer-cache").display().to_string(),
            ),
            ("SLIPWAY_SIGNING_KEY", signing_key.display().to_string()),
        ],
        &logs,
    )?;
    let root = dir.path().join("hosts");
    std::fs::create_dir_all(&root)?;
    std::fs::write(
        root.join("trusted.keys"),
        format!("# packer workers\n{packer_key}\n# apptracker's builder\n{tracker_key}\n"),
    )?;
    let mut hosts = Vec::new();
    for (cluster, name) in [
        ("alpha", "a-1"),
        ("alpha", "a-2"),
        ("alpha", "a-3"),
        ("beta", "b-1"),
        ("beta", "b-2"),
    ] {
        hosts.push(Host {
            cluster,
            name,
            port: free_port()?,
            proc: None,
        });
    }
    for h in &mut hosts {
        let t = if h.cluster == "alpha" { &alpha } else { &beta };
        h.proc = Some(grabber(h, &server, t, &redis, &root, &logs)?);
    }
    poll(Duration::from_secs(30), || async {
        Ok(client.hosts().await?.len() == 5)
    })
    .await?;

    let repo = AppRepo::new(dir.path().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    client
        .register_app(&deploy::RegisterApp::new(
            deploy::AppName::parse("hello")?,
            repo.path.display().to_string(),
        ))
        .await?;
    let release = |cluster: &str, r: &str| {
        let client = client.clone();
        let (cluster, r) = (cluster.to_string(), r.to_string());
        async move {
            let d = client
                .create_deploy(&CreateDeploy {
                    app: deploy::AppName::parse("hello")?,
                    version: None,
                    git_ref: Some(GitRef::parse(r)?),
                    cluster: Cluster::parse(cluster)?,
                    hosts: None,
                    strategy: Default::default(),
                    max_failures: Default::default(),
                    rollback_on_failure: false,
                    confirm: None,
                    wait: false,
                })
                .await?;
            anyhow::Ok(d)
        }
    };

    // A reaches both clusters, built once by the worker.
    for cluster in ["alpha", "beta"] {
        let d = release(cluster, "main").await?;
        let d = wait_deploy(&client, d.id).await?;
        assert_eq!(
            d.status,
            DeployStatus::Succeeded,
            "{d:#?}\n{}",
            packer.tail()
        );
    }
    let builds = client.builds(&deploy::AppName::parse("hello")?).await?;
    assert_eq!(builds.len(), 1, "one commit, one build");
    let version_a = builds[0].version.clone();
    for h in &hosts {
        assert_eq!(
            get_app(h.port).await?,
            format!("A {version_a}\n"),
            "{}",
            h.name
        );
    }

    // b-2 is stopped while B is published to beta, and converges when it
    // starts again.
    let b2 = hosts.iter_mut().find(|h| h.name == "b-2").expect("b-2");
    assert!(
        b2.proc.as_mut().expect("running").stop().await?,
        "b-2 exits cleanly on SIGTERM"
    );
    commit_hello(&repo, "B", true)?;
    let d = release("beta", "main").await?;
    poll(Duration::from_secs(60), || async {
        let d = client.deploy(d.id).await?;
        Ok(d.hosts
            .iter()
            .any(|h| h.host.as_str() == "b-1" && h.phase == HostPhase::Done))
    })
    .await?;
    let mid = client.deploy(d.id).await?;
    assert!(
        mid.hosts
            .iter()
            .any(|h| h.host.as_str() == "b-2" && h.phase == HostPhase::Pending),
        "{mid:#?}"
    );
    assert_eq!(mid.status, DeployStatus::Running);
    let b2 = hosts.iter_mut().find(|h| h.name == "b-2").expect("b-2");
    b2.proc = Some(grabber(b2, &server, &beta, &redis, &root, &logs)?);
    let d = wait_deploy(&client, d.id).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version_b = d.version.clone().expect("version");
    for h in &hosts {
        let expect = if h.cluster == "beta" {
            &version_b
        } else {
            &version_a
        };
        let want = if h.cluster == "beta" { "B" } else { "A" };
        assert_eq!(
            get_app(h.port).await?,
            format!("{want} {expect}\n"),
            "{}",
            h.name
        );
    }

    // C fails its health check on alpha: every alpha host rolls back to A.
    commit_hello(&repo, "C", false)?;
    let d = release("alpha", "main").await?;
    let d = wait_deploy(&client, d.id).await?;
    assert_eq!(d.status, DeployStatus::Failed, "{d:#?}");
    for h in &d.hosts {
        assert_eq!(h.failed_phase, Some(HostPhase::Checking), "{h:#?}");
        assert!(h.rolled_back);
        assert!(
            h.log_tail
                .as_deref()
                .unwrap_or_default()
                .contains("broken on purpose in C")
        );
    }
    for h in hosts.iter().filter(|h| h.cluster == "alpha") {
        assert_eq!(
            get_app(h.port).await?,
            format!("A {version_a}\n"),
            "{}",
            h.name
        );
    }

    // Every process shuts down cleanly on SIGTERM.
    for h in &mut hosts {
        let p = h.proc.as_mut().expect("running");
        assert!(p.stop().await?, "{} exits cleanly: {}", h.name, p.tail());
    }
    assert!(
        packer.stop().await?,
        "packer exits cleanly: {}",
        packer.tail()
    );
    assert!(
        tracker.stop().await?,
        "apptracker exits cleanly: {}",
        tracker.tail()
    );
    Ok(())
}

/// A grabber with nothing to trust refuses to start, and says how to fix it;
/// a malformed key is refused by the flag parser.
#[tokio::test]
async fn a_grabber_without_a_trusted_key_refuses_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("host").display().to_string();
    let base = ["--server", "http://127.0.0.1:9", "--root", &root];
    // A grabber that does not refuse would run on: fail, not hang.
    let refused = |args: Vec<String>| async move {
        match tokio::time::timeout(Duration::from_secs(30), output(GRABBER, &args, &[])).await {
            Ok(Ok(stdout)) => panic!("the grabber exited successfully: {stdout}"),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => panic!("the grabber started instead of refusing"),
        }
    };
    let e = refused(base.map(String::from).to_vec()).await;
    assert!(
        e.contains("no trusted keys") && e.contains("--trusted-key"),
        "{e}"
    );
    let mut args = base.map(String::from).to_vec();
    args.extend(["--trusted-key".into(), "ed25519:not-a-key".into()]);
    let e = refused(args).await;
    assert!(e.contains("invalid public key"), "{e}");
    assert!(
        !dir.path().join("host").exists(),
        "refused before touching the host"
    );
    Ok(())
}
