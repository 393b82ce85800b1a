//! The grabber killed with SIGKILL at each step of an install in turn: of
//! a full install (half-way through the download, after verifying, after
//! extracting) and of a delta install, where the host links the files it
//! has and fetches the others (after the first fetched file, after all
//! were fetched, after linking the release), then after switching, after
//! starting, while checking. After each, `current` names a complete
//! release whose files are as installed, at most one copy of the app runs,
//! and the restarted grabber converges to the version the deploy asked
//! for. Then a grabber stopped and started while its app runs adopts it:
//! same pid, no second copy.
//!
//! The grabber runs as a separate process with
//! `SLIPWAY_GRABBER_PAUSE_AT=<point>`, which makes it stop for good at that
//! point (saying so in its log) so the kill lands exactly there.

use std::path::Path;
use std::time::Duration;

use deploy::layout::HostLayout;
use deploy::{
    AppName, BuildStatus, Client, Cluster, CreateDeploy, CreateToken, DeployStatus, RegisterApp,
    RequestBuild, Version,
};
use slipway_tests::procs::{KillApps, Proc, TrackerProc, app_groups, start_apptracker};
use slipway_tests::{AppRepo, poll};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");

fn grabber(
    name: &str,
    server: &str,
    token: &str,
    key: &deploy::signing::PublicKey,
    root: &Path,
    logs: &Path,
    pause_at: Option<&str>,
) -> anyhow::Result<Proc> {
    let args: Vec<String> = [
        "--server",
        server,
        "--cluster",
        "crash",
        "--host",
        "h1",
        "--root",
        &root.display().to_string(),
        "--heartbeat",
        "300ms",
        "--trusted-key",
        &key.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut env = vec![("SLIPWAY_TOKEN", token.to_string())];
    if let Some(p) = pause_at {
        env.push(("SLIPWAY_GRABBER_PAUSE_AT", p.to_string()));
    }
    Proc::spawn(name, GRABBER, &args, &env, logs)
}

async fn build(c: &Client, app: &AppName, sha: &str) -> anyhow::Result<Version> {
    let b = c
        .request_build(
            app,
            &RequestBuild {
                git_ref: Some(deploy::GitRef::parse(sha)?),
            },
        )
        .await?;
    poll(Duration::from_secs(60), || async {
        Ok(c.build(b.id).await?.status.is_terminal())
    })
    .await?;
    let b = c.build(b.id).await?;
    anyhow::ensure!(
        b.status == BuildStatus::Succeeded,
        "build failed: {}",
        b.log
    );
    Ok(b.version)
}

/// The version of the app's newest deploy.
async fn deploy_version(c: &Client, app: &AppName) -> anyhow::Result<Version> {
    c.deploys(1)
        .await?
        .into_iter()
        .find(|d| d.app == *app)
        .and_then(|d| d.version)
        .ok_or_else(|| anyhow::anyhow!("no deploy of {app}"))
}

/// What the host runs must be one complete release, at most one copy.
fn check_host(root: &Path, app: &AppName, when: &str) -> anyhow::Result<Option<Version>> {
    let layout = HostLayout::new(root);
    let current = layout.read_current(app)?;
    if let Some(v) = &current {
        let dir = layout.release_dir(app, v);
        anyhow::ensure!(
            dir.join(deploy::MANIFEST_PATH).is_file(),
            "{when}: current names {v}, which is not a complete release"
        );
        let installed = layout
            .read_installed(app, v)?
            .ok_or_else(|| anyhow::anyhow!("{when}: {v} has no recorded inventory"))?;
        let change = installed.check(&dir)?;
        anyhow::ensure!(
            change.is_none(),
            "{when}: current names {v}, whose files are not as installed: {change:?}"
        );
    }
    let groups = app_groups(root, app);
    let mut leaders: Vec<u32> = groups.iter().map(|(g, _)| *g).collect();
    leaders.dedup();
    anyhow::ensure!(
        leaders.len() <= 1,
        "{when}: more than one copy of the app runs: {groups:?}"
    );
    Ok(current)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grabber_killed_at_any_step_leaves_the_host_whole_and_converges() -> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-crash-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let TrackerProc {
        proc: mut tracker,
        url: server,
        client,
        public_key,
    } = start_apptracker(APPTRACKER, dir.path(), &logs, "").await?;
    let token = client
        .create_token(&CreateToken {
            name: "crash-agent".into(),
            role: "agent".into(),
            cluster: Some(Cluster::parse("crash")?),
            host: None,
        })
        .await?
        .token;

    // Two versions of an app that runs until stopped, with a bit of weight
    // so the download has a middle.
    let app = AppName::parse("steady")?;
    let repo = AppRepo::new(dir.path().join("repo"))?;
    let filler = |seed: u64| -> String {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
        (0..1024 * 1024)
            .map(|_| {
                // xorshift: text that does not compress away.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{:x}", x & 0xf)
            })
            .collect()
    };
    let toml = "type = \"generic\"\n[build]\ncommand = \"true\"\n[run]\ncommand = \"exec sleep 100000\"\n[health]\ngrace = \"300ms\"\n";
    let first = repo.commit(
        &[("slipway.toml", toml), ("data.txt", &filler(0)), ("v", "1")],
        "one",
    )?;
    client
        .register_app(&RegisterApp::new(
            app.clone(),
            repo.path.display().to_string(),
        ))
        .await?;
    let initial = build(&client, &app, &first).await?;

    let root = dir.path().join("h1");
    let _kill = KillApps(root.clone(), app.clone());
    let deploy_to = async |v: &Version| -> anyhow::Result<deploy::DeployId> {
        Ok(client
            .create_deploy(&CreateDeploy {
                app: app.clone(),
                version: Some(v.clone()),
                git_ref: None,
                cluster: Cluster::parse("crash")?,
                hosts: None,
                strategy: Default::default(),
                max_failures: Default::default(),
                rollback_on_failure: false,
                confirm: None,
                wait: false,
            })
            .await?
            .id)
    };
    let converged = async |id: deploy::DeployId, v: &Version, g: &Proc| -> anyhow::Result<()> {
        poll(Duration::from_secs(60), || async {
            Ok(client.deploy(id).await?.status.is_terminal())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", g.tail()))?;
        let d = client.deploy(id).await?;
        anyhow::ensure!(d.status == DeployStatus::Succeeded, "{d:#?}\n{}", g.tail());
        let now = check_host(&root, &app, "after converging")?;
        anyhow::ensure!(now.as_ref() == Some(v), "current is {now:?}, not {v}");
        let groups = app_groups(&root, &app);
        anyhow::ensure!(
            !groups.is_empty() && groups.iter().all(|(_, rel)| rel == v.as_str()),
            "{v} should run, alone: {groups:?}"
        );
        Ok(())
    };

    let start = |name: &str, pause_at: Option<&str>| {
        grabber(name, &server, &token, &public_key, &root, &logs, pause_at)
    };

    // The host runs the first version.
    let mut g = start("grabber-first", None)?;
    poll(Duration::from_secs(30), || async {
        Ok(!client.hosts().await?.is_empty())
    })
    .await?;
    let id = deploy_to(&initial).await?;
    converged(id, &initial, &g).await?;
    g.kill().await?;

    // Whether the version changes the bulk of the release (a full
    // install: most bytes are new) or one small file (a delta install).
    let points = [
        ("downloading", true),
        ("verified", true),
        ("extracted", true),
        ("fetching", false),
        ("fetched", false),
        ("extracted", false),
        ("switched", false),
        ("started", false),
        ("checking", false),
    ];
    for (i, &(point, full)) in points.iter().enumerate() {
        // A version this host never had, so every step has work to do.
        let data = filler(i as u64 + 1);
        let mut files = vec![("v", format!("{}", i + 2))];
        if full {
            files.push(("data.txt", data));
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        let sha = repo.commit(&files, point)?;
        let want = &build(&client, &app, &sha).await?;
        let mut paused = start(&format!("grabber-paused-at-{point}"), Some(point))?;
        let id = deploy_to(want).await?;
        let said = format!("paused at {point}");
        poll(Duration::from_secs(60), || async {
            Ok(std::fs::read_to_string(&paused.log)?.contains(&said))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}: never {said}\n{}", paused.tail()))?;
        paused.kill().await?;
        check_host(&root, &app, &format!("killed at {point}"))?;

        let mut g = start(&format!("grabber-after-{point}"), None)?;
        converged(id, want, &g)
            .await
            .map_err(|e| anyhow::anyhow!("after a kill at {point}: {e}"))?;
        g.kill().await?;
        // The install was the kind this point is a step of.
        let events = client.deploy_events(id).await?;
        let said = |needle: &str| {
            events
                .iter()
                .any(|e| e.message.as_deref().is_some_and(|m| m.contains(needle)))
        };
        let (kind, needle) = if full {
            ("full", "downloading http")
        } else {
            ("delta", "the rest is on this host")
        };
        anyhow::ensure!(
            said(needle),
            "a kill at {point} should have stopped a {kind} install: {events:#?}"
        );
    }

    // A grabber stopped (gracefully, apps left running as in production)
    // and started again adopts the app: same pid, no second copy.
    let mut g = start("grabber-adopting", None)?;
    let layout = HostLayout::new(&root);
    poll(Duration::from_secs(30), || async {
        Ok(std::fs::read_to_string(&g.log)?.contains("adopting running app"))
    })
    .await?;
    let before = app_groups(&root, &app);
    let pid = layout.read_state(&app)?.and_then(|s| s.pid);
    assert!(g.stop().await?, "{}", g.tail());
    assert_eq!(
        app_groups(&root, &app),
        before,
        "the app outlives its grabber"
    );
    let mut g = start("grabber-again", None)?;
    poll(Duration::from_secs(30), || async {
        Ok(std::fs::read_to_string(&g.log)?.contains("converging on desired state"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", g.tail()))?;
    let log = std::fs::read_to_string(&g.log)?;
    assert!(
        log.contains(&format!(
            "adopting running app app=steady version={} pid={}",
            deploy_version(&client, &app).await?,
            pid.unwrap_or(0)
        )),
        "{log}"
    );
    assert_eq!(
        app_groups(&root, &app),
        before,
        "same process, no duplicate"
    );
    assert_eq!(layout.read_state(&app)?.and_then(|s| s.pid), pid);

    assert!(g.stop().await?, "{}", g.tail());
    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}
