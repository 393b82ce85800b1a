//! Stopping whatever is in flight: `slipway dev` with a deploy whose health
//! check will not pass for ten minutes stops within its stop timeout on
//! SIGTERM, and at once on a second signal, taking its apps down with it
//! (it used to wait on the install, then on reports to an AppTracker that
//! had stopped, and ignored a second Ctrl-C). So do the separate
//! processes: `apptracker serve` building, a grabber installing and a
//! `packer worker` building, each held by work that would take ten
//! minutes, and none leaves a build running behind it.

use std::path::Path;
use std::time::{Duration, Instant};

use deploy::{
    AppName, Client, Cluster, CreateDeploy, CreateToken, DeployStatus, HostPhase, RegisterApp,
    RequestBuild,
};
use nix::sys::signal::Signal;
use slipway_tests::procs::{KillApps, Proc, TrackerProc, packer_keygen, start_apptracker_with_env};
use slipway_tests::{AppRepo, free_port, poll};

const DEV: &str = env!("CARGO_BIN_EXE_slipway-dev");
const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");
const PACKER: &str = env!("CARGO_BIN_EXE_slipway-packer");

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

/// A build command that runs for `secs` (a number no other test uses, to
/// find its process by), after printing `step-1` (spelled so the echoed
/// command does not contain it).
fn slow_build(secs: u32) -> String {
    format!(
        "type = \"generic\"\n[build]\ncommand = \"echo step-$((1)) && sleep {secs}\"\n\
         [run]\ncommand = \"sleep 1000\"\n"
    )
}

/// Whether a process whose command line is `sleep <secs>` runs.
fn sleeping(secs: u32) -> bool {
    let wanted = format!("sleep\0{secs}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).trim_end_matches('\0') == wanted)
}

/// Waits until the build that `sleep <secs>` stood for, run by `name`,
/// is gone (up to 10 s).
async fn build_gone(secs: u32, name: &str) -> anyhow::Result<()> {
    poll(
        Duration::from_secs(10),
        || async move { Ok(!sleeping(secs)) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{name}'s build still runs: {e}"))
}

/// One of each of the separate processes, each busy: `apptracker serve`
/// building (its in-process builder, sleeping `tracker_sleep` s), a
/// grabber installing a release whose health check will not pass for ten
/// minutes, and a `packer worker` building (sleeping `worker_sleep` s).
/// All three run with `SLIPWAY_STOP_TIMEOUT=stop_timeout`.
struct InFlight {
    tracker: Proc,
    grabber: Proc,
    worker: Proc,
    _apps: KillApps,
}

async fn in_flight(
    dir: &Path,
    stop_timeout: &str,
    tracker_sleep: u32,
    worker_sleep: u32,
) -> anyhow::Result<InFlight> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let stop = [("SLIPWAY_STOP_TIMEOUT", stop_timeout.to_string())];
    let TrackerProc {
        proc: tracker,
        url: server,
        client,
        public_key,
    } = start_apptracker_with_env(APPTRACKER, dir, &logs, "", &stop).await?;
    let cluster = Cluster::parse("stop")?;
    let agent_token = client
        .create_token(&CreateToken {
            cluster: Some(cluster.clone()),
            ..CreateToken::new("stop-agent", "agent")
        })
        .await?
        .token;
    let builder_token = client
        .create_token(&CreateToken::new("stop-builders", "builder"))
        .await?
        .token;
    let register = async |name: &str, toml: &str| -> anyhow::Result<AppName> {
        let repo = AppRepo::new(dir.join(name))?;
        repo.commit(&[("slipway.toml", toml), ("index.html", "stuck\n")], name)?;
        let app = AppName::parse(name)?;
        client
            .register_app(&RegisterApp::new(
                app.clone(),
                repo.path.display().to_string(),
            ))
            .await?;
        Ok(app)
    };

    // The grabber installing: checking health for up to ten minutes.
    let port = free_port()?;
    let stuck = register(
        "stuck",
        &format!(
            "type = \"generic\"\n[build]\ncommand = \"true\"\n[run]\n\
             command = \"exec python3 -m http.server $PORT --bind 127.0.0.1\"\nport = {port}\n\
             [health]\nhttp = \"/never-there\"\ntimeout = \"10m\"\n"
        ),
    )
    .await?;
    let root = dir.join("h1");
    let apps = KillApps(root.clone(), stuck.clone());
    let mut env = stop.to_vec();
    env.push(("SLIPWAY_TOKEN", agent_token));
    let grabber = Proc::spawn(
        "grabber",
        GRABBER,
        &[
            "--server",
            &server,
            "--cluster",
            cluster.as_str(),
            "--host",
            "h1",
            "--root",
            &root.display().to_string(),
            "--heartbeat",
            "300ms",
            "--trusted-key",
            &public_key.to_string(),
        ]
        .map(String::from),
        &env,
        &logs,
    )?;
    poll(Duration::from_secs(30), || async {
        Ok(!client.hosts().await?.is_empty())
    })
    .await
    .map_err(|e| anyhow::anyhow!("the grabber never registered: {e}: {}", grabber.tail()))?;
    let d = client
        .create_deploy(&CreateDeploy {
            app: stuck,
            version: None,
            git_ref: Some(deploy::GitRef::parse("main")?),
            cluster,
            hosts: None,
            strategy: deploy::Strategy::AllAtOnce,
            max_failures: deploy::Portion::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
        .await?;
    poll(Duration::from_secs(120), || async {
        let d = client.deploy(d.id).await?;
        anyhow::ensure!(
            d.status != DeployStatus::Failed,
            "the deploy failed: {d:#?}"
        );
        Ok(d.hosts.iter().any(|h| h.phase == HostPhase::Checking)
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}\n{}", grabber.tail(), tracker.tail()))?;

    // AppTracker's own builder busy; then a worker, which takes the next.
    let building = async |app: &AppName, by: &str| -> anyhow::Result<()> {
        let b = client.request_build(app, &RequestBuild::default()).await?;
        let started = poll(Duration::from_secs(60), || async {
            let now = client.build(b.id).await?;
            Ok(now.worker.as_deref().is_some_and(|w| w.starts_with(by))
                && now.log.contains("step-1\n"))
        })
        .await;
        match started {
            Ok(()) => Ok(()),
            Err(e) => anyhow::bail!("{e}: {:#?}", client.build(b.id).await),
        }
    };
    let tracker_app = register("slow-in-tracker", &slow_build(tracker_sleep)).await?;
    building(&tracker_app, "apptracker-")
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", tracker.tail()))?;
    let signing_key = dir.join("packer-signing.key");
    packer_keygen(PACKER, &signing_key).await?;
    let worker = Proc::spawn(
        "worker",
        PACKER,
        &[
            "worker", "--server", &server, "--poll", "200ms", "--name", "w-stop",
        ]
        .map(String::from),
        &[
            ("SLIPWAY_TOKEN", builder_token),
            ("SLIPWAY_STOP_TIMEOUT", stop_timeout.to_string()),
            (
                "SLIPWAY_PACKER_CACHE",
                dir.join("packer-cache").display().to_string(),
            ),
            ("SLIPWAY_SIGNING_KEY", signing_key.display().to_string()),
        ],
        &logs,
    )?;
    let worker_app = register("slow-in-worker", &slow_build(worker_sleep)).await?;
    building(&worker_app, "w-stop")
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", worker.tail()))?;
    anyhow::ensure!(
        sleeping(tracker_sleep) && sleeping(worker_sleep),
        "both builds should be running their `sleep`"
    );
    Ok(InFlight {
        tracker,
        grabber,
        worker,
        _apps: apps,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_grabbers_and_workers_stop_in_time_whatever_is_in_flight() -> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-stopping-")
        .tempdir()?;
    // Both rounds set up at once: each waits mostly on its processes.
    let (term_dir, int_dir) = (dir.path().join("term"), dir.path().join("int"));
    let (term, int) = tokio::try_join!(
        in_flight(&term_dir, "3s", 6011, 6012),
        in_flight(&int_dir, "10m", 6021, 6022),
    )?;

    // SIGTERM: each stops within its stop timeout (3 s here) though its
    // work would take ten minutes; the worker first, then the grabber,
    // then AppTracker, so each is stopped with its own work in flight.
    let InFlight {
        tracker,
        grabber,
        worker,
        _apps,
    } = term;
    for (mut proc, build) in [(worker, Some(6012)), (grabber, None), (tracker, Some(6011))] {
        let asked = Instant::now();
        proc.signal(Signal::SIGTERM)?;
        let status = proc.exited_within(Duration::from_secs(20)).await?;
        let took = asked.elapsed();
        assert!(
            status.is_some(),
            "{} still runs {took:?} after SIGTERM with a 3 s stop timeout: {}",
            proc.name,
            proc.tail()
        );
        tracing::info!(process = %proc.name, ?took, ?status, "stopped on SIGTERM");
        if let Some(secs) = build {
            // The build's sandbox dies with the process that ran it.
            build_gone(secs, &proc.name).await?;
        }
    }

    // A second signal: at once (status 130), though the stop timeout is
    // ten minutes.
    let InFlight {
        tracker,
        grabber,
        worker,
        _apps,
    } = int;
    for (mut proc, build) in [(worker, Some(6022)), (grabber, None), (tracker, Some(6021))] {
        proc.signal(Signal::SIGTERM)?;
        // Two signals sent together may arrive as one: the second once
        // the first was taken.
        poll(Duration::from_secs(10), || async {
            Ok(proc.tail().contains("shutting down"))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", proc.tail()))?;
        assert!(
            proc.exited_within(Duration::from_millis(500))
                .await?
                .is_none(),
            "{} stopped before the second signal: nothing held it, the test proves nothing: {}",
            proc.name,
            proc.tail()
        );
        proc.signal(Signal::SIGINT)?;
        let Some(status) = proc.exited_within(Duration::from_secs(3)).await? else {
            panic!(
                "{} still runs 3 s after a second signal: {}",
                proc.name,
                proc.tail()
            );
        };
        assert_eq!(status.code(), Some(130), "{}: {}", proc.name, proc.tail());
        if let Some(secs) = build {
            build_gone(secs, &proc.name).await?;
        }
    }
    Ok(())
}
