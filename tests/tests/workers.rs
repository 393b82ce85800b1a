//! The build queue under failure: a `packer worker` killed in the middle of a
//! build loses its claim when its lease runs out, and another worker builds
//! the job to success. While a worker builds, its log reaches the API as it
//! is written.

use std::time::Duration;

use deploy::{AppName, BuildStatus, Cluster, CreateToken, RegisterApp, RequestBuild};
use slipway_tests::procs::{Proc, TrackerProc, start_apptracker};
use slipway_tests::{AppRepo, poll};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const PACKER: &str = env!("CARGO_BIN_EXE_slipway-packer");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_build_loses_its_claim_and_another_finishes_the_job()
-> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-workers-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    // Embedded state, no builder inside, short leases so the test is quick.
    let TrackerProc {
        proc: mut tracker,
        url: server,
        client,
    } = start_apptracker(
        APPTRACKER,
        dir.path(),
        &logs,
        "builder = false\nbuild_lease = \"2s\"\n",
    )
    .await?;
    let token = client
        .create_token(&CreateToken {
            name: "builders".into(),
            role: "agent".into(),
            cluster: Some(Cluster::parse("builders")?),
        })
        .await?
        .token;

    // A generic app whose build takes a few seconds.
    let repo = AppRepo::new(dir.path().join("repo"))?;
    repo.commit(
        &[
            (
                "slipway.toml",
                "type = \"generic\"\n[build]\ncommand = \"echo step-$((1)) && sleep 3 && echo built > out.txt\"\n[run]\ncommand = \"sleep 1000\"\n",
            ),
            ("README", "slow to build\n"),
        ],
        "slow build",
    )?;
    let app = AppName::parse("slow")?;
    client
        .register_app(&RegisterApp::new(
            app.clone(),
            repo.path.display().to_string(),
        ))
        .await?;

    let cache = logs.join("packer-cache");
    let worker = |name: &str| {
        Proc::spawn(
            name,
            PACKER,
            &[
                "worker", "--server", &server, "--poll", "200ms", "--name", name,
            ]
            .map(String::from),
            &[
                ("SLIPWAY_TOKEN", token.clone()),
                // Both workers share one machine's cache, as they would.
                ("SLIPWAY_PACKER_CACHE", cache.display().to_string()),
            ],
            &logs,
        )
    };
    let mut doomed = worker("w-doomed")?;
    let build = client.request_build(&app, &RequestBuild::default()).await?;
    // The worker streams its log through the API while the command runs.
    poll(Duration::from_secs(30), || async {
        let now = client.build(build.id).await?;
        Ok(now.worker.as_deref() == Some("w-doomed") && now.log.contains("step-1\n"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", doomed.tail()))?;
    // The worker dies as a crash would: no chance to hand the build back.
    doomed.kill().await?;
    assert_eq!(client.build(build.id).await?.status, BuildStatus::Running);

    let mut survivor = worker("w-survivor")?;
    poll(Duration::from_secs(60), || async {
        Ok(client.build(build.id).await?.status.is_terminal())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", survivor.tail()))?;
    let done = client.build(build.id).await?;
    assert_eq!(done.status, BuildStatus::Succeeded, "{}", done.log);
    assert_eq!(done.worker.as_deref(), Some("w-survivor"));
    assert!(
        done.log.contains("sleep 3"),
        "the build log shows the command: {}",
        done.log
    );
    assert_eq!(
        done.log.matches("step-1\n").count(),
        1,
        "the second claim starts the log afresh: {}",
        done.log
    );
    assert!(
        std::fs::read_to_string(&tracker.log)?
            .contains("requeued builds whose worker stopped renewing"),
        "AppTracker says why the build moved"
    );

    assert!(survivor.stop().await?, "{}", survivor.tail());
    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}
