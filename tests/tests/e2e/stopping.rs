//! Stopping whatever is in flight: `slipway dev` with a deploy whose health
//! check will not pass for ten minutes stops within its stop timeout on
//! SIGTERM, and at once on a second signal, taking its apps down with it
//! (it used to wait on the install, then on reports to an AppTracker that
//! had stopped, and ignored a second Ctrl-C).

use std::path::Path;
use std::time::{Duration, Instant};

use deploy::{Client, CreateDeploy, DeployStatus, HostPhase};
use nix::sys::signal::Signal;
use slipway_tests::procs::Proc;
use slipway_tests::{free_port, poll};

const DEV: &str = env!("CARGO_BIN_EXE_slipway-dev");

/// An app that runs but never passes its health check (a 404 for ten
/// minutes), declared on `port` (host `local-1` adds 100).
fn stuck_example(dir: &Path, port: u16) -> anyhow::Result<()> {
    let app = dir.join("stuck");
    std::fs::create_dir_all(&app)?;
    std::fs::write(
        app.join("slipway.toml"),
        format!(
            "name = \"stuck\"\ntype = \"generic\"\n\n[build]\ncommand = \"true\"\n\n[run]\n\
             command = \"python3 -m http.server $PORT --bind 127.0.0.1\"\nport = {port}\n\
             stop_timeout = \"5s\"\n\n[health]\nhttp = \"/never-there\"\ntimeout = \"10m\"\n"
        ),
    )?;
    std::fs::write(app.join("index.html"), "stuck\n")?;
    Ok(())
}

/// Starts `slipway dev` with one host and the stuck app, deploys it, and
/// returns once its health check is under way: the process and the app's
/// port on `local-1`.
async fn dev_with_a_deploy_in_flight(dir: &Path) -> anyhow::Result<(Proc, u16)> {
    let examples = dir.join("examples");
    let declared = free_port()? - 100;
    stuck_example(&examples, declared)?;
    let data = dir.join("data");
    let listen = format!("127.0.0.1:{}", free_port()?);
    let args: Vec<String> = [
        "dev",
        "--data-dir",
        &data.display().to_string(),
        "--examples",
        &examples.display().to_string(),
        "--hosts",
        "1",
        "--listen",
        &listen,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proc = Proc::spawn(
        "dev",
        DEV,
        &args,
        &[("SLIPWAY_STOP_TIMEOUT", "4s".to_string())],
        dir,
    )?;
    let token_file = data.join("admin.token");
    let client_with =
        |token: &str| Client::new(format!("http://{listen}")).with_token(token.trim().to_string());
    poll(Duration::from_secs(60), || async {
        let Ok(token) = std::fs::read_to_string(&token_file) else {
            return Ok(false);
        };
        // Up, and the example registered (after the token is written).
        Ok(client_with(&token)
            .apps()
            .await
            .is_ok_and(|apps| apps.iter().any(|a| a.name.as_str() == "stuck")))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", proc.tail()))?;
    let client = client_with(&std::fs::read_to_string(&token_file)?);
    let req = CreateDeploy {
        app: deploy::AppName::parse("stuck")?,
        version: None,
        git_ref: Some(deploy::GitRef::parse("main")?),
        cluster: deploy::Cluster::parse("local")?,
        hosts: None,
        strategy: deploy::Strategy::AllAtOnce,
        max_failures: deploy::Portion::default(),
        rollback_on_failure: false,
        confirm: None,
        wait: false,
    };
    let d = client.create_deploy(&req).await?;
    poll(Duration::from_secs(120), || async {
        let d = client.deploy(d.id).await?;
        anyhow::ensure!(
            d.status != DeployStatus::Failed,
            "the deploy failed: {d:#?}"
        );
        Ok(d.hosts.iter().any(|h| h.phase == HostPhase::Checking))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", proc.tail()))?;
    Ok((proc, declared + 100))
}

/// Nothing answers on `port` any more (the app was stopped).
async fn app_gone(port: u16) -> anyhow::Result<()> {
    poll(Duration::from_secs(10), || async move {
        Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slipway_dev_stops_in_time_whatever_is_in_flight() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;

    // SIGTERM: within the stop timeout (4 s here), though the health
    // check would run for ten minutes.
    let (mut dev, port) = dev_with_a_deploy_in_flight(&dir.path().join("term")).await?;
    poll(Duration::from_secs(30), || async move {
        Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok())
    })
    .await
    .map_err(|e| anyhow::anyhow!("the app never listened on {port}: {e}: {}", dev.tail()))?;
    let asked = Instant::now();
    dev.signal(Signal::SIGTERM)?;
    let status = dev.exited_within(Duration::from_secs(20)).await?;
    assert!(
        status.is_some(),
        "still running {:?} after SIGTERM: {}",
        asked.elapsed(),
        dev.tail()
    );
    app_gone(port).await?;

    // A second Ctrl-C: at once.
    let (mut dev, port) = dev_with_a_deploy_in_flight(&dir.path().join("int")).await?;
    dev.signal(Signal::SIGINT)?;
    // Two signals sent together may arrive as one: the second once the
    // first was taken.
    poll(Duration::from_secs(10), || async {
        Ok(dev.tail().contains("shutting down"))
    })
    .await?;
    dev.signal(Signal::SIGINT)?;
    let status = dev.exited_within(Duration::from_secs(3)).await?;
    let Some(status) = status else {
        panic!("still running 3s after a second SIGINT: {}", dev.tail());
    };
    assert_eq!(status.code(), Some(130), "{}", dev.tail());
    app_gone(port).await?;
    Ok(())
}
