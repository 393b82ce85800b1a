//! Apps fetched from a real git remote on loopback (`git daemon`, the
//! `git://` protocol) go to running on two hosts; a ref that does not exist
//! is a clear error that starts nothing.

use std::time::Duration;

use deploy::DeployStatus;
use slipway_tests::procs::Proc;
use slipway_tests::{AppRepo, Platform, commit_hello, free_port, poll};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_from_a_git_daemon_remote_reaches_two_hosts() -> anyhow::Result<()> {
    let p = Platform::start(&["local-1", "local-2"]).await?;
    let served = p.dir.path().join("served");
    let repo = AppRepo::new(served.join("hello"))?;
    commit_hello(&repo, "A", true)?;
    let port = free_port()?;
    let args: Vec<String> = [
        "daemon",
        "--export-all",
        "--reuseaddr",
        "--listen=127.0.0.1",
        &format!("--port={port}"),
        &format!("--base-path={}", served.display()),
        &served.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let logs = p.dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut daemon = Proc::spawn("git-daemon", "git", &args, &[], &logs)?;
    let addr = format!("127.0.0.1:{port}");
    poll(Duration::from_secs(10), || async {
        Ok(tokio::net::TcpStream::connect(&addr).await.is_ok())
    })
    .await?;

    let url = format!("git://127.0.0.1:{port}/hello");
    let app = deploy::AppName::parse("hello")?;
    p.client
        .register_app(&deploy::RegisterApp::new(app.clone(), url.clone()))
        .await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version = d.version.expect("version");
    for h in &p.hosts {
        assert_eq!(h.get().await?, format!("A {version}\n"));
    }

    // A ref the remote does not have: refused with the ref named, no build.
    let e = p.release(&app, "no-such-branch", None).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("no-such-branch") && e.contains("bad_ref"), "{e}");
    assert_eq!(p.client.builds(&app).await?.len(), 1);
    assert_eq!(p.client.deploys(10).await?.len(), 1);

    daemon.stop().await?;
    p.shutdown().await
}
